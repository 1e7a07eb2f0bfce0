//! One line of a bill: header names to column positions, field splitting, typed rows and summary
//! values, and the running totals the summary is checked against.

use chrono::{DateTime, Utc};

use super::layout::{Column, REQUIRED_COLUMNS, REQUIRED_SUMMARY_COLUMNS, SummaryColumn};
use super::{BillError, BillRow, BillStatus, BillSummary, ServiceFee};
use crate::wxpay::money::Fen;
use crate::wxpay::time;

/// Splits a header line into trimmed names. Copies of the documentation use full-width commas.
pub(super) fn header_names(line: &str) -> Vec<String> {
    line.replace('，', ",").split(',').map(|name| name.trim().to_owned()).collect()
}

/// Where each known column sits in the header; unknown columns are ignored.
#[derive(Clone, Debug)]
pub(super) struct ColumnMap {
    positions: [Option<usize>; Column::COUNT],
    width: usize,
}

impl ColumnMap {
    pub(super) fn new(names: &[String], line: u64) -> Result<ColumnMap, BillError> {
        let mut positions = [None; Column::COUNT];
        for (i, name) in names.iter().enumerate() {
            if let Some(column) = Column::from_header_name(name) {
                // Two names for one field (say 应结订单金额 and 总金额) would make amounts ambiguous.
                let slot = &mut positions[column.index()];
                if slot.is_some() {
                    return Err(BillError::DuplicateColumn { line, column: name.clone() });
                }
                *slot = Some(i);
            }
        }
        if let Some(missing) = REQUIRED_COLUMNS.iter().find(|c| positions[c.index()].is_none()) {
            return Err(BillError::MissingColumn { column: missing.display_name() });
        }
        Ok(ColumnMap { positions, width: names.len() })
    }

    pub(super) fn position(&self, column: Column) -> Option<usize> {
        self.positions[column.index()]
    }

    pub(super) fn width(&self) -> usize {
        self.width
    }
}

/// Where each summary column sits in the summary header.
#[derive(Clone, Debug)]
pub(super) struct SummaryMap {
    positions: [Option<usize>; SummaryColumn::COUNT],
    width: usize,
}

impl SummaryMap {
    pub(super) fn new(names: &[String], line: u64) -> Result<SummaryMap, BillError> {
        let mut positions = [None; SummaryColumn::COUNT];
        for (i, name) in names.iter().enumerate() {
            if let Some(column) = SummaryColumn::from_header_name(name) {
                let slot = &mut positions[column.index()];
                if slot.is_some() {
                    return Err(BillError::DuplicateColumn { line, column: name.clone() });
                }
                *slot = Some(i);
            }
        }
        if let Some(missing) = REQUIRED_SUMMARY_COLUMNS.iter().find(|c| positions[c.index()].is_none()) {
            return Err(BillError::MissingSummaryColumn { column: missing.display_name() });
        }
        Ok(SummaryMap { positions, width: names.len() })
    }
}

/// The fields of one backtick-prefixed line, as byte ranges of the line without its first backtick.
pub(super) struct Fields<'a> {
    text: &'a str,
    spans: &'a [(usize, usize)],
    /// Pieces beyond the header's width, all given to the `absorb` column.
    extra: usize,
    absorb: usize,
}

/// Splits on "comma followed by backtick", the only separator a bill field cannot be confused
/// with unless the text itself contains it. `spans` is the caller's buffer, reused line to line.
pub(super) fn split<'a>(line: &'a str, line_no: u64, spans: &mut Vec<(usize, usize)>) -> Result<&'a str, BillError> {
    let text = line.strip_prefix('`').ok_or(BillError::MissingBacktick { line: line_no })?;
    spans.clear();
    let mut start = 0;
    for (at, _) in text.match_indices(",`") {
        spans.push((start, at));
        start = at + 2;
    }
    spans.push((start, text.len()));
    Ok(text)
}

impl<'a> Fields<'a> {
    /// Aligns the split pieces with a header of `map.width()` columns.
    ///
    /// Only 商品名称 (body) and 商户数据包 (attach) are merchant text, so only they can contain the
    /// separator ",`" and split into extra pieces. WeChat does not escape it. We align the columns
    /// before body from the left and every column after body (attach included) from the right,
    /// and body takes the extra pieces in the middle, separators and all. In the standard layouts
    /// attach directly follows body, so this is "left of body from the left, right of attach from
    /// the right, the middle to body". When attach is the one containing ",`", the text cannot tell
    /// and body gets attach's head: an ambiguity of the format, not of this parser. A header
    /// without body falls back to attach as the absorbing column.
    pub(super) fn align(
        text: &'a str,
        spans: &'a [(usize, usize)],
        map: &ColumnMap,
        line: u64,
    ) -> Result<Fields<'a>, BillError> {
        let expected = map.width();
        let found = spans.len();
        if found < expected {
            return Err(BillError::TooFewFields { line, expected, found });
        }
        let extra = found - expected;
        let absorb = match map.position(Column::Body).or(map.position(Column::Attach)) {
            Some(position) => position,
            None if extra == 0 => 0,
            None => return Err(BillError::TooManyFields { line, expected, found }),
        };
        Ok(Fields { text, spans, extra, absorb })
    }

    /// The pieces as they are, for the summary line (which has no free text).
    pub(super) fn plain(text: &'a str, spans: &'a [(usize, usize)]) -> Fields<'a> {
        Fields { text, spans, extra: 0, absorb: 0 }
    }

    pub(super) fn count(&self) -> usize {
        self.spans.len()
    }

    /// The text of header column `index`.
    pub(super) fn get(&self, index: usize) -> &'a str {
        let range = if self.extra == 0 || index < self.absorb {
            self.spans.get(index).copied()
        } else if index == self.absorb {
            match (self.spans.get(index), self.spans.get(index + self.extra)) {
                (Some(first), Some(last)) => Some((first.0, last.1)),
                _ => None,
            }
        } else {
            self.spans.get(index + self.extra).copied()
        };
        range.and_then(|(start, end)| self.text.get(start..end)).unwrap_or("")
    }
}

/// Reads typed values out of one aligned row.
struct RowView<'a, 'f> {
    fields: &'f Fields<'a>,
    map: &'f ColumnMap,
    line: u64,
}

impl<'a> RowView<'a, '_> {
    fn raw(&self, column: Column) -> Option<&'a str> {
        self.map.position(column).map(|i| self.fields.get(i))
    }

    fn text(&self, column: Column) -> String {
        self.raw(column).unwrap_or("").to_owned()
    }

    /// `None` for an absent column, the `0` placeholder and an empty field.
    fn optional_id(&self, column: Column) -> Option<String> {
        self.raw(column).filter(|v| !v.is_empty() && *v != "0").map(str::to_owned)
    }

    fn optional_text(&self, column: Column) -> Option<String> {
        self.raw(column).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    fn amount(&self, column: Column) -> Result<Option<Fen>, BillError> {
        self.raw(column)
            .map(|v| {
                Fen::parse_yuan(v).map_err(|_| BillError::BadAmount {
                    line: self.line,
                    column: column.display_name(),
                    value: v.to_owned(),
                })
            })
            .transpose()
    }

    fn time(&self, column: Column) -> Result<Option<DateTime<Utc>>, BillError> {
        match self.raw(column) {
            None | Some("") => Ok(None),
            Some(v) => time::parse_dashed(v).map(Some).map_err(|_| BillError::BadTime {
                line: self.line,
                column: column.display_name(),
                value: v.to_owned(),
            }),
        }
    }
}

pub(super) fn parse_row(fields: &Fields<'_>, map: &ColumnMap, line: u64) -> Result<BillRow, BillError> {
    let v = RowView { fields, map, line };
    let trade_time = v.time(Column::TradeTime)?.ok_or_else(|| BillError::BadTime {
        line,
        column: Column::TradeTime.display_name(),
        value: String::new(),
    })?;
    let service_fee = match v.raw(Column::ServiceFee) {
        Some(raw) => ServiceFee::parse(raw).map_err(|_| BillError::BadAmount {
            line,
            column: Column::ServiceFee.display_name(),
            value: raw.to_owned(),
        })?,
        None => ServiceFee::ZERO,
    };
    Ok(BillRow {
        trade_time,
        appid: v.text(Column::Appid),
        mch_id: v.text(Column::MchId),
        sub_mch_id: v.text(Column::SubMchId),
        device_info: v.text(Column::DeviceInfo),
        transaction_id: v.text(Column::TransactionId),
        out_trade_no: v.text(Column::OutTradeNo),
        openid: v.text(Column::Openid),
        trade_type: v.text(Column::TradeType),
        status: BillStatus::parse(v.raw(Column::Status).unwrap_or("")),
        bank_type: v.text(Column::BankType),
        fee_type: v.text(Column::FeeType),
        settlement_fee: v.amount(Column::Settlement)?.unwrap_or(Fen::ZERO),
        coupon_fee: v.amount(Column::Coupon)?.unwrap_or(Fen::ZERO),
        refund_id: v.optional_id(Column::RefundId),
        out_refund_no: v.optional_id(Column::OutRefundNo),
        refund_fee: v.amount(Column::RefundFee)?.unwrap_or(Fen::ZERO),
        coupon_refund_fee: v.amount(Column::CouponRefund)?.unwrap_or(Fen::ZERO),
        refund_type: v.text(Column::RefundType),
        refund_status: v.text(Column::RefundStatus),
        body: v.text(Column::Body),
        attach: v.text(Column::Attach),
        service_fee,
        rate: v.text(Column::Rate),
        order_fee: v.amount(Column::OrderFee)?,
        requested_refund_fee: v.amount(Column::RequestedRefund)?,
        rate_remark: v.optional_text(Column::RateRemark),
        refund_apply_time: v.time(Column::RefundApplyTime)?,
        refund_success_time: v.time(Column::RefundSuccessTime)?,
    })
}

/// Parses the summary values line against its header.
pub(super) fn parse_summary(fields: &Fields<'_>, map: &SummaryMap, line: u64) -> Result<BillSummary, BillError> {
    if fields.count() != map.width {
        return Err(BillError::SummaryFieldCount { line, expected: map.width, found: fields.count() });
    }
    let raw = |c: SummaryColumn| map.positions[c.index()].map(|i| fields.get(i));
    let bad = |c: SummaryColumn, v: &str| BillError::BadAmount { line, column: c.display_name(), value: v.to_owned() };
    let amount = |c: SummaryColumn| -> Result<Option<Fen>, BillError> {
        raw(c).map(|v| Fen::parse_yuan(v).map_err(|_| bad(c, v))).transpose()
    };
    let count_raw = raw(SummaryColumn::TradeCount).unwrap_or("");
    let trade_count = if !count_raw.is_empty() && count_raw.bytes().all(|b| b.is_ascii_digit()) {
        count_raw.parse::<u64>().map_err(|_| bad(SummaryColumn::TradeCount, count_raw))?
    } else {
        return Err(bad(SummaryColumn::TradeCount, count_raw));
    };
    let fee_raw = raw(SummaryColumn::FeeTotal).unwrap_or("");
    Ok(BillSummary {
        trade_count,
        settlement_total: amount(SummaryColumn::SettlementTotal)?.unwrap_or(Fen::ZERO),
        refund_total: amount(SummaryColumn::RefundTotal)?,
        coupon_refund_total: amount(SummaryColumn::CouponRefundTotal)?,
        fee_total: ServiceFee::parse(fee_raw).map_err(|_| bad(SummaryColumn::FeeTotal, fee_raw))?,
        order_total: amount(SummaryColumn::OrderTotal)?,
        requested_refund_total: amount(SummaryColumn::RequestedRefundTotal)?,
    })
}

/// Column sums of the rows streamed so far. Absent columns count as zero, so a SUCCESS bill's
/// refund totals are checked to be zero too.
#[derive(Clone, Debug, Default)]
pub(super) struct Totals {
    pub(super) rows: u64,
    settlement: Fen,
    refund: Fen,
    coupon_refund: Fen,
    fee: ServiceFee,
    order: Fen,
    requested_refund: Fen,
}

impl Totals {
    pub(super) fn add(&mut self, row: &BillRow, line: u64) -> Result<(), BillError> {
        let overflow = |c: Column| BillError::Overflow { line, column: c.display_name() };
        let add = |total: Fen, value: Fen, c: Column| total.checked_add(value).ok_or_else(|| overflow(c));
        self.settlement = add(self.settlement, row.settlement_fee, Column::Settlement)?;
        self.refund = add(self.refund, row.refund_fee, Column::RefundFee)?;
        self.coupon_refund = add(self.coupon_refund, row.coupon_refund_fee, Column::CouponRefund)?;
        self.order = add(self.order, row.order_fee.unwrap_or(Fen::ZERO), Column::OrderFee)?;
        self.requested_refund =
            add(self.requested_refund, row.requested_refund_fee.unwrap_or(Fen::ZERO), Column::RequestedRefund)?;
        self.fee = self.fee.checked_add(row.service_fee).ok_or_else(|| overflow(Column::ServiceFee))?;
        self.rows = self.rows.checked_add(1).ok_or_else(|| overflow(Column::TradeTime))?;
        Ok(())
    }

    /// Compares every total the summary prints with the rows' sums.
    pub(super) fn check(&self, summary: &BillSummary) -> Result<(), BillError> {
        let mismatch =
            |what: &'static str, summary: String, rows: String| Err(BillError::SummaryMismatch { what, summary, rows });
        if summary.trade_count != self.rows {
            return mismatch("总交易单数", summary.trade_count.to_string(), self.rows.to_string());
        }
        let amounts = [
            (SummaryColumn::SettlementTotal, Some(summary.settlement_total), self.settlement),
            (SummaryColumn::RefundTotal, summary.refund_total, self.refund),
            (SummaryColumn::CouponRefundTotal, summary.coupon_refund_total, self.coupon_refund),
            (SummaryColumn::OrderTotal, summary.order_total, self.order),
            (SummaryColumn::RequestedRefundTotal, summary.requested_refund_total, self.requested_refund),
        ];
        for (column, printed, rows) in amounts {
            if let Some(printed) = printed
                && printed != rows
            {
                return mismatch(column.display_name(), printed.to_yuan_string(), rows.to_yuan_string());
            }
        }
        if summary.fee_total != self.fee {
            return mismatch(
                SummaryColumn::FeeTotal.display_name(),
                summary.fee_total.to_string(),
                self.fee.to_string(),
            );
        }
        Ok(())
    }
}
