//! How the text of a bill is read: header names matched loosely, columns in any order, separators
//! inside values, line ends, byte-order marks and gzip.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn coupon_synonyms_and_unknown_columns() {
    let header = format!("{},企业红包退款金额,新的列", CURRENT_SUCCESS.replace("代金券金额", "企业红包金额"));
    let row = row_for(&header, &[("企业红包金额", "0.30"), ("企业红包退款金额", "0.00"), ("新的列", "whatever")]);
    let (rows, end) =
        parse(&bill(&header, &[row], CURRENT_SUMMARY, &["1", "1.00", "0.00", "0.00", "0.01000", "1.00", "0.00"]));
    assert_eq!(rows[0].coupon_fee, fen(30));
    end.unwrap();
}

#[test]
fn full_width_commas_and_spaces_in_headers() {
    let header = CURRENT_ALL.replace(',', " ， ");
    let summary_header = CURRENT_SUMMARY.replace(',', "，");
    let text = SAMPLE.replacen(CURRENT_ALL, &header, 1).replacen(CURRENT_SUMMARY, &summary_header, 1);
    let (rows, end) = parse(&text);
    assert_eq!(rows[0].settlement_fee, fen(1));
    assert!(matches!(end, Err(BillError::SummaryMismatch { what: "总交易单数", .. })));
}

#[test]
fn shuffled_columns_are_mapped_by_name() {
    let values = [("商户订单号", "SHUF"), ("应结订单金额", "12.34"), ("订单金额", "12.34"), ("手续费", "0.07000")];
    let straight = row_for(CURRENT_ALL, &values);
    let reversed_header: Vec<&str> = CURRENT_ALL.split(',').rev().collect();
    let reversed_header = reversed_header.join(",");
    let reversed = row_for(&reversed_header, &values);
    let summary = ["1", "12.34", "0.00", "0.00", "0.07000", "12.34", "0.00"];
    let mut summary_header: Vec<&str> = CURRENT_SUMMARY.split(',').collect();
    let mut summary_values = summary.to_vec();
    // Move 总交易单数 off the front of the values only: the header must still start with it.
    summary_header[1..].reverse();
    summary_values[1..].reverse();
    let (a, end_a) = parse(&bill(CURRENT_ALL, &[straight], CURRENT_SUMMARY, &summary));
    let (b, end_b) = parse(&bill(&reversed_header, &[reversed], &summary_header.join(","), &summary_values));
    assert_eq!(a, b);
    assert_eq!(a[0].out_trade_no, "SHUF");
    assert_eq!(end_a.unwrap(), end_b.unwrap());
}

#[test]
fn body_and_attach_keep_commas_quotes_and_backtick_separators() {
    let plain = [("商品名称", r#"T恤, "限量" 款"#), ("商户数据包", r#"{"a":1,"b":"x,y"}"#)];
    let (rows, end) = parse(&bill(
        CURRENT_SUCCESS,
        &[row_for(CURRENT_SUCCESS, &plain)],
        CURRENT_SUMMARY,
        &["1", "1.00", "0.00", "0.00", "0.01000", "1.00", "0.00"],
    ));
    assert_eq!(rows[0].body, r#"T恤, "限量" 款"#);
    assert_eq!(rows[0].attach, r#"{"a":1,"b":"x,y"}"#);
    end.unwrap();

    // ",`" inside the body splits it into extra pieces: the body takes them back.
    for body in ["a,`b", ",`", "x,`y,`z", "尾,`"] {
        let row = row_for(CURRENT_ALL, &[("商品名称", body), ("商户数据包", "att,ach")]);
        let (rows, end) = parse(&bill(
            CURRENT_ALL,
            &[row],
            CURRENT_SUMMARY,
            &["1", "1.00", "0.00", "0.00", "0.01000", "1.00", "0.00"],
        ));
        assert_eq!((rows[0].body.as_str(), rows[0].attach.as_str()), (body, "att,ach"));
        assert_eq!(rows[0].service_fee, ServiceFee::new(1000));
        assert_eq!(rows[0].rate, "0.60%");
        end.unwrap();
    }

    // The documented ambiguity: a ",`" inside attach is indistinguishable and goes to body.
    let row = row_for(CURRENT_ALL, &[("商品名称", "b"), ("商户数据包", "p,`q")]);
    let (rows, _) =
        parse(&bill(CURRENT_ALL, &[row], CURRENT_SUMMARY, &["1", "1.00", "0.00", "0.00", "0.01000", "1.00", "0.00"]));
    assert_eq!((rows[0].body.as_str(), rows[0].attach.as_str()), ("b,`p", "q"));
}

#[test]
fn line_ends_bom_and_blank_lines() {
    let lf = SAMPLE.replace("\r\n", "\n");
    assert_eq!(parse(&lf), parse(SAMPLE));
    let no_final_newline = SAMPLE.trim_end();
    assert_eq!(parse(no_final_newline), parse(SAMPLE));
    let with_bom = format!("\u{feff}{SAMPLE}");
    assert_eq!(parse(&with_bom), parse(SAMPLE));
    let blank_lines = SAMPLE.replace("\r\n总交易单数", "\r\n\r\n总交易单数") + "\r\n\n";
    assert_eq!(parse(&blank_lines), parse(SAMPLE));
    // The BOM is only skipped at the very start.
    let late_bom = SAMPLE.replacen("\r\n`", "\r\n\u{feff}`", 1);
    assert_eq!(error_of(&late_bom), BillError::MissingBacktick { line: 2 });
}

#[test]
fn gzip_bodies_are_decompressed() {
    let compressed = gzip(SAMPLE.as_bytes());
    let mut reader = BillReader::open(&compressed[..], true).unwrap();
    let row = reader.next().unwrap().unwrap();
    assert_eq!(row.settlement_fee, fen(1));
    assert!(matches!(reader.finish(), Err(BillError::SummaryMismatch { .. })));

    let plain = BillReader::open(SAMPLE.as_bytes(), false).unwrap();
    assert_eq!(plain.count(), 1);
    assert_eq!(BillReader::open(&gzip(b"")[..], true).err(), Some(BillError::EmptyBody));
    assert!(matches!(BillReader::open(&b"not gzip at all"[..], true), Err(BillError::Io { line: 1, .. })));
    let mut truncated = compressed.clone();
    truncated.truncate(compressed.len() / 2);
    let outcome = match BillReader::open(&truncated[..], true) {
        Ok(reader) => reader.finish(),
        Err(e) => Err(e),
    };
    assert!(matches!(outcome, Err(BillError::Io { .. })), "{outcome:?}");
}
