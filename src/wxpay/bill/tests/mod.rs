//! Tests of the bill parser: the reference bill, every layout, awkward text and encodings; the
//! error paths are in `errors`.

use std::io::Write;

use chrono::{TimeZone, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::*;

mod errors;

/// The reference bill of the protocol notes (§9.3): one row under a summary that claims three.
const SAMPLE: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n\
`2021-01-28 17:07:11,`wx81be3101902f7cb2,`1601959334,`0,`,`4200000925202101284997714292,`S20210128170702357723,`ofyak5qR_1wYsC99CsWA6R9MJazA,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.01,`0.00,`0,`0,`0.00,`0.00,`,`,`for testing,`cipher code,`0.00000,`1.00%,`0.01,`0.00,`\r\n\
总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n\
`3,`0.03,`0.00,`0.00,`0.00000,`0.03,`0.00\r\n";

/// Rows until the first error, and how the bill ended.
fn parse(text: &str) -> (Vec<BillRow>, Result<BillSummary, BillError>) {
    parse_bytes(text.as_bytes())
}

fn parse_bytes(bytes: &[u8]) -> (Vec<BillRow>, Result<BillSummary, BillError>) {
    let mut reader = match BillReader::new(bytes) {
        Ok(reader) => reader,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut rows = Vec::new();
    for row in reader.by_ref() {
        match row {
            Ok(row) => rows.push(row),
            Err(_) => break,
        }
    }
    (rows, reader.finish())
}

fn error_of(text: &str) -> BillError {
    parse(text).1.expect_err("the bill should be refused")
}

fn fen(v: i64) -> Fen {
    Fen::new(v)
}

/// A valid payment-row value for a header name; tests override what they look at.
fn default_value(name: &str) -> &'static str {
    match name {
        "交易时间" => "2024-05-01 12:00:00",
        "公众账号ID" => "wx2421b1c4370ec43b",
        "商户号" => "1900000109",
        "特约商户号" | "子商户号" => "0",
        "微信订单号" => "4200000001202405011234567890",
        "商户订单号" => "T1",
        "用户标识" => "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "交易类型" => "JSAPI",
        "交易状态" => "SUCCESS",
        "付款银行" => "CMB_CREDIT",
        "货币种类" => "CNY",
        "应结订单金额" | "总金额" | "订单金额" => "1.00",
        "微信退款单号" | "商户退款单号" => "0",
        "商品名称" => "腾讯充值中心-QQ会员充值",
        "手续费" => "0.01000",
        "费率" => "0.60%",
        n if n.contains("金额") => "0.00",
        _ => "",
    }
}

/// A backtick-prefixed line for `header`, with `values` overriding the defaults by column name.
fn row_for(header: &str, values: &[(&str, &str)]) -> String {
    let cells: Vec<String> = header
        .split(',')
        .map(|name| {
            let value = values.iter().find(|(n, _)| *n == name).map_or(default_value(name), |(_, v)| *v);
            format!("`{value}")
        })
        .collect();
    cells.join(",")
}

fn summary_for(header: &str, values: &[&str]) -> String {
    let cells: Vec<String> = values.iter().map(|v| format!("`{v}")).collect();
    format!("{header}\r\n{}\r\n", cells.join(","))
}

fn bill(header: &str, rows: &[String], summary_header: &str, summary: &[&str]) -> String {
    let mut text = format!("{header}\r\n");
    for row in rows {
        text.push_str(row);
        text.push_str("\r\n");
    }
    text.push_str(&summary_for(summary_header, summary));
    text
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn header_constants_have_the_documented_widths_and_all_map() {
    for (line, width) in [
        (CURRENT_ALL, 27),
        (CURRENT_SUCCESS, 20),
        (CURRENT_REFUND, 29),
        (LEGACY_ALL, 24),
        (LEGACY_SUCCESS, 18),
        (LEGACY_REFUND, 26),
    ] {
        let names: Vec<&str> = line.split(',').collect();
        assert_eq!(names.len(), width, "{line}");
        assert!(names.iter().all(|n| Column::from_header_name(n).is_some()), "{line}");
    }
    assert_eq!(SAMPLE.lines().next(), Some(CURRENT_ALL));
    for line in [CURRENT_SUMMARY, LEGACY_SUMMARY] {
        assert!(line.split(',').all(|n| SummaryColumn::from_header_name(n).is_some()));
    }
}

#[test]
fn reference_sample_row_parses_but_its_summary_count_does_not_match() {
    let (rows, end) = parse(SAMPLE);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.trade_time, Utc.with_ymd_and_hms(2021, 1, 28, 9, 7, 11).unwrap());
    assert_eq!(row.appid, "wx81be3101902f7cb2");
    assert_eq!(row.mch_id, "1601959334");
    assert_eq!(row.sub_mch_id, "0");
    assert_eq!(row.device_info, "");
    assert_eq!(row.transaction_id, "4200000925202101284997714292");
    assert_eq!(row.out_trade_no, "S20210128170702357723");
    assert_eq!(row.openid, "ofyak5qR_1wYsC99CsWA6R9MJazA");
    assert_eq!(row.trade_type, "NATIVE");
    assert_eq!(row.status, BillStatus::Success);
    assert_eq!(row.bank_type, "OTHERS");
    assert_eq!(row.fee_type, "CNY");
    assert_eq!(row.settlement_fee, fen(1));
    assert_eq!(row.coupon_fee, Fen::ZERO);
    assert_eq!(row.refund_id, None);
    assert_eq!(row.out_refund_no, None);
    assert_eq!(row.refund_fee, Fen::ZERO);
    assert_eq!(row.coupon_refund_fee, Fen::ZERO);
    assert_eq!((row.refund_type.as_str(), row.refund_status.as_str()), ("", ""));
    assert_eq!(row.body, "for testing");
    assert_eq!(row.attach, "cipher code");
    assert_eq!(row.service_fee, ServiceFee::ZERO);
    assert_eq!(row.rate, "1.00%");
    assert_eq!(row.order_fee, Some(fen(1)));
    assert_eq!(row.requested_refund_fee, Some(Fen::ZERO));
    assert_eq!(row.rate_remark, None);
    assert_eq!((row.refund_apply_time, row.refund_success_time), (None, None));
    assert_eq!(end, Err(BillError::SummaryMismatch { what: "总交易单数", summary: "3".into(), rows: "1".into() }));
}

#[test]
fn reference_sample_with_its_row_three_times_passes_the_cross_check() {
    let lines: Vec<&str> = SAMPLE.split("\r\n").collect();
    let text = [lines[0], lines[1], lines[1], lines[1], lines[2], lines[3], ""].join("\r\n");
    let mut reader = BillReader::new(text.as_bytes()).unwrap();
    assert_eq!(reader.layout(), BillLayout::Current);
    assert_eq!(reader.columns().len(), 27);
    assert_eq!(reader.by_ref().filter(|r| r.is_ok()).count(), 3);
    assert_eq!(reader.rows_read(), 3);
    let summary = reader.finish().unwrap();
    assert_eq!(
        summary,
        BillSummary {
            trade_count: 3,
            settlement_total: fen(3),
            refund_total: Some(Fen::ZERO),
            coupon_refund_total: Some(Fen::ZERO),
            fee_total: ServiceFee::ZERO,
            order_total: Some(fen(3)),
            requested_refund_total: Some(Fen::ZERO),
        }
    );
}

#[test]
fn current_all_with_payment_and_refund_rows() {
    let payment = row_for(
        CURRENT_ALL,
        &[("应结订单金额", "99.50"), ("代金券金额", "0.50"), ("订单金额", "100.00"), ("手续费", "0.60000")],
    );
    let refund = row_for(
        CURRENT_ALL,
        &[
            ("交易状态", "REFUND"),
            ("应结订单金额", "0.00"),
            ("订单金额", "0.00"),
            ("微信退款单号", "50000000012024050112345678901"),
            ("商户退款单号", "R1"),
            ("退款金额", "30.00"),
            ("申请退款金额", "30.00"),
            ("退款类型", "ORIGINAL"),
            ("退款状态", "SUCCESS"),
            ("手续费", "-0.18000"),
        ],
    );
    let text = bill(
        CURRENT_ALL,
        &[payment, refund],
        CURRENT_SUMMARY,
        &["2", "99.50", "30.00", "0.00", "0.42000", "100.00", "30.00"],
    );
    let (rows, end) = parse(&text);
    assert_eq!(rows[0].settlement_fee, fen(9950));
    assert_eq!(rows[0].coupon_fee, fen(50));
    assert_eq!(rows[0].service_fee, ServiceFee::new(60_000));
    assert_eq!(rows[1].status, BillStatus::Refund);
    assert_eq!(rows[1].refund_id.as_deref(), Some("50000000012024050112345678901"));
    assert_eq!(rows[1].out_refund_no.as_deref(), Some("R1"));
    assert_eq!(rows[1].refund_fee, fen(3000));
    assert_eq!(rows[1].requested_refund_fee, Some(fen(3000)));
    assert_eq!(rows[1].service_fee, ServiceFee::new(-18_000));
    assert_eq!((rows[1].refund_type.as_str(), rows[1].refund_status.as_str()), ("ORIGINAL", "SUCCESS"));
    let summary = end.unwrap();
    assert_eq!(summary.fee_total, ServiceFee::new(42_000));
    assert_eq!(summary.refund_total, Some(fen(3000)));
}

#[test]
fn current_success_layout() {
    let text = bill(
        CURRENT_SUCCESS,
        &[row_for(CURRENT_SUCCESS, &[("费率备注", "活动费率")])],
        CURRENT_SUMMARY,
        &["1", "1.00", "0.00", "0.00", "0.01000", "1.00", "0.00"],
    );
    let (rows, end) = parse(&text);
    assert_eq!(rows[0].order_fee, Some(fen(100)));
    assert_eq!(rows[0].requested_refund_fee, None);
    assert_eq!(rows[0].refund_id, None);
    assert_eq!(rows[0].rate_remark.as_deref(), Some("活动费率"));
    end.unwrap();
}

#[test]
fn current_refund_layout_reads_the_refund_times() {
    let refund = row_for(
        CURRENT_REFUND,
        &[
            ("交易状态", "REFUND"),
            ("应结订单金额", "0.00"),
            ("订单金额", "0.00"),
            ("退款申请时间", "2024-05-02 10:00:00"),
            ("退款成功时间", "2024-05-02 10:00:05"),
            ("微信退款单号", "5000"),
            ("商户退款单号", "R1"),
            ("退款金额", "1.00"),
            ("申请退款金额", "1.00"),
            ("手续费", "-0.01000"),
        ],
    );
    let pending = row_for(
        CURRENT_REFUND,
        &[
            ("交易状态", "REFUND"),
            ("应结订单金额", "0.00"),
            ("订单金额", "0.00"),
            ("退款申请时间", "2024-05-02 11:00:00"),
            ("微信退款单号", "5001"),
            ("商户退款单号", "R2"),
            ("退款金额", "0.50"),
            ("申请退款金额", "0.50"),
            ("退款状态", "PROCESSING"),
            ("手续费", "0.00000"),
        ],
    );
    let text = bill(
        CURRENT_REFUND,
        &[refund, pending],
        CURRENT_SUMMARY,
        &["2", "0.00", "1.50", "0.00", "-0.01000", "0.00", "1.50"],
    );
    let (rows, end) = parse(&text);
    assert_eq!(rows[0].refund_apply_time, Some(Utc.with_ymd_and_hms(2024, 5, 2, 2, 0, 0).unwrap()));
    assert_eq!(rows[0].refund_success_time, Some(Utc.with_ymd_and_hms(2024, 5, 2, 2, 0, 5).unwrap()));
    assert_eq!(rows[1].refund_success_time, None);
    assert_eq!(rows[1].refund_status, "PROCESSING");
    end.unwrap();
}

#[test]
fn legacy_layouts() {
    let payment = |header| {
        row_for(
            header,
            &[("子商户号", "1230000109"), ("总金额", "2.00"), ("代金券或立减优惠金额", "0.10"), ("手续费", "0.01000")],
        )
    };
    let refund = |header| {
        row_for(
            header,
            &[
                ("交易状态", "REFUND"),
                ("总金额", "0.00"),
                ("微信退款单号", "5000"),
                ("商户退款单号", "R1"),
                ("退款金额", "2.00"),
                ("代金券或立减优惠退款金额", "0.10"),
                ("退款申请时间", "2024-05-02 10:00:00"),
                ("手续费", "-0.01000"),
            ],
        )
    };
    let all = bill(
        LEGACY_ALL,
        &[payment(LEGACY_ALL), refund(LEGACY_ALL)],
        LEGACY_SUMMARY,
        &["2", "2.00", "2.00", "0.10", "0.00000"],
    );
    let success =
        bill(LEGACY_SUCCESS, &[payment(LEGACY_SUCCESS)], LEGACY_SUMMARY, &["1", "2.00", "0.00", "0.00", "0.01000"]);
    let refunds =
        bill(LEGACY_REFUND, &[refund(LEGACY_REFUND)], LEGACY_SUMMARY, &["1", "0.00", "2.00", "0.10", "-0.01000"]);
    for (text, count) in [(&all, 2), (&success, 1), (&refunds, 1)] {
        assert_eq!(BillReader::new(text.as_bytes()).unwrap().layout(), BillLayout::Legacy);
        let (rows, end) = parse(text);
        assert_eq!(rows.len(), count);
        let summary = end.unwrap();
        assert_eq!((summary.order_total, summary.requested_refund_total), (None, None));
        for row in &rows {
            assert_eq!((row.order_fee, row.requested_refund_fee, &row.rate_remark), (None, None, &None));
        }
    }
    let (rows, _) = parse(&all);
    assert_eq!(rows[0].sub_mch_id, "1230000109");
    assert_eq!((rows[0].settlement_fee, rows[0].coupon_fee), (fen(200), fen(10)));
    assert_eq!((rows[1].refund_fee, rows[1].coupon_refund_fee), (fen(200), fen(10)));
    let (rows, _) = parse(&refunds);
    assert_eq!(rows[0].refund_apply_time, Some(Utc.with_ymd_and_hms(2024, 5, 2, 2, 0, 0).unwrap()));
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

#[test]
fn statuses_and_fees() {
    for s in ["SUCCESS", "REFUND", "REVOKED", "CLOSED"] {
        assert_eq!(BillStatus::parse(s).as_str(), s);
    }
    assert_eq!(BillStatus::parse("CLOSED"), BillStatus::Other("CLOSED".into()));
    assert_eq!(ServiceFee::parse("-0.00600"), Ok(ServiceFee::new(-600)));
    assert_eq!(ServiceFee::new(-600).to_string(), "-0.00600");
    assert_eq!(ServiceFee::from_fen(fen(32)), Some(ServiceFee::new(32_000)));
    assert_eq!(ServiceFee::from_fen(Fen::new(i64::MAX)), None);
}
