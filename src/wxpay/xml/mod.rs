//! The flat `<xml>` documents of API v2: a hardened reader into an ordered field map, and a writer.
//!
//! The reader accepts exactly what WeChat sends (one root, one level of text fields, CDATA or
//! escaped text) and refuses everything an attacker could use: DTDs and entity declarations (XXE),
//! processing instructions, nested elements, duplicate keys, non-UTF-8 bytes, oversized bodies.

mod read;
mod write;

use indexmap::IndexMap;
use thiserror::Error;

pub use read::{parse, parse_with};
pub use write::{is_field_name, write_document};

/// Default limit on a message body: WeChat's messages are a few hundred bytes.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;

/// The fields of one message, in document order, every field kept (signatures cover them all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(IndexMap<String, String>);

impl Fields {
    pub fn new() -> Fields {
        Fields(IndexMap::new())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of a field that must be present and non-empty.
    pub fn require(&self, key: &str) -> Result<&str, MissingField> {
        self.get(key).filter(|v| !v.is_empty()).ok_or_else(|| MissingField(key.to_owned()))
    }

    /// Sets a field, replacing any earlier value but keeping its position.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.shift_remove(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(key, value)` pairs in document order; cheap to clone, as signature checks need.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Serializes as an `<xml>` document.
    pub fn to_xml(&self) -> String {
        write_document("xml", self.pairs())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Fields {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut f = Fields::new();
        for (k, v) in iter {
            f.insert(k, v);
        }
        f
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("required field `{0}` is missing or empty")]
pub struct MissingField(pub String);

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum XmlError {
    #[error("the body is empty")]
    Empty,
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body is not valid UTF-8")]
    NotUtf8,
    #[error("the document declares encoding {0:?}; only UTF-8 is accepted")]
    UnsupportedEncoding(String),
    #[error("DOCTYPE and entity declarations are not accepted")]
    Doctype,
    #[error("processing instructions are not accepted")]
    ProcessingInstruction,
    #[error("unknown entity reference &{0};")]
    UnknownEntity(String),
    #[error("the root element is <{found}>, expected <{expected}>")]
    WrongRoot { expected: String, found: String },
    #[error("element <{0}> is nested inside a field; the document must be flat")]
    Nested(String),
    #[error("field `{0}` appears more than once")]
    DuplicateKey(String),
    #[error("text outside of any field")]
    StrayText,
    #[error("more than one root element")]
    MultipleRoots,
    #[error("the document ends before its root element is closed")]
    Truncated,
    #[error("the document contains a control character XML does not allow")]
    IllegalCharacter,
    #[error("malformed XML: {0}")]
    Malformed(String),
}

/// Limits and expectations of one read.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions<'a> {
    pub root: &'a str,
    pub max_bytes: usize,
}

impl Default for ReadOptions<'_> {
    fn default() -> Self {
        ReadOptions { root: "xml", max_bytes: DEFAULT_MAX_BYTES }
    }
}

#[cfg(test)]
mod tests;
