//! The text of WeChat Pay bills, written from simulator records exactly as WeChat formats them:
//! header, backtick-prefixed rows, `\r\n` line ends, summary header and totals. It is the inverse of
//! [`crate::wxpay::bill`], and serves the simulator's `/pay/downloadbill` and the benchmarks.

use std::borrow::Borrow;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

use chrono::{DateTime, Datelike, Timelike, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;

pub use crate::wxpay::bill::BillLayout;
use crate::wxpay::bill::{Column, ServiceFee, SummaryColumn, header_line, summary_line};
use crate::wxpay::money::Fen;
use crate::wxpay::time;
use crate::wxpay::types::BillType;

#[cfg(test)]
mod tests;

/// One payment or refund as the simulator's ledger knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillRecord {
    /// Written into 交易时间 for both kinds of row, to the second (bills carry no fractions).
    pub trade_time: DateTime<Utc>,
    pub appid: String,
    pub mch_id: String,
    pub device_info: String,
    pub transaction_id: String,
    pub out_trade_no: String,
    pub openid: String,
    pub trade_type: String,
    pub bank_type: String,
    pub body: String,
    pub attach: String,
    /// The order amount.
    pub total_fee: Fen,
    pub coupon_fee: Fen,
    /// The merchant's fee rate: 60 is 0.60%.
    pub rate_basis_points: u32,
    pub kind: BillRecordKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BillRecordKind {
    Payment,
    Refund {
        refund_id: String,
        out_refund_no: String,
        refund_fee: Fen,
        /// 退款类型, e.g. `ORIGINAL`.
        refund_channel: String,
        /// 退款状态, e.g. `SUCCESS`.
        refund_status: String,
        applied_at: DateTime<Utc>,
        succeeded_at: Option<DateTime<Utc>>,
    },
}

/// The totals written in the summary, and the size of what was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BillTotals {
    pub rows: u64,
    pub settlement_total: Fen,
    pub refund_total: Fen,
    pub coupon_refund_total: Fen,
    pub fee_total: ServiceFee,
    pub order_total: Fen,
    pub requested_refund_total: Fen,
}

/// The fee WeChat charges on `amount` at `rate_basis_points`, rounded half up to the fen.
///
/// Whole basis points do not make fees exact in 10^-5 yuan: 1 fen at 0.60% is 0.006 fen, i.e.
/// 0.6 units. WeChat settles fees in whole fen and prints them with five decimals; the reference
/// bill shows it (0.01 yuan at 1.00% is printed `0.00000`, not `0.00010`). So the fee is rounded to
/// the fen (half away from zero, 四舍五入) and every fee we write ends in `000`. `None` on overflow.
pub fn service_fee(amount: Fen, rate_basis_points: u32) -> Option<ServiceFee> {
    let product = i128::from(amount.get().unsigned_abs()) * i128::from(rate_basis_points);
    let fen = i64::try_from((product + 5_000) / 10_000).ok()?;
    let fen = if amount.get() < 0 { -fen } else { fen };
    ServiceFee::from_fen(Fen::new(fen))
}

/// The amounts of one row, derived once and used both for the cells and for the totals.
struct RowAmounts {
    refund: bool,
    settlement: Fen,
    order: Fen,
    refund_fee: Fen,
    requested_refund: Fen,
    coupon_refund: Fen,
    fee: ServiceFee,
}

impl RowAmounts {
    fn of(record: &BillRecord, layout: BillLayout) -> Option<RowAmounts> {
        // The fee is charged on what the shopper paid in cash: the order less its coupon.
        let cash = record.total_fee.checked_sub(record.coupon_fee)?;
        Some(match &record.kind {
            BillRecordKind::Payment => RowAmounts {
                refund: false,
                // The current format settles net of coupons; the legacy 总金额 is the order amount.
                settlement: match layout {
                    BillLayout::Current => cash,
                    BillLayout::Legacy => record.total_fee,
                },
                order: record.total_fee,
                refund_fee: Fen::ZERO,
                requested_refund: Fen::ZERO,
                coupon_refund: Fen::ZERO,
                fee: service_fee(cash, record.rate_basis_points)?,
            },
            BillRecordKind::Refund { refund_fee, .. } => RowAmounts {
                refund: true,
                // A refund row carries no sales: the order was counted on its payment row.
                settlement: Fen::ZERO,
                order: Fen::ZERO,
                refund_fee: *refund_fee,
                requested_refund: *refund_fee,
                // The simulator has no recharge coupons, so nothing of a coupon is refunded.
                coupon_refund: Fen::ZERO,
                fee: ServiceFee::new(service_fee(*refund_fee, record.rate_basis_points)?.units().checked_neg()?),
            },
        })
    }
}

impl BillTotals {
    fn add(&mut self, row: &RowAmounts) -> Option<()> {
        self.rows = self.rows.checked_add(1)?;
        self.settlement_total = self.settlement_total.checked_add(row.settlement)?;
        self.refund_total = self.refund_total.checked_add(row.refund_fee)?;
        self.coupon_refund_total = self.coupon_refund_total.checked_add(row.coupon_refund)?;
        self.fee_total = self.fee_total.checked_add(row.fee)?;
        self.order_total = self.order_total.checked_add(row.order)?;
        self.requested_refund_total = self.requested_refund_total.checked_add(row.requested_refund)?;
        Some(())
    }
}

/// Whether a bill type lists a record: SUCCESS only payments, REFUND only refunds, and
/// RECHARGE_REFUND nothing (the simulator has no recharge coupons).
fn listed(bill_type: BillType, kind: &BillRecordKind) -> bool {
    match bill_type {
        BillType::All => true,
        BillType::Success => matches!(kind, BillRecordKind::Payment),
        BillType::Refund => matches!(kind, BillRecordKind::Refund { .. }),
        BillType::RechargeRefund => false,
    }
}

/// Writes a bill of `bill_type` in `layout`, streaming the records (they are never collected), and
/// returns the totals it printed in the summary.
pub fn write_bill<W, I>(out: W, bill_type: BillType, layout: BillLayout, records: I) -> io::Result<BillTotals>
where
    W: Write,
    I: IntoIterator,
    I::Item: Borrow<BillRecord>,
{
    let overflow = || io::Error::new(io::ErrorKind::InvalidData, "bill amounts overflow");
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    let header = header_line(bill_type, layout);
    let columns: Vec<Column> = header.split(',').filter_map(Column::from_header_name).collect();
    out.write_all(header.as_bytes())?;
    out.write_all(b"\r\n")?;

    let mut line = String::with_capacity(1024);
    let mut totals = BillTotals::default();
    for record in records {
        let record = record.borrow();
        if !listed(bill_type, &record.kind) {
            continue;
        }
        let amounts = RowAmounts::of(record, layout).ok_or_else(overflow)?;
        line.clear();
        for (i, column) in columns.iter().enumerate() {
            line.push_str(if i == 0 { "`" } else { ",`" });
            push_cell(&mut line, *column, record, &amounts);
        }
        line.push_str("\r\n");
        out.write_all(line.as_bytes())?;
        totals.add(&amounts).ok_or_else(overflow)?;
    }

    let summary = summary_line(layout);
    line.clear();
    line.push_str(summary);
    line.push_str("\r\n");
    for (i, column) in summary.split(',').filter_map(SummaryColumn::from_header_name).enumerate() {
        line.push_str(if i == 0 { "`" } else { ",`" });
        match column {
            SummaryColumn::TradeCount => push_display(&mut line, totals.rows),
            SummaryColumn::SettlementTotal => push_yuan(&mut line, totals.settlement_total),
            SummaryColumn::RefundTotal => push_yuan(&mut line, totals.refund_total),
            SummaryColumn::CouponRefundTotal => push_yuan(&mut line, totals.coupon_refund_total),
            SummaryColumn::FeeTotal => push_fee(&mut line, totals.fee_total),
            SummaryColumn::OrderTotal => push_yuan(&mut line, totals.order_total),
            SummaryColumn::RequestedRefundTotal => push_yuan(&mut line, totals.requested_refund_total),
        }
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes())?;
    out.flush()?;
    Ok(totals)
}

/// [`write_bill`] through GZIP, as `tar_type=GZIP` downloads are served.
pub fn write_bill_gzip<W, I>(out: W, bill_type: BillType, layout: BillLayout, records: I) -> io::Result<BillTotals>
where
    W: Write,
    I: IntoIterator,
    I::Item: Borrow<BillRecord>,
{
    let mut encoder = GzEncoder::new(out, Compression::default());
    let totals = write_bill(&mut encoder, bill_type, layout, records)?;
    encoder.finish()?;
    Ok(totals)
}

/// The refund side of a record, borrowed, for the cells that only refund rows fill.
struct RefundCells<'a> {
    refund_id: &'a str,
    out_refund_no: &'a str,
    channel: &'a str,
    status: &'a str,
    applied_at: DateTime<Utc>,
    succeeded_at: Option<DateTime<Utc>>,
}

fn refund_cells(kind: &BillRecordKind) -> Option<RefundCells<'_>> {
    match kind {
        BillRecordKind::Payment => None,
        BillRecordKind::Refund {
            refund_id,
            out_refund_no,
            refund_channel,
            refund_status,
            applied_at,
            succeeded_at,
            ..
        } => Some(RefundCells {
            refund_id,
            out_refund_no,
            channel: refund_channel,
            status: refund_status,
            applied_at: *applied_at,
            succeeded_at: *succeeded_at,
        }),
    }
}

fn push_cell(line: &mut String, column: Column, record: &BillRecord, amounts: &RowAmounts) {
    let refund = refund_cells(&record.kind);
    match column {
        Column::TradeTime => push_time(line, record.trade_time),
        Column::Appid => push_text(line, &record.appid),
        Column::MchId => push_text(line, &record.mch_id),
        // The simulator is a normal merchant; WeChat prints 0 for "no sub-merchant".
        Column::SubMchId => line.push('0'),
        Column::DeviceInfo => push_text(line, &record.device_info),
        Column::TransactionId => push_text(line, &record.transaction_id),
        Column::OutTradeNo => push_text(line, &record.out_trade_no),
        Column::Openid => push_text(line, &record.openid),
        Column::TradeType => push_text(line, &record.trade_type),
        Column::Status => line.push_str(if amounts.refund { "REFUND" } else { "SUCCESS" }),
        Column::BankType => push_text(line, &record.bank_type),
        Column::FeeType => line.push_str("CNY"),
        Column::Settlement => push_yuan(line, amounts.settlement),
        Column::Coupon => push_yuan(line, record.coupon_fee),
        Column::RefundId => push_text(line, refund.as_ref().map_or("0", |r| r.refund_id)),
        Column::OutRefundNo => push_text(line, refund.as_ref().map_or("0", |r| r.out_refund_no)),
        Column::RefundFee => push_yuan(line, amounts.refund_fee),
        Column::CouponRefund => push_yuan(line, amounts.coupon_refund),
        Column::RefundType => push_text(line, refund.as_ref().map_or("", |r| r.channel)),
        Column::RefundStatus => push_text(line, refund.as_ref().map_or("", |r| r.status)),
        Column::Body => push_text(line, &record.body),
        Column::Attach => push_text(line, &record.attach),
        Column::ServiceFee => push_fee(line, amounts.fee),
        Column::Rate => {
            let _ = write!(line, "{}.{:02}%", record.rate_basis_points / 100, record.rate_basis_points % 100);
        }
        Column::OrderFee => push_yuan(line, amounts.order),
        Column::RequestedRefund => push_yuan(line, amounts.requested_refund),
        Column::RateRemark => {}
        Column::RefundApplyTime => {
            if let Some(r) = &refund {
                push_time(line, r.applied_at);
            }
        }
        Column::RefundSuccessTime => {
            if let Some(t) = refund.as_ref().and_then(|r| r.succeeded_at) {
                push_time(line, t);
            }
        }
    }
}

/// Free text cannot span lines in a line-based file; WeChat's own bills never carry CR or LF.
fn push_text(line: &mut String, text: &str) {
    if text.contains(['\r', '\n']) {
        line.extend(text.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }));
    } else {
        line.push_str(text);
    }
}

fn push_display(line: &mut String, value: impl std::fmt::Display) {
    let _ = write!(line, "{value}");
}

/// Like `money::format_scaled_decimal`, without allocating: millions of cells go through here.
fn push_scaled(line: &mut String, value: i64, scale: u32) {
    let unit = 10u64.pow(scale);
    let magnitude = value.unsigned_abs();
    let sign = if value < 0 { "-" } else { "" };
    let _ = write!(line, "{sign}{}.{:0width$}", magnitude / unit, magnitude % unit, width = scale as usize);
}

fn push_yuan(line: &mut String, fen: Fen) {
    push_scaled(line, fen.get(), 2);
}

fn push_fee(line: &mut String, fee: ServiceFee) {
    push_scaled(line, fee.units(), ServiceFee::SCALE);
}

/// `yyyy-MM-dd HH:mm:ss` in Beijing time, as `time::format_dashed` writes it, without allocating.
fn push_time(line: &mut String, t: DateTime<Utc>) {
    let local = t.with_timezone(&time::beijing()).naive_local();
    let _ = write!(
        line,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        local.year(),
        local.month(),
        local.day(),
        local.hour(),
        local.minute(),
        local.second()
    );
}
