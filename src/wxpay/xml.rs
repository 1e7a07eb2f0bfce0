//! The flat `<xml>` documents of API v2: a hardened reader into an ordered field map, and a writer.
//!
//! The reader accepts exactly what WeChat sends (one root, one level of text fields, CDATA or
//! escaped text) and refuses everything an attacker could use: DTDs and entity declarations (XXE),
//! processing instructions, nested elements, duplicate keys, non-UTF-8 bytes, oversized bodies.

use indexmap::IndexMap;
use quick_xml::events::Event;
use quick_xml::reader::Reader;
use thiserror::Error;

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

/// Reads an `<xml>` document with the default 64 KiB limit.
pub fn parse(body: &[u8]) -> Result<Fields, XmlError> {
    parse_with(body, ReadOptions::default())
}

/// Reads a flat document whose root is `opts.root`.
pub fn parse_with(body: &[u8], opts: ReadOptions<'_>) -> Result<Fields, XmlError> {
    if body.len() > opts.max_bytes {
        return Err(XmlError::TooLarge { limit: opts.max_bytes });
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

    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);

    let mut fields = Fields::new();
    let mut seen_root = false;
    let mut depth = 0usize;
    // The field being read: its name and the text gathered so far.
    let mut current: Option<(String, String)> = None;

    loop {
        let event = reader.read_event().map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::Decl(decl) => {
                if seen_root {
                    return Err(XmlError::Malformed("misplaced XML declaration".into()));
                }
                if let Some(enc) = decl.encoding() {
                    let enc = enc.map_err(|e| XmlError::Malformed(e.to_string()))?;
                    if !enc.eq_ignore_ascii_case("utf-8") && !enc.eq_ignore_ascii_case("utf8") {
                        return Err(XmlError::UnsupportedEncoding(enc.into_owned()));
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Comment(_) => {}
            Event::Start(start) => {
                let name = start.name().as_ref().to_owned();
                match depth {
                    0 => open_root(&mut seen_root, &name, opts.root)?,
                    1 => current = Some((name, String::new())),
                    _ => return Err(XmlError::Nested(name)),
                }
                depth += 1;
            }
            Event::Empty(start) => {
                let name = start.name().as_ref().to_owned();
                match depth {
                    0 => open_root(&mut seen_root, &name, opts.root)?,
                    1 => push_field(&mut fields, name, String::new())?,
                    _ => return Err(XmlError::Nested(name)),
                }
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches its start tag.
                depth -= 1;
                if depth == 1 {
                    let (name, value) = current.take().expect("a field was open");
                    push_field(&mut fields, name, value)?;
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match current.as_mut() {
                    Some((_, value)) if depth == 2 => value.push_str(&content),
                    _ if content.trim().is_empty() => {}
                    _ => return Err(XmlError::StrayText),
                }
            }
            Event::CData(c) => match current.as_mut() {
                Some((_, value)) if depth == 2 => value.push_str(&c.xml10_content()),
                _ => return Err(XmlError::StrayText),
            },
            Event::GeneralRef(r) => {
                let ch = resolve_reference(&r)?;
                match current.as_mut() {
                    Some((_, value)) if depth == 2 => value.push(ch),
                    _ => return Err(XmlError::StrayText),
                }
            }
            Event::Eof => {
                if depth != 0 {
                    return Err(XmlError::Truncated);
                }
                if !seen_root {
                    return Err(XmlError::Empty);
                }
                return Ok(fields);
            }
        }
    }
}

fn open_root(seen_root: &mut bool, name: &str, expected: &str) -> Result<(), XmlError> {
    if *seen_root {
        return Err(XmlError::MultipleRoots);
    }
    if name != expected {
        return Err(XmlError::WrongRoot { expected: expected.to_owned(), found: name.to_owned() });
    }
    *seen_root = true;
    Ok(())
}

fn push_field(fields: &mut Fields, name: String, value: String) -> Result<(), XmlError> {
    if fields.contains(&name) {
        return Err(XmlError::DuplicateKey(name));
    }
    fields.insert(name, value);
    Ok(())
}

fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Result<char, XmlError> {
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

/// Writes a flat document. Values go in CDATA; characters CDATA cannot carry faithfully (`\r`,
/// which XML would normalize, and other control characters) are written as character references,
/// and `]]>` is split across two sections, so every string round-trips through [`parse_with`].
pub fn write_document<'a, I>(root: &str, fields: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut out = String::with_capacity(256);
    out.push('<');
    out.push_str(root);
    out.push('>');
    for (k, v) in fields {
        debug_assert!(is_field_name(k), "invalid field name {k:?}");
        out.push('<');
        out.push_str(k);
        out.push('>');
        write_value(&mut out, v);
        out.push_str("</");
        out.push_str(k);
        out.push('>');
    }
    out.push_str("</");
    out.push_str(root);
    out.push('>');
    out
}

fn write_value(out: &mut String, value: &str) {
    if value.is_empty() {
        return;
    }
    if value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
        // Numbers, codes and ids need no CDATA; WeChat itself writes total_fee bare.
        out.push_str(value);
        return;
    }
    let mut in_cdata = false;
    let mut rest = value;
    while let Some(ch) = rest.chars().next() {
        let needs_reference = ch == '\r' || (ch.is_control() && ch != '\n' && ch != '\t');
        if needs_reference {
            if in_cdata {
                out.push_str("]]>");
                in_cdata = false;
            }
            out.push_str(&format!("&#x{:X};", ch as u32));
            rest = &rest[ch.len_utf8()..];
            continue;
        }
        if !in_cdata {
            out.push_str("<![CDATA[");
            in_cdata = true;
        }
        if rest.starts_with("]]>") {
            // End the section between "]]" and ">" so the terminator never appears inside it.
            out.push_str("]]]]><![CDATA[>");
            rest = &rest[3..];
            continue;
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    if in_cdata {
        out.push_str("]]>");
    }
}

/// Field names WeChat uses: ASCII letters, digits and `_`, not starting with a digit.
pub fn is_field_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> Result<Fields, XmlError> {
        parse(s.as_bytes())
    }

    #[test]
    fn reads_cdata_plain_and_escaped_text() {
        let f = read(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n  <return_code><![CDATA[SUCCESS]]></return_code>\n  <total_fee>1</total_fee>\n  <body>a &amp; b &#x4E2D;</body><empty/><e2></e2>\n</xml>",
        )
        .unwrap();
        assert_eq!(f.get("return_code"), Some("SUCCESS"));
        assert_eq!(f.get("total_fee"), Some("1"));
        assert_eq!(f.get("body"), Some("a & b 中"));
        assert_eq!(f.get("empty"), Some(""));
        assert_eq!(f.get("e2"), Some(""));
        assert_eq!(f.len(), 5);
        assert_eq!(f.pairs().next(), Some(("return_code", "SUCCESS")));
    }

    #[test]
    fn refuses_hostile_and_malformed_documents() {
        let xxe =
            "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><a>&x;</a></xml>";
        assert_eq!(read(xxe), Err(XmlError::Doctype));
        assert_eq!(read("<xml><a>&x;</a></xml>"), Err(XmlError::UnknownEntity("x".into())));
        assert_eq!(read("<?php echo 1 ?><xml></xml>"), Err(XmlError::ProcessingInstruction));
        assert_eq!(read("<xml><a><b>1</b></a></xml>"), Err(XmlError::Nested("b".into())));
        assert_eq!(read("<xml><a>1</a><a>2</a></xml>"), Err(XmlError::DuplicateKey("a".into())));
        assert_eq!(read(""), Err(XmlError::Empty));
        assert_eq!(read("  \n "), Err(XmlError::Empty));
        assert!(matches!(read("<root><a>1</a></root>"), Err(XmlError::WrongRoot { .. })));
        assert_eq!(read("<xml><a>1</a>"), Err(XmlError::Truncated));
        assert_eq!(read("<xml></xml><xml></xml>"), Err(XmlError::MultipleRoots));
        assert_eq!(read("<xml>loose<a>1</a></xml>"), Err(XmlError::StrayText));
        assert!(matches!(read("<xml><a>1</b></xml>"), Err(XmlError::Malformed(_))));
        assert!(matches!(read("not xml at all"), Err(XmlError::StrayText | XmlError::Malformed(_))));
        assert_eq!(parse(b"<xml><a>\xff</a></xml>"), Err(XmlError::NotUtf8));
        assert_eq!(read("<xml><a><![CDATA[a\0b]]></a></xml>"), Err(XmlError::IllegalCharacter));
        assert_eq!(read("<xml><a>\u{1}</a></xml>"), Err(XmlError::IllegalCharacter));
        assert_eq!(
            read("<?xml version=\"1.0\" encoding=\"GBK\"?><xml/>"),
            Err(XmlError::UnsupportedEncoding("GBK".into()))
        );
        let big = format!("<xml><a>{}</a></xml>", "x".repeat(DEFAULT_MAX_BYTES));
        assert_eq!(read(&big), Err(XmlError::TooLarge { limit: DEFAULT_MAX_BYTES }));
    }

    #[test]
    fn reads_the_refund_notify_root() {
        let opts = ReadOptions { root: "root", ..ReadOptions::default() };
        let f = parse_with(b"<root><out_refund_no>r1</out_refund_no></root>", opts).unwrap();
        assert_eq!(f.get("out_refund_no"), Some("r1"));
        assert!(matches!(read("<root></root>"), Err(XmlError::WrongRoot { .. })));
    }

    #[test]
    fn writes_cdata_and_round_trips_awkward_values() {
        let fields: Fields = [
            ("total_fee", "1"),
            ("body", "腾讯充值中心-QQ会员充值"),
            ("attach", "a]]>b<c>&d\r\ne\u{1}"),
            ("empty", ""),
        ]
        .into_iter()
        .collect();
        let xml = fields.to_xml();
        assert!(xml.starts_with("<xml><total_fee>1</total_fee><body><![CDATA[腾讯"));
        assert_eq!(parse(xml.as_bytes()).unwrap(), fields);
    }
}
