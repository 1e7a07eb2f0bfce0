//! Reading WeChat's documents, refusing hostile ones, and writing values that round-trip.

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
    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><a>&x;</a></xml>";
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
    let fields: Fields =
        [("total_fee", "1"), ("body", "腾讯充值中心-QQ会员充值"), ("attach", "a]]>b<c>&d\r\ne\u{1}"), ("empty", "")]
            .into_iter()
            .collect();
    let xml = fields.to_xml();
    assert!(xml.starts_with("<xml><total_fee>1</total_fee><body><![CDATA[腾讯"));
    assert_eq!(parse(xml.as_bytes()).unwrap(), fields);
}
