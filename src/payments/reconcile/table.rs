//! A compact string-keyed table for one side of a reconciliation: a million bill rows must fit in
//! well under the 256 MiB a run may use, so keys and other strings live back to back in large
//! byte chunks (no allocation per row), entries in chunked vectors (growing never copies them),
//! and the index is an open-addressing array of 4-byte entry numbers. A `HashMap<String, _>` of
//! the same rows costs about three times as much.

use std::hash::BuildHasher;

/// Bytes per arena chunk; one string never spans two chunks.
const CHUNK_BYTES: usize = 1 << 20;
/// Entries per entry chunk.
const ENTRY_CHUNK: usize = 1 << 16;
const EMPTY: u32 = u32::MAX;

/// A string stored in an [`Arena`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    chunk: u32,
    offset: u32,
    len: u32,
}

/// Strings appended into fixed-size chunks.
#[derive(Debug, Default)]
pub struct Arena {
    chunks: Vec<Vec<u8>>,
}

impl Arena {
    /// Stores `s`. Strings come from bill lines, which the parser caps far below a chunk; a longer
    /// one (impossible from a parsed bill) is cut at a character boundary rather than panicking.
    pub fn push(&mut self, s: &str) -> Span {
        let mut end = s.len().min(CHUNK_BYTES);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let bytes = &s.as_bytes()[..end];
        let fits = self.chunks.last().is_some_and(|c| c.capacity() - c.len() >= bytes.len());
        if !fits {
            self.chunks.push(Vec::with_capacity(CHUNK_BYTES));
        }
        let index = self.chunks.len() - 1;
        let chunk = &mut self.chunks[index];
        let offset = chunk.len();
        chunk.extend_from_slice(bytes);
        Span { chunk: index as u32, offset: offset as u32, len: bytes.len() as u32 }
    }

    pub fn bytes(&self, span: Span) -> &[u8] {
        let (index, offset) = (span.chunk as usize, span.offset as usize);
        self.chunks.get(index).and_then(|c| c.get(offset..offset + span.len as usize)).unwrap_or_default()
    }

    pub fn get(&self, span: Span) -> &str {
        // Only whole `&str`s cut at character boundaries go in, so this never fails.
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }

    /// Bytes reserved, for the memory figures of the benchmark.
    pub fn reserved_bytes(&self) -> usize {
        self.chunks.len() * CHUNK_BYTES
    }
}

/// Entries keyed by a string, with their own [`Arena`] for the keys and for any strings the
/// entries keep.
pub struct KeyedTable<E> {
    pub arena: Arena,
    keys: Vec<Vec<Span>>,
    entries: Vec<Vec<E>>,
    slots: Vec<u32>,
    len: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl<E> Default for KeyedTable<E> {
    fn default() -> Self {
        KeyedTable {
            arena: Arena::default(),
            keys: Vec::new(),
            entries: Vec::new(),
            slots: vec![EMPTY; 1024],
            len: 0,
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl<E> KeyedTable<E> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn hash(&self, key: &[u8]) -> usize {
        self.hasher.hash_one(key) as usize
    }

    fn key_of(&self, id: u32) -> &[u8] {
        let (c, i) = (id as usize / ENTRY_CHUNK, id as usize % ENTRY_CHUNK);
        self.arena.bytes(self.keys[c][i])
    }

    /// The slot holding `key`, or the empty slot where it would go.
    fn probe(&self, key: &[u8]) -> (usize, Option<u32>) {
        let mask = self.slots.len() - 1;
        let mut slot = self.hash(key) & mask;
        loop {
            match self.slots[slot] {
                EMPTY => return (slot, None),
                id if self.key_of(id) == key => return (slot, Some(id)),
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let mut slots = vec![EMPTY; size];
        for id in 0..self.len as u32 {
            let mut slot = self.hash(self.key_of(id)) & (size - 1);
            while slots[slot] != EMPTY {
                slot = (slot + 1) & (size - 1);
            }
            slots[slot] = id;
        }
        self.slots = slots;
    }

    pub fn entry(&self, id: u32) -> &E {
        &self.entries[id as usize / ENTRY_CHUNK][id as usize % ENTRY_CHUNK]
    }

    pub fn entry_mut(&mut self, id: u32) -> &mut E {
        &mut self.entries[id as usize / ENTRY_CHUNK][id as usize % ENTRY_CHUNK]
    }

    pub fn key(&self, id: u32) -> &str {
        let (c, i) = (id as usize / ENTRY_CHUNK, id as usize % ENTRY_CHUNK);
        self.arena.get(self.keys[c][i])
    }

    pub fn find(&self, key: &str) -> Option<u32> {
        self.probe(key.as_bytes()).1
    }

    /// The entry of `key`, made by `make` (which may store strings in the arena) when new.
    /// Returns its number and whether it was inserted now.
    pub fn insert_with(&mut self, key: &str, make: impl FnOnce(&mut Arena) -> E) -> (u32, bool) {
        // Linear probing stays short below a 70% load.
        if (self.len + 1) * 10 > self.slots.len() * 7 {
            self.grow();
        }
        let (slot, found) = self.probe(key.as_bytes());
        if let Some(id) = found {
            return (id, false);
        }
        let id = self.len as u32;
        let span = self.arena.push(key);
        let entry = make(&mut self.arena);
        if self.len.is_multiple_of(ENTRY_CHUNK) {
            self.keys.push(Vec::with_capacity(ENTRY_CHUNK));
            self.entries.push(Vec::with_capacity(ENTRY_CHUNK));
        }
        if let (Some(keys), Some(entries)) = (self.keys.last_mut(), self.entries.last_mut()) {
            keys.push(span);
            entries.push(entry);
        }
        self.slots[slot] = id;
        self.len += 1;
        (id, true)
    }

    /// Entry numbers in insertion order.
    pub fn ids(&self) -> std::ops::Range<u32> {
        0..self.len as u32
    }

    /// Bytes reserved by the table (arena, entries, keys, index), for the benchmark's figures.
    pub fn reserved_bytes(&self) -> usize {
        self.arena.reserved_bytes()
            + self.entries.len() * ENTRY_CHUNK * (std::mem::size_of::<E>() + std::mem::size_of::<Span>())
            + self.slots.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_find_and_grow() {
        let mut t: KeyedTable<i64> = KeyedTable::default();
        for n in 0..200_000i64 {
            let (id, new) = t.insert_with(&format!("SO{n:014}"), |_| n);
            assert!(new);
            assert_eq!(id as i64, n);
        }
        assert_eq!(t.len(), 200_000);
        let (id, new) = t.insert_with("SO00000000000007", |_| -1);
        assert!(!new);
        assert_eq!(*t.entry(id), 7);
        assert_eq!(t.find("SO00000000199999").map(|id| *t.entry(id)), Some(199_999));
        assert_eq!(t.find("SO00000000200000"), None);
        assert_eq!(t.find(""), None);
        *t.entry_mut(3) = 30;
        assert_eq!(t.key(3), "SO00000000000003");
        assert_eq!(*t.entry(3), 30);
    }

    #[test]
    fn arena_keeps_strings_and_never_splits_them() {
        let mut a = Arena::default();
        let long = "退".repeat(100_000); // 300,000 bytes
        let spans: Vec<Span> = (0..10).map(|_| a.push(&long)).collect();
        for s in spans {
            assert_eq!(a.get(s), long);
        }
        let empty = a.push("");
        assert_eq!(a.get(empty), "");
        let huge = "x".repeat(CHUNK_BYTES + 10);
        let cut = a.push(&huge);
        assert_eq!(a.get(cut).len(), CHUNK_BYTES);
    }
}
