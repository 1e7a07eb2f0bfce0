//! The hardened reader: checks on the raw body first, then one pass over quick-xml's events that
//! keeps only a flat, single-root document of text fields.

use quick_xml::events::{BytesDecl, BytesRef, Event};
use quick_xml::reader::Reader;

use super::{Fields, ReadOptions, XmlError};

/// Reads an `<xml>` document with the default 64 KiB limit.
pub fn parse(body: &[u8]) -> Result<Fields, XmlError> {
    parse_with(body, ReadOptions::default())
}

/// Reads a flat document whose root is `opts.root`.
pub fn parse_with(body: &[u8], opts: ReadOptions<'_>) -> Result<Fields, XmlError> {
    let text = checked_text(body, opts.max_bytes)?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);

    let mut doc = FlatDocument::new(opts.root);
    loop {
        let event = reader.read_event().map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::Decl(decl) => doc.declaration(&decl)?,
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Comment(_) => {}
            Event::Start(start) => doc.open(start.name().as_ref().to_owned())?,
            Event::Empty(start) => doc.open_and_close(start.name().as_ref().to_owned())?,
            Event::End(_) => doc.close()?,
            Event::Text(t) => doc.text(&t.xml10_content())?,
            Event::CData(c) => doc.cdata(&c.xml10_content())?,
            Event::GeneralRef(r) => doc.reference(&r)?,
            Event::Eof => return doc.finish(),
        }
    }
}

/// The body as text, once it has passed the checks that need no parsing: size, encoding, a
/// leading byte-order mark (dropped), emptiness and control characters.
fn checked_text(body: &[u8], max_bytes: usize) -> Result<&str, XmlError> {
    if body.len() > max_bytes {
        return Err(XmlError::TooLarge { limit: max_bytes });
    }
    let text = std::str::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(XmlError::Empty);
    }
    // XML 1.0 forbids raw C0 controls other than tab and line ends; a value carrying one could
    // not be written back, so it must not be read either. (Character references stay allowed.)
    if text.bytes().any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) {
        return Err(XmlError::IllegalCharacter);
    }
    Ok(text)
}

/// What one read has seen so far. Depth 0 is outside the root, 1 inside the root, 2 inside a
/// field; anything deeper is refused.
struct FlatDocument<'a> {
    root: &'a str,
    fields: Fields,
    seen_root: bool,
    depth: usize,
    /// The field being read: its name and the text gathered so far.
    current: Option<(String, String)>,
}

impl<'a> FlatDocument<'a> {
    fn new(root: &'a str) -> FlatDocument<'a> {
        FlatDocument { root, fields: Fields::new(), seen_root: false, depth: 0, current: None }
    }

    /// `<?xml …?>` must come before the root and may only declare UTF-8.
    fn declaration(&mut self, decl: &BytesDecl<'_>) -> Result<(), XmlError> {
        if self.seen_root {
            return Err(XmlError::Malformed("misplaced XML declaration".into()));
        }
        if let Some(enc) = decl.encoding() {
            let enc = enc.map_err(|e| XmlError::Malformed(e.to_string()))?;
            if !enc.eq_ignore_ascii_case("utf-8") && !enc.eq_ignore_ascii_case("utf8") {
                return Err(XmlError::UnsupportedEncoding(enc.into_owned()));
            }
        }
        Ok(())
    }

    /// A start tag: the root, or a field whose text follows.
    fn open(&mut self, name: String) -> Result<(), XmlError> {
        match self.depth {
            0 => self.open_root(&name)?,
            1 => self.current = Some((name, String::new())),
            _ => return Err(XmlError::Nested(name)),
        }
        self.depth += 1;
        Ok(())
    }

    /// A self-closing tag: an empty root, or a field with an empty value.
    fn open_and_close(&mut self, name: String) -> Result<(), XmlError> {
        match self.depth {
            0 => self.open_root(&name),
            1 => self.push_field(name, String::new()),
            _ => Err(XmlError::Nested(name)),
        }
    }

    fn close(&mut self) -> Result<(), XmlError> {
        // quick-xml has already checked that the end tag matches its start tag.
        self.depth -= 1;
        if self.depth == 1 {
            let (name, value) = self.current.take().expect("a field was open");
            self.push_field(name, value)?;
        }
        Ok(())
    }

    /// Plain text: part of a field's value, or whitespace between elements.
    fn text(&mut self, content: &str) -> Result<(), XmlError> {
        match self.field_value() {
            Some(value) => value.push_str(content),
            None if content.trim().is_empty() => {}
            None => return Err(XmlError::StrayText),
        }
        Ok(())
    }

    fn cdata(&mut self, content: &str) -> Result<(), XmlError> {
        self.field_value().ok_or(XmlError::StrayText)?.push_str(content);
        Ok(())
    }

    fn reference(&mut self, r: &BytesRef<'_>) -> Result<(), XmlError> {
        let ch = resolve_reference(r)?;
        self.field_value().ok_or(XmlError::StrayText)?.push(ch);
        Ok(())
    }

    /// The end of input: the root must have been read and closed.
    fn finish(self) -> Result<Fields, XmlError> {
        if self.depth != 0 {
            return Err(XmlError::Truncated);
        }
        if !self.seen_root {
            return Err(XmlError::Empty);
        }
        Ok(self.fields)
    }

    /// The value being gathered, when the reader is directly inside a field.
    fn field_value(&mut self) -> Option<&mut String> {
        match self.current.as_mut() {
            Some((_, value)) if self.depth == 2 => Some(value),
            _ => None,
        }
    }

    fn open_root(&mut self, name: &str) -> Result<(), XmlError> {
        if self.seen_root {
            return Err(XmlError::MultipleRoots);
        }
        if name != self.root {
            return Err(XmlError::WrongRoot { expected: self.root.to_owned(), found: name.to_owned() });
        }
        self.seen_root = true;
        Ok(())
    }

    fn push_field(&mut self, name: String, value: String) -> Result<(), XmlError> {
        if self.fields.contains(&name) {
            return Err(XmlError::DuplicateKey(name));
        }
        self.fields.insert(name, value);
        Ok(())
    }
}

fn resolve_reference(r: &BytesRef<'_>) -> Result<char, XmlError> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            _ => Err(XmlError::Malformed(format!("invalid character reference &{};", &**r))),
        };
    }
    match &**r {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        other => Err(XmlError::UnknownEntity(other.to_owned())),
    }
}
