//! `POST /pay/orderquery` and `POST /pay/closeorder`: read an order's state at WeChat, close it.

use chrono::{DateTime, Utc};

use super::error::WxError;
use super::money::Fen;
use super::reply::{opt_compact_time, opt_fen, opt_str, req_str};
use super::types::{OrderRef, TradeState, TradeType, is_valid_merchant_no};
use super::xml::Fields;

pub const QUERY_PATH: &str = "/pay/orderquery";
pub const CLOSE_PATH: &str = "/pay/closeorder";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderQuery {
    pub order: OrderRef,
}

impl OrderQuery {
    pub fn by_out_trade_no(out_trade_no: impl Into<String>) -> OrderQuery {
        OrderQuery { order: OrderRef::OutTradeNo(out_trade_no.into()) }
    }

    pub fn validate(&self) -> Result<(), WxError> {
        validate_order_ref(&self.order)
    }

    pub fn business_fields(&self) -> Vec<(&'static str, String)> {
        vec![self.order.field()]
    }
}

pub(crate) fn validate_order_ref(order: &OrderRef) -> Result<(), WxError> {
    match order {
        OrderRef::OutTradeNo(no) if !is_valid_merchant_no(no, 32) => {
            Err(WxError::InvalidRequest(format!("out_trade_no {no:?} is not a valid order number")))
        }
        OrderRef::TransactionId(id) if id.is_empty() || id.len() > 32 => {
            Err(WxError::InvalidRequest(format!("transaction_id {id:?} is not valid")))
        }
        _ => Ok(()),
    }
}

/// An order as WeChat sees it. Payment fields are present only once it was paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderQueryReply {
    pub trade_state: TradeState,
    pub trade_state_desc: Option<String>,
    pub out_trade_no: String,
    pub transaction_id: Option<String>,
    pub total_fee: Option<Fen>,
    pub cash_fee: Option<Fen>,
    pub openid: Option<String>,
    pub trade_type: Option<TradeType>,
    pub bank_type: Option<String>,
    pub attach: Option<String>,
    pub time_end: Option<DateTime<Utc>>,
    pub raw: Fields,
}

impl OrderQueryReply {
    pub fn from_fields(raw: Fields) -> Result<Self, WxError> {
        let state_raw = req_str(&raw, "trade_state")?;
        let trade_state = TradeState::parse(&state_raw)
            .ok_or_else(|| WxError::bad_field("trade_state", format!("unknown value {state_raw:?}")))?;
        let trade_type = match opt_str(&raw, "trade_type") {
            None => None,
            Some(t) => Some(
                TradeType::parse(&t).ok_or_else(|| WxError::bad_field("trade_type", format!("unknown value {t:?}")))?,
            ),
        };
        let reply = OrderQueryReply {
            trade_state,
            trade_state_desc: opt_str(&raw, "trade_state_desc"),
            out_trade_no: req_str(&raw, "out_trade_no")?,
            transaction_id: opt_str(&raw, "transaction_id"),
            total_fee: opt_fen(&raw, "total_fee")?,
            cash_fee: opt_fen(&raw, "cash_fee")?,
            openid: opt_str(&raw, "openid"),
            trade_type,
            bank_type: opt_str(&raw, "bank_type"),
            attach: opt_str(&raw, "attach"),
            time_end: opt_compact_time(&raw, "time_end")?,
            raw,
        };
        // A paid order without its payment facts cannot be applied safely.
        if reply.trade_state.is_paid() {
            if reply.transaction_id.is_none() {
                return Err(WxError::bad_field("transaction_id", "missing on a paid order"));
            }
            if reply.total_fee.is_none() {
                return Err(WxError::bad_field("total_fee", "missing on a paid order"));
            }
        }
        Ok(reply)
    }
}

/// The payment a paid order carries, as an orderquery reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueriedPayment {
    pub transaction_id: String,
    pub total_fee: Fen,
    pub time_end: Option<DateTime<Utc>>,
}

impl OrderQueryReply {
    /// The payment, when WeChat reports the order paid (`SUCCESS`, or `REFUND` after a refund).
    /// [`OrderQueryReply::from_fields`] refuses a paid reply without its transaction or amount,
    /// so this is `Some` exactly for a paid order.
    pub fn payment(&self) -> Option<QueriedPayment> {
        if !self.trade_state.is_paid() {
            return None;
        }
        Some(QueriedPayment {
            transaction_id: self.transaction_id.clone()?,
            total_fee: self.total_fee?,
            time_end: self.time_end,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseOrder {
    pub out_trade_no: String,
}

impl CloseOrder {
    pub fn validate(&self) -> Result<(), WxError> {
        validate_order_ref(&OrderRef::OutTradeNo(self.out_trade_no.clone()))
    }

    pub fn business_fields(&self) -> Vec<(&'static str, String)> {
        vec![("out_trade_no", self.out_trade_no.clone())]
    }
}
