//! `POST /secapi/pay/refund` (mutual TLS) and `POST /pay/refundquery` with its `_$n` fields.

use chrono::{DateTime, Utc};

use super::error::WxError;
use super::money::Fen;
use super::order_query::validate_order_ref;
use super::reply::{opt_fen, opt_str, req_fen, req_str};
use super::time;
use super::types::{OrderRef, RefundStatus, is_valid_merchant_no};
use super::unified_order::validate_notify_url;
use super::xml::Fields;

pub const REFUND_PATH: &str = "/secapi/pay/refund";
/// The sandbox serves refunds without the `secapi` prefix.
pub const SANDBOX_REFUND_PATH: &str = "/pay/refund";
pub const REFUND_QUERY_PATH: &str = "/pay/refundquery";

/// A refund request. `out_refund_no` must stay the same across retries: WeChat refunds a given
/// number once, which is what makes a retried refund safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    pub order: OrderRef,
    pub out_refund_no: String,
    /// The original order total.
    pub total_fee: Fen,
    pub refund_fee: Fen,
    pub refund_desc: Option<String>,
    pub refund_account: Option<String>,
    pub notify_url: Option<String>,
}

impl Refund {
    pub fn validate(&self) -> Result<(), WxError> {
        validate_order_ref(&self.order)?;
        let bad = |m: String| Err(WxError::InvalidRequest(m));
        if !is_valid_merchant_no(&self.out_refund_no, 64) {
            return bad(format!("out_refund_no {:?} must be 1 to 64 letters, digits or _-|*@", self.out_refund_no));
        }
        if !self.total_fee.is_positive() || !self.refund_fee.is_positive() {
            return bad("total_fee and refund_fee must be positive".into());
        }
        if self.refund_fee > self.total_fee {
            return bad(format!("refund_fee {} exceeds the order total {}", self.refund_fee, self.total_fee));
        }
        if self.refund_desc.as_deref().is_some_and(|d| d.len() > 80) {
            return bad("refund_desc must be at most 80 bytes".into());
        }
        if let Some(url) = &self.notify_url {
            validate_notify_url(url)?;
        }
        Ok(())
    }

    pub fn business_fields(&self) -> Vec<(&'static str, String)> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            self.order.field(),
            ("out_refund_no", self.out_refund_no.clone()),
            ("total_fee", self.total_fee.to_string()),
            ("refund_fee", self.refund_fee.to_string()),
            ("refund_desc", opt(&self.refund_desc)),
            ("refund_account", opt(&self.refund_account)),
            ("notify_url", opt(&self.notify_url)),
        ]
    }
}

/// WeChat accepted the refund. The outcome comes later, from refundquery or the refund notify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundReply {
    pub transaction_id: String,
    pub out_trade_no: String,
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_fee: Fen,
    pub total_fee: Fen,
    pub cash_fee: Option<Fen>,
    pub cash_refund_fee: Option<Fen>,
    pub raw: Fields,
}

impl RefundReply {
    pub fn from_fields(raw: Fields) -> Result<Self, WxError> {
        Ok(RefundReply {
            transaction_id: req_str(&raw, "transaction_id")?,
            out_trade_no: req_str(&raw, "out_trade_no")?,
            out_refund_no: req_str(&raw, "out_refund_no")?,
            refund_id: req_str(&raw, "refund_id")?,
            refund_fee: req_fen(&raw, "refund_fee")?,
            total_fee: req_fen(&raw, "total_fee")?,
            cash_fee: opt_fen(&raw, "cash_fee")?,
            cash_refund_fee: opt_fen(&raw, "cash_refund_fee")?,
            raw,
        })
    }
}

/// What to look refunds up by, in WeChat's priority order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundRef {
    RefundId(String),
    OutRefundNo(String),
    TransactionId(String),
    OutTradeNo(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundQuery {
    pub by: RefundRef,
    /// Paging when an order has more than 10 refunds.
    pub offset: Option<u32>,
}

impl RefundQuery {
    pub fn validate(&self) -> Result<(), WxError> {
        let (name, value) = self.key();
        if value.is_empty() || value.len() > 64 {
            return Err(WxError::InvalidRequest(format!("{name} {value:?} is not valid")));
        }
        Ok(())
    }

    fn key(&self) -> (&'static str, &str) {
        match &self.by {
            RefundRef::RefundId(v) => ("refund_id", v),
            RefundRef::OutRefundNo(v) => ("out_refund_no", v),
            RefundRef::TransactionId(v) => ("transaction_id", v),
            RefundRef::OutTradeNo(v) => ("out_trade_no", v),
        }
    }

    pub fn business_fields(&self) -> Vec<(&'static str, String)> {
        let (name, value) = self.key();
        vec![(name, value.to_owned()), ("offset", self.offset.map(|o| o.to_string()).unwrap_or_default())]
    }
}

/// One refund of an order, read from the `_$n` fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRecord {
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_channel: Option<String>,
    pub refund_fee: Fen,
    pub settlement_refund_fee: Option<Fen>,
    pub status: RefundStatus,
    pub refund_account: Option<String>,
    pub recv_account: Option<String>,
    pub success_time: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundQueryReply {
    pub transaction_id: String,
    pub out_trade_no: String,
    pub total_fee: Fen,
    pub cash_fee: Option<Fen>,
    pub total_refund_count: Option<u32>,
    pub refunds: Vec<RefundRecord>,
    pub raw: Fields,
}

impl RefundQueryReply {
    pub fn from_fields(raw: Fields) -> Result<Self, WxError> {
        let count_raw = req_str(&raw, "refund_count")?;
        let count: usize = count_raw
            .parse()
            .ok()
            .filter(|n| *n <= 50)
            .ok_or_else(|| WxError::bad_field("refund_count", format!("not a count: {count_raw:?}")))?;
        let mut refunds = Vec::with_capacity(count);
        for n in 0..count {
            let key = |name: &str| format!("{name}_{n}");
            let status_raw = req_str(&raw, &key("refund_status"))?;
            let status = RefundStatus::parse(&status_raw)
                .ok_or_else(|| WxError::bad_field(&key("refund_status"), format!("unknown value {status_raw:?}")))?;
            let success_time = match opt_str(&raw, &key("refund_success_time")) {
                None => None,
                Some(t) => Some(
                    time::parse_dashed(&t)
                        .map_err(|e| WxError::bad_field(&key("refund_success_time"), e.to_string()))?,
                ),
            };
            refunds.push(RefundRecord {
                out_refund_no: req_str(&raw, &key("out_refund_no"))?,
                refund_id: req_str(&raw, &key("refund_id"))?,
                refund_channel: opt_str(&raw, &key("refund_channel")),
                refund_fee: req_fen(&raw, &key("refund_fee"))?,
                settlement_refund_fee: opt_fen(&raw, &key("settlement_refund_fee"))?,
                status,
                refund_account: opt_str(&raw, &key("refund_account")),
                // WeChat's own spelling.
                recv_account: opt_str(&raw, &key("refund_recv_accout")),
                success_time,
            });
        }
        let total_refund_count = match opt_str(&raw, "total_refund_count") {
            None => None,
            Some(t) => {
                Some(t.parse().map_err(|_| WxError::bad_field("total_refund_count", format!("not a count: {t:?}")))?)
            }
        };
        Ok(RefundQueryReply {
            transaction_id: req_str(&raw, "transaction_id")?,
            out_trade_no: req_str(&raw, "out_trade_no")?,
            total_fee: req_fen(&raw, "total_fee")?,
            cash_fee: opt_fen(&raw, "cash_fee")?,
            total_refund_count,
            refunds,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_repeated_refund_fields() {
        let raw: Fields = [
            ("transaction_id", "4200000001"),
            ("out_trade_no", "o1"),
            ("total_fee", "300"),
            ("refund_count", "2"),
            ("out_refund_no_0", "r0"),
            ("refund_id_0", "5000"),
            ("refund_fee_0", "100"),
            ("refund_status_0", "SUCCESS"),
            ("refund_success_time_0", "2024-01-02 03:04:05"),
            ("refund_recv_accout_0", "支付用户零钱"),
            ("out_refund_no_1", "r1"),
            ("refund_id_1", "5001"),
            ("refund_fee_1", "50"),
            ("refund_status_1", "PROCESSING"),
        ]
        .into_iter()
        .collect();
        let reply = RefundQueryReply::from_fields(raw).unwrap();
        assert_eq!(reply.refunds.len(), 2);
        assert_eq!(reply.refunds[0].refund_fee, Fen::new(100));
        assert_eq!(reply.refunds[0].recv_account.as_deref(), Some("支付用户零钱"));
        assert!(reply.refunds[0].success_time.is_some());
        assert_eq!(reply.refunds[1].status, RefundStatus::Processing);
    }

    #[test]
    fn refund_limits() {
        let ok = Refund {
            order: OrderRef::OutTradeNo("o1".into()),
            out_refund_no: "r1".into(),
            total_fee: Fen::new(100),
            refund_fee: Fen::new(100),
            refund_desc: None,
            refund_account: None,
            notify_url: None,
        };
        ok.validate().unwrap();
        let mut over = ok.clone();
        over.refund_fee = Fen::new(101);
        assert!(over.validate().is_err());
        let mut no_number = ok.clone();
        no_number.out_refund_no = String::new();
        assert!(no_number.validate().is_err());
    }
}
