//! The error paths of the bill parser: every way a bill is refused, with its line and column.

use std::io::{self, Read};

use super::*;

#[test]
fn empty_and_headerless_bodies() {
    assert_eq!(BillReader::new(&b""[..]).err(), Some(BillError::EmptyBody));
    assert_eq!(BillReader::open(&b""[..], false).err(), Some(BillError::EmptyBody));
    assert_eq!(BillReader::open(&b""[..], true).err(), Some(BillError::EmptyBody));
    assert_eq!(BillReader::new(&b"\r\n \r\n"[..]).err(), Some(BillError::NoHeader));
    assert_eq!(BillReader::new(&b"\xEF\xBB\xBF"[..]).err(), Some(BillError::NoHeader));
}

#[test]
fn header_errors() {
    for column in REQUIRED_COLUMNS {
        let header: Vec<&str> =
            CURRENT_ALL.split(',').filter(|n| Column::from_header_name(n) != Some(*column)).collect();
        let err = BillReader::new(header.join(",").as_bytes()).err();
        assert_eq!(err, Some(BillError::MissingColumn { column: column.display_name() }));
    }
    assert_eq!(BillReader::new(&b"x\r\n"[..]).err(), Some(BillError::MissingColumn { column: "交易时间" }));
    let settlement_twice = format!("{CURRENT_ALL},总金额");
    assert_eq!(
        BillReader::new(settlement_twice.as_bytes()).err(),
        Some(BillError::DuplicateColumn { line: 1, column: "总金额".into() })
    );
    assert_eq!(BillReader::new(&b"\xff\xfe\r\n"[..]).err(), Some(BillError::NotUtf8 { line: 1 }));
    let long = format!("{CURRENT_ALL},{}", "x".repeat(MAX_LINE_BYTES));
    assert_eq!(BillReader::new(long.as_bytes()).err(), Some(BillError::LineTooLong { line: 1, limit: MAX_LINE_BYTES }));
}

fn sample_with_row(row: &str) -> String {
    let lines: Vec<&str> = SAMPLE.split("\r\n").collect();
    [lines[0], row, lines[2], "`1,`0.01,`0.00,`0.00,`0.00000,`0.01,`0.00", ""].join("\r\n")
}

fn sample_row() -> &'static str {
    SAMPLE.split("\r\n").nth(1).unwrap()
}

#[test]
fn row_errors_carry_line_and_column() {
    assert_eq!(parse(&sample_with_row(sample_row())).1.unwrap().trade_count, 1);
    let row = sample_row();
    assert_eq!(error_of(&sample_with_row(&row[1..])), BillError::MissingBacktick { line: 2 });
    let short = row.rsplitn(3, ",`").nth(2).unwrap();
    assert_eq!(error_of(&sample_with_row(short)), BillError::TooFewFields { line: 2, expected: 27, found: 25 });
    assert_eq!(
        error_of(&sample_with_row(&row.replace("`0.01,`0.00,`0,", "`0.011,`0.00,`0,"))),
        BillError::BadAmount { line: 2, column: "应结订单金额/总金额", value: "0.011".into() }
    );
    assert_eq!(
        error_of(&sample_with_row(&row.replace("`0.00000", "`0.000001"))),
        BillError::BadAmount { line: 2, column: "手续费", value: "0.000001".into() }
    );
    assert_eq!(
        error_of(&sample_with_row(&row.replace("`0.00000", "`1e-5"))),
        BillError::BadAmount { line: 2, column: "手续费", value: "1e-5".into() }
    );
    assert_eq!(
        error_of(&sample_with_row(&row.replace("2021-01-28 17:07:11", "2021/01/28 17:07:11"))),
        BillError::BadTime { line: 2, column: "交易时间", value: "2021/01/28 17:07:11".into() }
    );
    assert_eq!(
        error_of(&sample_with_row(&row.replace("2021-01-28 17:07:11", ""))),
        BillError::BadTime { line: 2, column: "交易时间", value: String::new() }
    );
    let mut bad_utf8 = sample_with_row(row).into_bytes();
    let at = bad_utf8.iter().position(|&b| b == b'N').unwrap(); // the N of NATIVE, on line 2
    bad_utf8[at] = 0xff;
    assert_eq!(parse_bytes(&bad_utf8).1, Err(BillError::NotUtf8 { line: 2 }));
    let refund_time = row_for(CURRENT_REFUND, &[("退款申请时间", "2024-13-01 00:00:00")]);
    assert_eq!(
        error_of(&bill(CURRENT_REFUND, &[refund_time], CURRENT_SUMMARY, &["1", "1", "0", "0", "0", "1", "0"])),
        BillError::BadTime { line: 2, column: "退款申请时间", value: "2024-13-01 00:00:00".into() }
    );
}

#[test]
fn extra_fields_need_a_text_column_to_absorb_them() {
    let header = "交易时间,微信订单号,商户订单号,交易状态,应结订单金额,手续费";
    let row = "`2024-05-01 12:00:00,`42,`T1,`SUCCESS,`1.00,`0.01000,`surplus";
    let text = format!("{header}\r\n{row}\r\n总交易单数,应结订单总金额,手续费总金额\r\n`1,`1.00,`0.01000\r\n");
    assert_eq!(error_of(&text), BillError::TooManyFields { line: 2, expected: 6, found: 7 });
    // Without the surplus field that minimal header is a complete bill.
    let ok = text.replace(",`surplus", "");
    let (rows, end) = parse(&ok);
    assert_eq!((rows[0].order_fee, rows[0].body.as_str()), (None, ""));
    assert_eq!(end.unwrap().refund_total, None);
}

#[test]
fn totals_that_overflow_are_an_error() {
    let huge = row_for(CURRENT_SUCCESS, &[("手续费", "90000000000000.00000")]);
    let text = bill(CURRENT_SUCCESS, &[huge.clone(), huge], CURRENT_SUMMARY, &["2", "2", "0", "0", "0", "2", "0"]);
    assert_eq!(error_of(&text), BillError::Overflow { line: 3, column: "手续费" });
    let big = row_for(CURRENT_SUCCESS, &[("应结订单金额", "999999999999999.99")]);
    let rows = vec![big; 93];
    let text = bill(CURRENT_SUCCESS, &rows, CURRENT_SUMMARY, &["93", "0", "0", "0", "0", "93", "0"]);
    assert!(matches!(error_of(&text), BillError::Overflow { column: "应结订单金额/总金额", .. }));
}

#[test]
fn summary_errors() {
    let lines: Vec<&str> = SAMPLE.split("\r\n").collect();
    let join = |parts: &[&str]| parts.join("\r\n");
    assert_eq!(error_of(&join(&[lines[0], lines[1]])), BillError::MissingSummary);
    assert_eq!(error_of(lines[0]), BillError::MissingSummary);
    assert_eq!(error_of(&join(&[lines[0], lines[1], lines[2], ""])), BillError::MissingSummaryValues { line: 3 });
    assert_eq!(
        error_of(&join(&[lines[0], lines[1], lines[2], lines[3], lines[2], lines[3]])),
        BillError::TrailingData { line: 5 }
    );
    assert_eq!(
        error_of(&join(&[lines[0], lines[1], lines[2], lines[3], lines[1]])),
        BillError::TrailingData { line: 5 }
    );
    assert_eq!(
        error_of(&join(&[lines[0], lines[1], "总交易单数,应结订单总金额", "`1,`0.01"])),
        BillError::MissingSummaryColumn { column: "手续费总金额" }
    );
    assert_eq!(
        error_of(&join(&[lines[0], lines[1], lines[2], "`1,`0.01,`0.00"])),
        BillError::SummaryFieldCount { line: 4, expected: 7, found: 3 }
    );
    assert_eq!(
        error_of(&join(&[lines[0], lines[1], lines[2], "1,`0.01,`0.00,`0.00,`0.00000,`0.01,`0.00"])),
        BillError::MissingBacktick { line: 4 }
    );
    for bad_count in ["1.0", "-1", "", "99999999999999999999"] {
        let values = format!("`{bad_count},`0.01,`0.00,`0.00,`0.00000,`0.01,`0.00");
        assert_eq!(
            error_of(&join(&[lines[0], lines[1], lines[2], &values])),
            BillError::BadAmount { line: 4, column: "总交易单数", value: bad_count.into() }
        );
    }
    assert_eq!(
        error_of(&join(&[lines[0], lines[1], lines[2], "`1,`0.01,`x,`0.00,`0.00000,`0.01,`0.00"])),
        BillError::BadAmount { line: 4, column: "退款总金额/总退款金额", value: "x".into() }
    );
    assert_eq!(
        error_of(&join(&[lines[0], lines[1], "总交易单数,手续费总金额,总交易额,总交易额", "`1,`0,`0,`0"])),
        BillError::DuplicateColumn { line: 3, column: "总交易额".into() }
    );
}

#[test]
fn every_total_is_cross_checked() {
    let lines: Vec<&str> = SAMPLE.split("\r\n").collect();
    let cases = [
        ("`1,`0.02,`0.00,`0.00,`0.00000,`0.01,`0.00", "应结订单总金额/总交易额", "0.02", "0.01"),
        ("`1,`0.01,`0.01,`0.00,`0.00000,`0.01,`0.00", "退款总金额/总退款金额", "0.01", "0.00"),
        (
            "`1,`0.01,`0.00,`0.01,`0.00000,`0.01,`0.00",
            "充值券退款总金额/总代金券或立减优惠退款金额/总企业红包退款金额",
            "0.01",
            "0.00",
        ),
        ("`1,`0.01,`0.00,`0.00,`0.00001,`0.01,`0.00", "手续费总金额", "0.00001", "0.00000"),
        ("`1,`0.01,`0.00,`0.00,`0.00000,`0.02,`0.00", "订单总金额", "0.02", "0.01"),
        ("`1,`0.01,`0.00,`0.00,`0.00000,`0.01,`-0.01", "申请退款总金额", "-0.01", "0.00"),
    ];
    for (values, what, summary, rows) in cases {
        let text = [lines[0], lines[1], lines[2], values].join("\r\n");
        assert_eq!(
            error_of(&text),
            BillError::SummaryMismatch { what, summary: summary.into(), rows: rows.into() },
            "{values}"
        );
    }
}

#[test]
fn errors_end_the_iteration_and_finish_repeats_them() {
    let row = sample_row();
    let bad = row.replace("`0.01,`0.00,`0,", "`x,`0.00,`0,");
    let lines: Vec<&str> = SAMPLE.split("\r\n").collect();
    let text = [lines[0], row, &bad, row, lines[2], lines[3]].join("\r\n");
    let mut reader = BillReader::new(text.as_bytes()).unwrap();
    assert!(reader.next().unwrap().is_ok());
    let err = reader.next().unwrap().unwrap_err();
    assert_eq!(err.line(), Some(3));
    assert!(reader.next().is_none());
    assert!(reader.next().is_none());
    assert_eq!(reader.finish(), Err(err));

    // finish() also drains rows the caller did not read.
    let reader = BillReader::new(SAMPLE.as_bytes()).unwrap();
    assert!(matches!(reader.finish(), Err(BillError::SummaryMismatch { .. })));
}

#[test]
fn read_failures_are_typed() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer went away"));
            }
            let header = CURRENT_ALL.as_bytes();
            let n = header.len().min(buf.len());
            buf[..n].copy_from_slice(&header[..n]);
            self.0 -= 1;
            Ok(n)
        }
    }
    assert!(matches!(
        BillReader::open(Failing(0), false).err(),
        Some(BillError::Io { line: 1, kind: io::ErrorKind::ConnectionReset, .. })
    ));
    let reader = BillReader::open(Failing(1), false);
    assert!(matches!(reader.err(), Some(BillError::Io { line: 1, .. })));
}
