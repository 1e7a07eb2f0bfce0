//! The T+1 bill of `downloadbill`: a streaming parser into typed rows, with a summary cross-check.
//!
//! A bill is a CSV-like text file: a header line, one backtick-prefixed line per trade or refund, a
//! summary header and the backtick-prefixed summary values. Columns are found by header name
//! because their order differs between bill types and between the current and the legacy format
//! (WxJava#1275 broke on exactly that). [`BillReader`] reads one line at a time into reused
//! buffers, so a bill of millions of rows is parsed in constant memory.
//!
//! Every malformed input is a [`BillError`]: a bill we cannot read exactly must stop
//! reconciliation, never be guessed at, and never panic the process that reads it.

mod layout;
mod reader;
mod row;
#[cfg(test)]
mod tests;

use std::fmt;

use chrono::{DateTime, Utc};
use thiserror::Error;

use super::money::{AmountError, Fen, format_scaled_decimal, parse_scaled_decimal};

pub use layout::{
    BillLayout, CURRENT_ALL, CURRENT_REFUND, CURRENT_SUCCESS, CURRENT_SUMMARY, Column, LEGACY_ALL, LEGACY_REFUND,
    LEGACY_SUCCESS, LEGACY_SUMMARY, REQUIRED_COLUMNS, REQUIRED_SUMMARY_COLUMNS, SUMMARY_MARKER, SummaryColumn,
    header_line, summary_line,
};
pub use reader::{BillReader, BillSource, MAX_LINE_BYTES, OpenedBill};

/// A service fee (手续费) in units of 10^-5 yuan: bills print fees with five decimals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceFee(i64);

impl ServiceFee {
    pub const ZERO: ServiceFee = ServiceFee(0);
    /// Decimal places of a fee as printed in bills.
    pub const SCALE: u32 = 5;
    /// Fee units in one fen.
    pub const UNITS_PER_FEN: i64 = 1000;

    pub const fn new(units: i64) -> ServiceFee {
        ServiceFee(units)
    }

    pub const fn units(self) -> i64 {
        self.0
    }

    /// A whole number of fen as a fee; `None` on overflow.
    pub fn from_fen(fen: Fen) -> Option<ServiceFee> {
        fen.get().checked_mul(Self::UNITS_PER_FEN).map(ServiceFee)
    }

    pub fn checked_add(self, other: ServiceFee) -> Option<ServiceFee> {
        self.0.checked_add(other.0).map(ServiceFee)
    }

    /// Parses a fee such as `0.32000` or `-0.00600` exactly.
    pub fn parse(s: &str) -> Result<ServiceFee, AmountError> {
        parse_scaled_decimal(s, Self::SCALE).map(ServiceFee)
    }
}

impl fmt::Display for ServiceFee {
    /// The bill form: yuan with five decimals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_scaled_decimal(self.0, Self::SCALE))
    }
}

/// 交易状态 of a bill row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BillStatus {
    Success,
    /// A refund row (the refund columns are filled).
    Refund,
    Revoked,
    /// Anything else, kept verbatim so reconciliation can report it.
    Other(String),
}

impl BillStatus {
    pub fn parse(s: &str) -> BillStatus {
        match s {
            "SUCCESS" => BillStatus::Success,
            "REFUND" => BillStatus::Refund,
            "REVOKED" => BillStatus::Revoked,
            other => BillStatus::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            BillStatus::Success => "SUCCESS",
            BillStatus::Refund => "REFUND",
            BillStatus::Revoked => "REVOKED",
            BillStatus::Other(s) => s,
        }
    }
}

/// One data row. Columns the bill's layout does not have hold their neutral value (zero, `None`,
/// empty string), so code reading a legacy SUCCESS bill and a current ALL bill is the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillRow {
    pub trade_time: DateTime<Utc>,
    pub appid: String,
    pub mch_id: String,
    /// `0` for a normal (non-service-provider) merchant, as WeChat prints it.
    pub sub_mch_id: String,
    pub device_info: String,
    pub transaction_id: String,
    pub out_trade_no: String,
    pub openid: String,
    pub trade_type: String,
    pub status: BillStatus,
    pub bank_type: String,
    pub fee_type: String,
    /// 应结订单金额 (legacy: 总金额); `0.00` on refund rows.
    pub settlement_fee: Fen,
    pub coupon_fee: Fen,
    /// `None` for the `0` placeholder of payment rows.
    pub refund_id: Option<String>,
    /// `None` for the `0` placeholder of payment rows.
    pub out_refund_no: Option<String>,
    pub refund_fee: Fen,
    pub coupon_refund_fee: Fen,
    pub refund_type: String,
    pub refund_status: String,
    pub body: String,
    pub attach: String,
    /// Negative on refund rows.
    pub service_fee: ServiceFee,
    /// As printed, e.g. `0.60%`.
    pub rate: String,
    /// 订单金额; absent in the legacy format.
    pub order_fee: Option<Fen>,
    /// 申请退款金额; absent in the legacy format and in SUCCESS bills.
    pub requested_refund_fee: Option<Fen>,
    /// 费率备注; `None` when absent or empty.
    pub rate_remark: Option<String>,
    /// 退款申请时间 (REFUND bills only); `None` when absent or empty.
    pub refund_apply_time: Option<DateTime<Utc>>,
    /// 退款成功时间 (REFUND bills only); `None` when absent or empty (refund not yet successful).
    pub refund_success_time: Option<DateTime<Utc>>,
}

/// The summary lines, as WeChat printed them. Totals a layout does not print are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillSummary {
    /// 总交易单数: the number of data rows.
    pub trade_count: u64,
    /// 应结订单总金额 (legacy: 总交易额).
    pub settlement_total: Fen,
    /// 退款总金额 (legacy: 总退款金额).
    pub refund_total: Option<Fen>,
    /// 充值券退款总金额 (legacy: 总代金券或立减优惠退款金额).
    pub coupon_refund_total: Option<Fen>,
    /// 手续费总金额.
    pub fee_total: ServiceFee,
    /// 订单总金额 (current format only).
    pub order_total: Option<Fen>,
    /// 申请退款总金额 (current format only).
    pub requested_refund_total: Option<Fen>,
}

/// Why a bill was refused. Line numbers are 1-based physical lines of the (decompressed) text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BillError {
    /// Zero bytes: a broken download. "No Bill Exist" is an XML reply, handled by `download_bill`.
    #[error("the bill is empty (0 bytes)")]
    EmptyBody,
    #[error("the bill has no header line")]
    NoHeader,
    #[error("reading line {line} of the bill failed: {message}")]
    Io { line: u64, kind: std::io::ErrorKind, message: String },
    #[error("line {line} is not valid UTF-8")]
    NotUtf8 { line: u64 },
    #[error("line {line} is longer than {limit} bytes")]
    LineTooLong { line: u64, limit: usize },
    #[error("the header has no {column} column")]
    MissingColumn { column: &'static str },
    #[error("line {line} names column {column} more than once")]
    DuplicateColumn { line: u64, column: String },
    #[error("line {line} does not start with the backtick every bill field carries")]
    MissingBacktick { line: u64 },
    #[error("line {line} has {found} fields where the header has {expected}")]
    TooFewFields { line: u64, expected: usize, found: usize },
    #[error("line {line} has {found} fields where the header has {expected}, and no text column to absorb them")]
    TooManyFields { line: u64, expected: usize, found: usize },
    #[error("line {line}, column {column}: {value:?} is not an exact amount")]
    BadAmount { line: u64, column: &'static str, value: String },
    #[error("line {line}, column {column}: {value:?} is not a yyyy-MM-dd HH:mm:ss time")]
    BadTime { line: u64, column: &'static str, value: String },
    #[error("line {line}: the total of {column} overflows")]
    Overflow { line: u64, column: &'static str },
    #[error("the bill ends without its summary lines (truncated?)")]
    MissingSummary,
    #[error("the summary header on line {line} is not followed by the summary values")]
    MissingSummaryValues { line: u64 },
    #[error("the summary has no {column} column")]
    MissingSummaryColumn { column: &'static str },
    #[error("line {line} has {found} summary values for {expected} summary columns")]
    SummaryFieldCount { line: u64, expected: usize, found: usize },
    #[error("line {line} follows the summary; a bill ends with its summary")]
    TrailingData { line: u64 },
    #[error("the summary says {what} is {summary}, but the rows add up to {rows}")]
    SummaryMismatch { what: &'static str, summary: String, rows: String },
}

impl BillError {
    /// The line the error was found on, when it concerns one line.
    pub fn line(&self) -> Option<u64> {
        match self {
            BillError::Io { line, .. }
            | BillError::NotUtf8 { line }
            | BillError::LineTooLong { line, .. }
            | BillError::DuplicateColumn { line, .. }
            | BillError::MissingBacktick { line }
            | BillError::TooFewFields { line, .. }
            | BillError::TooManyFields { line, .. }
            | BillError::BadAmount { line, .. }
            | BillError::BadTime { line, .. }
            | BillError::Overflow { line, .. }
            | BillError::MissingSummaryValues { line }
            | BillError::SummaryFieldCount { line, .. }
            | BillError::TrailingData { line } => Some(*line),
            BillError::EmptyBody
            | BillError::NoHeader
            | BillError::MissingColumn { .. }
            | BillError::MissingSummary
            | BillError::MissingSummaryColumn { .. }
            | BillError::SummaryMismatch { .. } => None,
        }
    }
}
