//! Every layout WeChat has sent: the reference bill of the protocol notes, the current and legacy
//! headers of each bill type, and the values their rows and summaries carry.

use chrono::{TimeZone, Utc};

use super::*;

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
