//! `/pay/downloadbill`: date and type rules, "Bill Creating" before 10:00 Beijing of the next
//! day, "No Bill Exist" for days without rows, and the bill itself written by
//! [`crate::simulator::bill_text`] from the simulator's own records, streamed (text or GZIP).
//!
//! Its errors are unsigned XML with `return_msg` and `error_code` (not `err_code`).

use std::io::{self, Write};

use chrono::{DateTime, Months, NaiveDate, Timelike, Utc};
use tokio::sync::mpsc;

use super::envelope::ApiRequest;
use crate::simulator::Simulator;
use crate::simulator::bill_text::{self, BillLayout, BillRecord, BillRecordKind};
use crate::simulator::model::{OrderState, SimOrder};
use crate::simulator::sim::clock;
use crate::wxpay::money::Fen;
use crate::wxpay::time;
use crate::wxpay::types::BillType;
use crate::wxpay::xml;

/// The simulated merchant's fee rate: 0.60%.
const RATE_BASIS_POINTS: u32 = 60;

/// What a downloadbill call answers.
pub(crate) enum BillAnswer {
    /// An unsigned XML error document.
    Error(String),
    Bill {
        gzip: bool,
        bill_type: BillType,
        records: Vec<BillRecord>,
    },
}

pub(crate) fn error_doc(return_msg: &str, error_code: &str) -> String {
    xml::write_document("xml", [("return_code", "FAIL"), ("return_msg", return_msg), ("error_code", error_code)])
}

/// Checks bill_date against the simulated clock: a past Beijing day within three months, and
/// yesterday only from `ready_hour` (10:00 at WeChat) Beijing.
pub(crate) fn check_date(
    raw: Option<&str>,
    now: DateTime<Utc>,
    ready_hour: u32,
) -> Result<NaiveDate, (&'static str, &'static str)> {
    let date = raw.and_then(|r| time::parse_bill_date(r).ok()).ok_or(("invalid bill_date", "20001"))?;
    check_day(date, now, ready_hour)
}

/// [`check_date`] for a date already read (v3 writes it `YYYY-MM-DD`).
pub(crate) fn check_day(
    date: NaiveDate,
    now: DateTime<Utc>,
    ready_hour: u32,
) -> Result<NaiveDate, (&'static str, &'static str)> {
    let invalid = ("invalid bill_date", "20001");
    let local = now.with_timezone(&time::beijing());
    let today = local.date_naive();
    let oldest = today.checked_sub_months(Months::new(3)).ok_or(invalid)?;
    if date >= today || date < oldest {
        return Err(invalid);
    }
    if date.succ_opt() == Some(today) && local.hour() < ready_hour {
        return Err(("Bill Creating", "20002"));
    }
    Ok(date)
}

fn base_record(order: &SimOrder) -> BillRecord {
    BillRecord {
        trade_time: order.time_end.unwrap_or(order.created_at),
        appid: order.appid.clone(),
        mch_id: order.mch_id.clone(),
        device_info: order.device_info.clone().unwrap_or_default(),
        transaction_id: order.transaction_id.clone().unwrap_or_default(),
        out_trade_no: order.out_trade_no.clone(),
        openid: order.openid.clone().unwrap_or_default(),
        trade_type: order.trade_type.clone(),
        bank_type: order.bank_type.clone().unwrap_or_else(|| "OTHERS".into()),
        body: order.body.clone(),
        attach: order.attach.clone().unwrap_or_default(),
        total_fee: order.total_fee,
        coupon_fee: Fen::ZERO,
        rate_basis_points: RATE_BASIS_POINTS,
        kind: BillRecordKind::Payment,
    }
}

/// The day's rows of one merchant: payments by time_end, refunds by application time (their
/// 交易时间 stays the original payment time), in the order they happened.
pub(crate) fn records_for<'a>(
    orders: impl Iterator<Item = &'a SimOrder>,
    mch_id: &str,
    date: NaiveDate,
    device_info: Option<&str>,
) -> Vec<BillRecord> {
    let mut rows: Vec<(DateTime<Utc>, BillRecord)> = Vec::new();
    for order in orders {
        if order.mch_id != mch_id
            || order.state != OrderState::Success
            || device_info.is_some_and(|d| order.device_info.as_deref() != Some(d))
        {
            continue;
        }
        let Some(paid) = order.time_end else { continue };
        if time::beijing_date(paid) == date {
            rows.push((paid, base_record(order)));
        }
        for r in order.refunds.iter().filter(|r| time::beijing_date(r.created_at) == date) {
            let kind = BillRecordKind::Refund {
                refund_id: r.refund_id.clone(),
                out_refund_no: r.out_refund_no.clone(),
                refund_fee: r.refund_fee,
                refund_channel: "ORIGINAL".into(),
                refund_status: r.status.as_str().into(),
                applied_at: r.created_at,
                succeeded_at: r.success_time,
            };
            rows.push((r.created_at, BillRecord { kind, ..base_record(order) }));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.out_trade_no.cmp(&b.1.out_trade_no)));
    rows.into_iter().map(|(_, r)| r).collect()
}

/// The rows a bill of `bill_type` lists for one merchant's day (none: there is no bill).
pub(crate) fn day_bill<'a>(
    orders: impl Iterator<Item = &'a SimOrder>,
    mch_id: &str,
    date: NaiveDate,
    bill_type: BillType,
    device_info: Option<&str>,
) -> Vec<BillRecord> {
    records_for(orders, mch_id, date, device_info)
        .into_iter()
        .filter(|r| match bill_type {
            BillType::All => true,
            BillType::Success => matches!(r.kind, BillRecordKind::Payment),
            BillType::Refund => matches!(r.kind, BillRecordKind::Refund { .. }),
            BillType::RechargeRefund => false,
        })
        .collect()
}

pub(crate) fn download_bill(sim: &Simulator, req: &ApiRequest) -> BillAnswer {
    let (bill_creating, ready_hour) = (sim.faults().bill_creating, sim.config().bill_ready_hour);
    sim.read(|state| {
        let now = clock(state.clock_offset_ms);
        let date = match check_date(req.get("bill_date"), now, ready_hour) {
            Err((msg, code)) if code == "20001" => return BillAnswer::Error(error_doc(msg, code)),
            other => other,
        };
        if let Some(e) = type_errors(req) {
            return e;
        }
        let date = match date {
            Ok(d) if !bill_creating => d,
            _ => return BillAnswer::Error(error_doc("Bill Creating", "20002")),
        };
        let bill_type = req.get("bill_type").and_then(BillType::parse).unwrap_or(BillType::All);
        let gzip = req.get("tar_type") == Some("GZIP");
        let records = day_bill(state.orders.values(), &req.merchant.mch_id, date, bill_type, req.get("device_info"));
        if records.is_empty() {
            return BillAnswer::Error(error_doc("No Bill Exist", "20002"));
        }
        BillAnswer::Bill { gzip, bill_type, records }
    })
}

fn type_errors(req: &ApiRequest) -> Option<BillAnswer> {
    if req.get("bill_type").is_some_and(|t| BillType::parse(t).is_none()) {
        return Some(BillAnswer::Error(error_doc("invalid bill_type", "20001")));
    }
    if req.get("tar_type").is_some_and(|t| t != "GZIP") {
        return Some(BillAnswer::Error(error_doc("invalid tar_type", "20001")));
    }
    None
}

/// A `Write` that hands chunks to an async receiver (the HTTP response body).
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 32 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            self.tx.blocking_send(chunk).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))?;
        }
        Ok(())
    }
}

/// Writes the bill on a blocking thread and returns the receiving end of its bytes.
pub(crate) fn stream_bill(gzip: bool, bill_type: BillType, records: Vec<BillRecord>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter { tx, buf: Vec::with_capacity(32 * 1024) };
        let written = if gzip {
            bill_text::write_bill_gzip(&mut writer, bill_type, BillLayout::Current, &records)
        } else {
            bill_text::write_bill(&mut writer, bill_type, BillLayout::Current, &records)
        };
        if let Err(e) = written.and_then(|_| writer.flush()) {
            tracing::debug!(error = %e, "simulator: bill stream ended early");
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        // Beijing wall clock → UTC.
        time::beijing().with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn bill_dates() {
        let now = at(2024, 5, 10, 11);
        assert_eq!(check_date(Some("20240509"), now, 10), Ok(NaiveDate::from_ymd_opt(2024, 5, 9).unwrap()));
        assert_eq!(check_date(Some("20240509"), at(2024, 5, 10, 9), 10), Err(("Bill Creating", "20002")));
        assert!(check_date(Some("20240508"), at(2024, 5, 10, 9), 10).is_ok());
        for bad in [None, Some("2024059"), Some("20241301"), Some("20240510"), Some("20240601"), Some("20240201")] {
            assert_eq!(check_date(bad, now, 10), Err(("invalid bill_date", "20001")), "{bad:?}");
        }
        assert!(check_date(Some("20240211"), now, 10).is_ok());
    }
}
