//! Round trips of the bill writer through the parser, and the exact text it writes.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::wxpay::bill::{BillReader, BillRow, BillStatus, BillSummary};

const TYPES: [BillType; 4] = [BillType::All, BillType::Success, BillType::Refund, BillType::RechargeRefund];
const LAYOUTS: [BillLayout; 2] = [BillLayout::Current, BillLayout::Legacy];

fn payment(n: u32, total: i64, coupon: i64) -> BillRecord {
    BillRecord {
        trade_time: Utc.with_ymd_and_hms(2024, 5, 1, 4, 0, n % 60).unwrap(),
        appid: "wx2421b1c4370ec43b".into(),
        mch_id: "1900000109".into(),
        device_info: String::new(),
        transaction_id: format!("42000000012024050100000{n:05}"),
        out_trade_no: format!("T{n}"),
        openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
        trade_type: "JSAPI".into(),
        bank_type: "CMB_CREDIT".into(),
        body: format!("腾讯充值中心-QQ会员充值, \"{n}\" 月"),
        attach: "a=1,b=2".into(),
        total_fee: Fen::new(total),
        coupon_fee: Fen::new(coupon),
        rate_basis_points: 60,
        kind: BillRecordKind::Payment,
    }
}

fn refund(n: u32, total: i64, refund: i64) -> BillRecord {
    BillRecord {
        kind: BillRecordKind::Refund {
            refund_id: format!("5000000001202405020000{n:05}"),
            out_refund_no: format!("R{n}"),
            refund_fee: Fen::new(refund),
            refund_channel: "ORIGINAL".into(),
            refund_status: "SUCCESS".into(),
            applied_at: Utc.with_ymd_and_hms(2024, 5, 2, 2, 0, 0).unwrap(),
            succeeded_at: if n.is_multiple_of(2) {
                Some(Utc.with_ymd_and_hms(2024, 5, 2, 2, 0, 9).unwrap())
            } else {
                None
            },
        },
        ..payment(n, total, 0)
    }
}

fn sample_records() -> Vec<BillRecord> {
    vec![payment(1, 1, 0), payment(2, 10_000, 500), refund(3, 10_000, 2_550), payment(4, 83, 0), refund(4, 83, 83)]
}

/// The row the parser must give back for a record written as `bill_type` in `layout`.
fn expected_row(r: &BillRecord, bill_type: BillType, layout: BillLayout) -> BillRow {
    let has = |c: Column| header_line(bill_type, layout).split(',').any(|n| Column::from_header_name(n) == Some(c));
    let amounts = RowAmounts::of(r, layout).unwrap();
    let refund = refund_cells(&r.kind);
    let refund_has = |c: Column| refund.as_ref().filter(|_| has(c));
    BillRow {
        trade_time: r.trade_time,
        appid: r.appid.clone(),
        mch_id: r.mch_id.clone(),
        sub_mch_id: "0".into(),
        device_info: r.device_info.clone(),
        transaction_id: r.transaction_id.clone(),
        out_trade_no: r.out_trade_no.clone(),
        openid: r.openid.clone(),
        trade_type: r.trade_type.clone(),
        status: if refund.is_some() { BillStatus::Refund } else { BillStatus::Success },
        bank_type: r.bank_type.clone(),
        fee_type: "CNY".into(),
        settlement_fee: amounts.settlement,
        coupon_fee: r.coupon_fee,
        refund_id: refund_has(Column::RefundId).map(|c| c.refund_id.to_owned()),
        out_refund_no: refund_has(Column::OutRefundNo).map(|c| c.out_refund_no.to_owned()),
        refund_fee: amounts.refund_fee,
        coupon_refund_fee: Fen::ZERO,
        refund_type: refund_has(Column::RefundType).map_or(String::new(), |c| c.channel.to_owned()),
        refund_status: refund_has(Column::RefundStatus).map_or(String::new(), |c| c.status.to_owned()),
        body: r.body.clone(),
        attach: r.attach.clone(),
        service_fee: amounts.fee,
        rate: format!("{}.{:02}%", r.rate_basis_points / 100, r.rate_basis_points % 100),
        order_fee: has(Column::OrderFee).then_some(amounts.order),
        requested_refund_fee: has(Column::RequestedRefund).then_some(amounts.requested_refund),
        rate_remark: None,
        refund_apply_time: refund_has(Column::RefundApplyTime).map(|c| c.applied_at),
        refund_success_time: refund_has(Column::RefundSuccessTime).and_then(|c| c.succeeded_at),
    }
}

/// Writes, parses back, and checks every row and the cross-checked summary.
fn round_trip(records: &[BillRecord], bill_type: BillType, layout: BillLayout, gzip: bool) -> BillSummary {
    let mut bytes = Vec::new();
    let totals = if gzip {
        write_bill_gzip(&mut bytes, bill_type, layout, records).unwrap()
    } else {
        write_bill(&mut bytes, bill_type, layout, records).unwrap()
    };
    let mut reader = BillReader::open(&bytes[..], gzip).unwrap();
    assert_eq!(reader.layout(), layout);
    let expected: Vec<BillRow> =
        records.iter().filter(|r| listed(bill_type, &r.kind)).map(|r| expected_row(r, bill_type, layout)).collect();
    let rows: Vec<BillRow> = reader.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows, expected, "{bill_type} {layout:?}");
    let summary = reader.finish().unwrap();
    assert_eq!(summary.trade_count, totals.rows);
    assert_eq!(summary.settlement_total, totals.settlement_total);
    assert_eq!(summary.fee_total, totals.fee_total);
    assert_eq!(summary.refund_total, Some(totals.refund_total));
    assert_eq!(summary.coupon_refund_total, Some(totals.coupon_refund_total));
    let current = layout == BillLayout::Current;
    assert_eq!(summary.order_total, current.then_some(totals.order_total));
    assert_eq!(summary.requested_refund_total, current.then_some(totals.requested_refund_total));
    summary
}

#[test]
fn every_bill_type_and_layout_round_trips() {
    let records = sample_records();
    for bill_type in TYPES {
        for layout in LAYOUTS {
            for gzip in [false, true] {
                let summary = round_trip(&records, bill_type, layout, gzip);
                let expected_count = match bill_type {
                    BillType::All => 5,
                    BillType::Success => 3,
                    BillType::Refund => 2,
                    BillType::RechargeRefund => 0,
                };
                assert_eq!(summary.trade_count, expected_count);
            }
        }
    }
}

#[test]
fn writes_wechats_exact_text() {
    let mut bytes = Vec::new();
    let record = BillRecord {
        rate_basis_points: 100,
        body: "for testing".into(),
        attach: "cipher code".into(),
        ..payment(7, 1, 0)
    };
    let totals = write_bill(&mut bytes, BillType::All, BillLayout::Current, [record]).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let expected = format!(
        "{CURRENT_ALL}\r\n\
         `2024-05-01 12:00:07,`wx2421b1c4370ec43b,`1900000109,`0,`,`4200000001202405010000000007,`T7,\
         `oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,`SUCCESS,`CMB_CREDIT,`CNY,`0.01,`0.00,`0,`0,`0.00,`0.00,`,`,\
         `for testing,`cipher code,`0.00000,`1.00%,`0.01,`0.00,`\r\n\
         {CURRENT_SUMMARY}\r\n\
         `1,`0.01,`0.00,`0.00,`0.00000,`0.01,`0.00\r\n",
        CURRENT_ALL = crate::wxpay::bill::CURRENT_ALL,
        CURRENT_SUMMARY = crate::wxpay::bill::CURRENT_SUMMARY,
    );
    assert_eq!(text, expected);
    assert_eq!(totals.rows, 1);

    let mut bytes = Vec::new();
    write_bill(&mut bytes, BillType::Refund, BillLayout::Legacy, sample_records()).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(lines[0], crate::wxpay::bill::LEGACY_REFUND);
    assert!(lines[1].starts_with("`2024-05-01 12:00:03,"), "{}", lines[1]);
    assert!(lines[1].contains(",`REFUND,`CMB_CREDIT,`CNY,`0.00,`0.00,`2024-05-02 10:00:00,`,`5000"), "{}", lines[1]);
    assert!(lines[1].ends_with(",`-0.15000,`0.60%"), "{}", lines[1]);
    assert_eq!(lines[3], crate::wxpay::bill::LEGACY_SUMMARY);
    assert_eq!(lines[4], "`2,`0.00,`26.33,`0.00,`-0.15000");
    assert_eq!(lines[5], "");
}

#[test]
fn fees_are_rounded_half_up_to_the_fen() {
    let fee = |fen: i64, bp: u32| service_fee(Fen::new(fen), bp).map(|f| f.units());
    assert_eq!(fee(1, 100), Some(0)); // the reference bill: 0.01 yuan at 1.00% is 0.00000
    assert_eq!(fee(1, 60), Some(0));
    assert_eq!(fee(50, 100), Some(1000)); // exactly half a fen rounds up
    assert_eq!(fee(83, 60), Some(0)); // 0.498 fen
    assert_eq!(fee(84, 60), Some(1000)); // 0.504 fen
    assert_eq!(fee(10_000, 60), Some(60_000)); // 100 yuan at 0.60% is 0.60000
    assert_eq!(fee(-50, 100), Some(-1000));
    assert_eq!(fee(0, 60), Some(0));
    assert_eq!(fee(i64::MAX, u32::MAX), None);
}

#[test]
fn line_breaks_in_text_cannot_break_rows() {
    let record = BillRecord { body: "two\r\nlines".into(), attach: "x\ny".into(), ..payment(1, 100, 0) };
    let mut bytes = Vec::new();
    write_bill(&mut bytes, BillType::Success, BillLayout::Current, [&record]).unwrap();
    let mut reader = BillReader::open(&bytes[..], false).unwrap();
    let row = reader.next().unwrap().unwrap();
    assert_eq!((row.body.as_str(), row.attach.as_str()), ("two  lines", "x y"));
    reader.finish().unwrap();
}

#[test]
fn overflowing_totals_are_an_io_error() {
    let big = payment(1, i64::MAX / 2, 0);
    let mut bytes = Vec::new();
    let err = write_bill(&mut bytes, BillType::All, BillLayout::Current, [&big, &big, &big]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

fn text(max: usize) -> impl Strategy<Value = String> {
    // Printable text of any script, with the characters bills make awkward over-represented.
    prop::collection::vec(prop_oneof![4 => any::<char>().prop_filter("printable", |c| !c.is_control() && *c != '\u{feff}'), 1 => prop::sample::select(vec![',', '`', '"', '\'', '中', '，'])], 0..max)
        .prop_map(|chars| chars.into_iter().collect())
}

fn id() -> impl Strategy<Value = String> {
    // "0" is the bill's placeholder for "no refund", which no real id can be.
    "[A-Za-z0-9_]{1,32}".prop_filter("the placeholder", |id| id != "0")
}

fn record() -> impl Strategy<Value = BillRecord> {
    let time = (946_684_800i64..4_102_444_800).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap());
    let amounts = (0i64..10_000_000_000).prop_flat_map(|total| (Just(total), 0..=total, 0..=total));
    let kind = prop_oneof![Just(None), (id(), id(), "[A-Z]{0,10}", prop::option::of(0i64..10_000_000)).prop_map(Some),];
    (time.clone(), (id(), id(), id(), id(), id()), text(40), text(40), amounts, 0u32..2_000, kind, time).prop_map(
        |(
            trade_time,
            (appid, transaction_id, out_trade_no, openid, device_info),
            body,
            attach,
            (total, coupon, refund),
            bp,
            kind,
            applied_at,
        )| {
            BillRecord {
                trade_time,
                appid,
                mch_id: "1900000109".into(),
                device_info,
                transaction_id,
                out_trade_no,
                openid,
                trade_type: "JSAPI".into(),
                bank_type: "OTHERS".into(),
                body,
                // Only one text column may contain the ",`" separator; see `Fields::align`.
                attach: attach.replace(",`", ", `"),
                total_fee: Fen::new(total),
                coupon_fee: Fen::new(coupon),
                rate_basis_points: bp,
                kind: match kind {
                    None => BillRecordKind::Payment,
                    Some((refund_id, out_refund_no, channel, success_after)) => BillRecordKind::Refund {
                        refund_id,
                        out_refund_no,
                        refund_fee: Fen::new(refund),
                        refund_channel: channel,
                        refund_status: "SUCCESS".into(),
                        applied_at,
                        succeeded_at: success_after.map(|s| applied_at + chrono::Duration::seconds(s)),
                    },
                },
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_records_round_trip(records in prop::collection::vec(record(), 0..24), gzip in any::<bool>()) {
        for bill_type in TYPES {
            for layout in LAYOUTS {
                round_trip(&records, bill_type, layout, gzip);
            }
        }
    }
}
