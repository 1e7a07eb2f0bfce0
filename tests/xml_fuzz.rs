//! Fuzzing of the hardened XML reader that runs in `cargo test`: over a million inputs (random
//! bytes, a token soup of the constructs the reader must refuse or handle, and mutations of valid
//! signed documents), each read with `xml::parse` and with `parse_with` for the `<root>` of the
//! decrypted refund notify. The claim is that nothing panics and every failure is a typed
//! `XmlError`; accepted documents must also survive a write-and-read round trip.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use common::seeded::Rng;
use wechat_checkout::wxpay::sign::{self, ApiKey, SignType};
use wechat_checkout::wxpay::xml::{self, Fields, ReadOptions, XmlError};

#[derive(Default)]
struct Tally {
    inputs: u64,
    accepted: u64,
}

/// Reads one input both ways. An accepted document must read back the same after being written.
fn drive(bytes: &[u8], tally: &mut Tally) {
    tally.inputs += 1;
    let as_xml = xml::parse(bytes);
    let as_root = xml::parse_with(bytes, ReadOptions { root: "root", ..ReadOptions::default() });
    for (result, root) in [(as_xml, "xml"), (as_root, "root")] {
        match result {
            Ok(fields) => {
                tally.accepted += 1;
                check_round_trip(&fields, root, bytes);
            }
            Err(e) => check_error(&e),
        }
    }
}

fn check_round_trip(fields: &Fields, root: &str, input: &[u8]) {
    // No XML 1.0 document can carry NUL, so the reader never yields one.
    assert!(fields.pairs().all(|(_, v)| !v.contains('\0')), "NUL accepted from {:?}", String::from_utf8_lossy(input));
    if !fields.pairs().all(|(k, _)| xml::is_field_name(k)) {
        return;
    }
    let written = xml::write_document(root, fields.pairs());
    let opts = ReadOptions { root, max_bytes: usize::MAX };
    let reread = xml::parse_with(written.as_bytes(), opts);
    assert_eq!(reread.as_ref(), Ok(fields), "input {:?} rewritten as {written:?}", String::from_utf8_lossy(input));
}

/// Every error renders, which is all a caller does with it.
fn check_error(e: &XmlError) {
    assert!(!e.to_string().is_empty());
}

fn key() -> ApiKey {
    ApiKey::new("192006250b4c09247ec02edce69f6a2d").unwrap()
}

fn signed(root: &str, pairs: &[(&str, &str)], sign_type: SignType) -> Vec<u8> {
    let sign = sign::sign(pairs.iter().copied(), &key(), sign_type);
    let mut fields: Fields = pairs.iter().copied().collect();
    fields.insert("sign", sign);
    xml::write_document(root, fields.pairs()).into_bytes()
}

/// Valid documents: signed notifies and replies, the refund notify's inner `<root>`, and
/// hand-written variants (declaration, whitespace, escapes, empty elements).
fn seeds() -> Vec<Vec<u8>> {
    let notify: &[(&str, &str)] = &[
        ("appid", "wx2421b1c4370ec43b"),
        ("attach", "支付测试 & <more> ]]> \"q\""),
        ("bank_type", "CFT"),
        ("cash_fee", "1"),
        ("fee_type", "CNY"),
        ("is_subscribe", "Y"),
        ("mch_id", "10000100"),
        ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
        ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
        ("out_trade_no", "1409811653"),
        ("result_code", "SUCCESS"),
        ("return_code", "SUCCESS"),
        ("time_end", "20140903131540"),
        ("total_fee", "1"),
        ("trade_type", "JSAPI"),
        ("transaction_id", "1004400740201409030005092168"),
    ];
    let reply: &[(&str, &str)] = &[
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("appid", "wx2421b1c4370ec43b"),
        ("mch_id", "10000100"),
        ("nonce_str", "IITRi8Iabbblz1Jc"),
        ("result_code", "SUCCESS"),
        ("prepay_id", "wx201411101639507cbf6ffd8b0779950874"),
        ("trade_type", "JSAPI"),
    ];
    let inner: &[(&str, &str)] = &[
        ("out_refund_no", "R1"),
        ("out_trade_no", "T1"),
        ("refund_account", "REFUND_SOURCE_RECHARGE_FUNDS"),
        ("refund_fee", "1"),
        ("refund_id", "50000000012024050212345678901"),
        ("refund_recv_accout", "支付用户零钱"),
        ("refund_status", "SUCCESS"),
        ("success_time", "2024-05-02 10:00:05"),
        ("total_fee", "1"),
    ];
    let mut seeds = vec![
        signed("xml", notify, SignType::Md5),
        signed("xml", notify, SignType::HmacSha256),
        signed("xml", reply, SignType::Md5),
        signed("root", inner, SignType::Md5),
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n  <return_code><![CDATA[FAIL]]></return_code>\n  <return_msg>No Bill Exist</return_msg>\n  <error_code>20002</error_code>\n</xml>\n".to_vec(),
        "\u{feff}<xml><body>a &amp; b &#x4E2D; &#20013; &lt;&gt;&quot;&apos;</body><empty/><e2></e2><!-- c --></xml>".as_bytes().to_vec(),
        b"<root><req_info><![CDATA[T87GAHG17TGAHG1TGHAHAHA1Y1CIOA9UGJH1GAHV871HAGAGQYQQPOOJMXNBCXBVNMNMAJAA]]></req_info></root>".to_vec(),
    ];
    for seed in &seeds {
        let parsed =
            xml::parse(seed).or_else(|_| xml::parse_with(seed, ReadOptions { root: "root", ..ReadOptions::default() }));
        assert!(parsed.is_ok(), "seed {:?}: {parsed:?}", String::from_utf8_lossy(seed));
    }
    seeds.push(Vec::new());
    seeds
}

const TOKENS: &[&str] = &[
    "<xml>",
    "</xml>",
    "<root>",
    "</root>",
    "<a>",
    "</a>",
    "<b>",
    "</b>",
    "<a/>",
    "<sign>",
    "</sign>",
    "<![CDATA[",
    "]]>",
    "<![CDATA[x]]>",
    "&amp;",
    "&lt;",
    "&gt;",
    "&quot;",
    "&apos;",
    "&#x4E2D;",
    "&#20013;",
    "&#0;",
    "&#xD800;",
    "&#x110000;",
    "&#;",
    "&#x;",
    "&x;",
    "&",
    "&amp",
    "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>",
    "<!DOCTYPE xml>",
    "<!ENTITY x \"y\">",
    "<?pi?>",
    "<?xml version=\"1.0\"?>",
    "<?xml version=\"1.0\" encoding=\"GBK\"?>",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
    "<!-- c -->",
    "<!--",
    "-->",
    "text",
    "中文",
    " ",
    "\n",
    "\r\n",
    "\t",
    "<",
    ">",
    "/",
    "\"",
    "'",
    "=",
    "<a b=\"c\">",
    "<a b='&x;'>",
    "<a xmlns=\"urn:x\">",
    "<x:a>",
    "</x:a>",
    "\u{feff}",
    "\u{0}",
    "\u{ff}",
    "<<",
    "</>",
    "<>",
    "<a ",
    "1",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    match rng.below(10) {
        0 if !input.is_empty() => {
            let at = rng.below(input.len());
            input[at] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let at = rng.below(input.len());
            input[at] = rng.pick(b"<>/&;![]?=\"' x\0\xff");
        }
        2 if !input.is_empty() => {
            let at = rng.below(input.len());
            let len = 1 + rng.below(12.min(input.len() - at));
            input.drain(at..at + len);
        }
        3 | 4 => {
            let at = rng.below(input.len() + 1);
            let token = rng.pick(TOKENS).as_bytes();
            input.splice(at..at, token.iter().copied());
        }
        5 => input.truncate(rng.below(input.len() + 1)),
        6 if !input.is_empty() => {
            // Duplicate a slice of the document somewhere else (duplicate keys, nested tags).
            let start = rng.below(input.len());
            let end = start + rng.below(input.len() - start + 1).min(64);
            let piece = input[start..end].to_vec();
            let at = rng.below(input.len() + 1);
            input.splice(at..at, piece);
        }
        7 => {
            // Splice in part of another seed.
            let other = rng.pick_ref(seeds).as_slice();
            let start = rng.below(other.len() + 1);
            let end = start + rng.below(other.len() - start + 1);
            let at = rng.below(input.len() + 1);
            input.splice(at..at, other[start..end].iter().copied());
        }
        8 => {
            // Rename the root, the commonest wrong-document mistake.
            let text = String::from_utf8_lossy(input).into_owned();
            let (from, to) = rng.pick(&[("xml", "root"), ("root", "xml"), ("xml", "XML"), ("<xml>", "<xml >")]);
            *input = text.replacen(from, to, 1 + rng.below(2)).into_bytes();
        }
        _ => {
            let at = rng.below(input.len() + 1);
            let junk: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
            input.splice(at..at, junk);
        }
    }
}

static ALL_INPUTS: AtomicU64 = AtomicU64::new(0);

fn report(name: &str, tally: &Tally, started: Instant) {
    let total = ALL_INPUTS.fetch_add(tally.inputs, Ordering::Relaxed) + tally.inputs;
    println!(
        "{name}: {} inputs, {} accepted reads, {:.1?} (XML reader inputs so far: {total})",
        tally.inputs,
        tally.accepted,
        started.elapsed()
    );
}

/// Inputs per test; the three tests add up to 1,000,000 (each read twice).
const RANDOM_BYTES: u64 = 250_000;
const TOKEN_SOUP: u64 = 350_000;
const MUTATIONS: u64 = 400_000;

#[test]
fn random_bytes() {
    let started = Instant::now();
    let mut rng = Rng::new(11);
    let mut tally = Tally::default();
    let mut input = Vec::with_capacity(256);
    for i in 0..RANDOM_BYTES {
        input.clear();
        // Some start like a document so the bytes get past the first event.
        if i % 3 == 0 {
            input.extend_from_slice(b"<xml><a>");
        }
        if i % 2 == 0 {
            input.extend((0..rng.below(128)).map(|_| rng.next() as u8));
        } else {
            // Bytes from XML's own alphabet, so most inputs are UTF-8 and reach the tokenizer.
            input.extend((0..rng.below(128)).map(|_| rng.pick(b"<>/&;#x![]?=\"' \nabz019CDAT-")));
        }
        drive(&input, &mut tally);
    }
    report("random bytes", &tally, started);
}

#[test]
fn token_soup() {
    let started = Instant::now();
    let mut rng = Rng::new(12);
    let mut tally = Tally::default();
    let mut input = String::with_capacity(512);
    for _ in 0..TOKEN_SOUP {
        input.clear();
        // Half are wrapped in a root element, so that the soup is read as fields.
        let root = rng.pick(&["", "xml", "root"]);
        if !root.is_empty() {
            input.push_str(&format!("<{root}>"));
        }
        for _ in 0..rng.below(24) {
            input.push_str(rng.pick(TOKENS));
        }
        if !root.is_empty() {
            input.push_str(&format!("</{root}>"));
        }
        drive(input.as_bytes(), &mut tally);
    }
    report("token soup", &tally, started);
}

#[test]
fn mutations_of_signed_documents() {
    let started = Instant::now();
    let mut rng = Rng::new(13);
    let seeds = seeds();
    let mut tally = Tally::default();
    let mut input = Vec::with_capacity(2048);
    for _ in 0..MUTATIONS {
        input.clear();
        input.extend_from_slice(rng.pick_ref(&seeds).as_slice());
        for _ in 0..(1 + rng.below(4)) {
            mutate(&mut rng, &seeds, &mut input);
        }
        drive(&input, &mut tally);
    }
    report("mutations", &tally, started);
}

#[test]
fn oversized_documents_are_refused_before_parsing() {
    let mut big = b"<xml><a>".to_vec();
    big.resize(xml::DEFAULT_MAX_BYTES + 1, b'x');
    assert_eq!(xml::parse(&big), Err(XmlError::TooLarge { limit: xml::DEFAULT_MAX_BYTES }));
}
