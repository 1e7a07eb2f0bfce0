//! The writer: flat documents whose values survive the reader unchanged, whatever they contain.

/// Writes a flat document. Values go in CDATA; characters CDATA cannot carry faithfully (`\r`,
/// which XML would normalize, and other control characters) are written as character references,
/// and `]]>` is split across two sections, so every string round-trips through
/// [`parse_with`](super::parse_with).
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
