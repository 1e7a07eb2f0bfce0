//! The JSON bodies of the v3 endpoints this product uses, field for field as documented. Requests
//! refuse unknown fields when read (the simulator refuses them, as WeChat does); answers are
//! read tolerantly, since WeChat adds fields at any time. Amounts are integer fen.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::aead::EncryptedResource;
use crate::wxpay::time::beijing;

pub const PREPAY_PATH: &str = "/v3/pay/transactions/jsapi";
pub const REFUND_PATH: &str = "/v3/refund/domestic/refunds";
pub const TRADE_BILL_PATH: &str = "/v3/bill/tradebill";

/// `GET …/out-trade-no/{no}?mchid=…`.
pub fn query_path(out_trade_no: &str, mchid: &str) -> String {
    format!("/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={mchid}")
}

/// `GET …/id/{transaction_id}?mchid=…`.
pub fn query_by_id_path(transaction_id: &str, mchid: &str) -> String {
    format!("/v3/pay/transactions/id/{transaction_id}?mchid={mchid}")
}

pub fn close_path(out_trade_no: &str) -> String {
    format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close")
}

pub fn refund_query_path(out_refund_no: &str) -> String {
    format!("{REFUND_PATH}/{out_refund_no}")
}

/// RFC 3339 in Beijing time, as WeChat writes it (`2018-06-08T10:34:56+08:00`).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&beijing()).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// RFC 3339 with any offset, `Z` and fractional seconds included.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

fn none<T>(v: &Option<T>) -> bool {
    v.is_none()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepayRequest {
    pub appid: String,
    pub mchid: String,
    pub description: String,
    pub out_trade_no: String,
    #[serde(default, skip_serializing_if = "none")]
    pub time_expire: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub attach: Option<String>,
    pub notify_url: String,
    #[serde(default, skip_serializing_if = "none")]
    pub goods_tag: Option<String>,
    pub amount: OrderAmount,
    pub payer: Payer,
    #[serde(default, skip_serializing_if = "none")]
    pub scene_info: Option<SceneInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderAmount {
    pub total: i64,
    #[serde(default, skip_serializing_if = "none")]
    pub currency: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payer {
    pub openid: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneInfo {
    pub payer_client_ip: String,
    #[serde(default, skip_serializing_if = "none")]
    pub device_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepayAnswer {
    pub prepay_id: String,
}

/// The Transaction of query answers and of the payment notify's decrypted resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    #[serde(default, skip_serializing_if = "none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub trade_type: Option<String>,
    pub trade_state: String,
    #[serde(default, skip_serializing_if = "none")]
    pub trade_state_desc: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub bank_type: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub attach: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub success_time: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub payer: Option<Payer>,
    #[serde(default, skip_serializing_if = "none")]
    pub amount: Option<TransactionAmount>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionAmount {
    #[serde(default, skip_serializing_if = "none")]
    pub total: Option<i64>,
    #[serde(default, skip_serializing_if = "none")]
    pub payer_total: Option<i64>,
    #[serde(default, skip_serializing_if = "none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub payer_currency: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    pub mchid: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    #[serde(default, skip_serializing_if = "none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub out_trade_no: Option<String>,
    pub out_refund_no: String,
    #[serde(default, skip_serializing_if = "none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub notify_url: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub funds_account: Option<String>,
    pub amount: RefundRequestAmount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequestAmount {
    pub refund: i64,
    pub total: i64,
    pub currency: String,
}

/// The Refund object of refund create and refund query answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundObject {
    pub refund_id: String,
    pub out_refund_no: String,
    pub transaction_id: String,
    pub out_trade_no: String,
    #[serde(default, skip_serializing_if = "none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub user_received_account: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub success_time: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub create_time: Option<String>,
    /// `SUCCESS` | `CLOSED` | `PROCESSING` | `ABNORMAL`.
    pub status: String,
    #[serde(default, skip_serializing_if = "none")]
    pub funds_account: Option<String>,
    pub amount: RefundObjectAmount,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundObjectAmount {
    pub total: i64,
    pub refund: i64,
    #[serde(default, skip_serializing_if = "none")]
    pub payer_total: Option<i64>,
    #[serde(default, skip_serializing_if = "none")]
    pub payer_refund: Option<i64>,
    #[serde(default, skip_serializing_if = "none")]
    pub settlement_refund: Option<i64>,
    #[serde(default, skip_serializing_if = "none")]
    pub settlement_total: Option<i64>,
    #[serde(default, skip_serializing_if = "none")]
    pub discount_refund: Option<i64>,
    #[serde(default, skip_serializing_if = "none")]
    pub currency: Option<String>,
}

/// The answer of `GET /v3/bill/tradebill`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeBillAnswer {
    pub hash_type: String,
    pub hash_value: String,
    pub download_url: String,
}

/// Every non-2xx answer: `{"code":…,"message":…,"detail":{…}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "none")]
    pub detail: Option<serde_json::Value>,
}

/// A notify's envelope; its `resource` is decrypted into a [`Transaction`] or a
/// [`RefundResource`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyEnvelope {
    pub id: String,
    pub create_time: String,
    pub resource_type: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`.
    pub event_type: String,
    #[serde(default)]
    pub summary: String,
    pub resource: EncryptedResource,
}

/// The decrypted resource of a refund notify.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundResource {
    pub mchid: String,
    pub transaction_id: String,
    pub out_trade_no: String,
    pub refund_id: String,
    pub out_refund_no: String,
    /// `SUCCESS` | `CLOSED` | `ABNORMAL`.
    pub refund_status: String,
    #[serde(default, skip_serializing_if = "none")]
    pub success_time: Option<String>,
    #[serde(default, skip_serializing_if = "none")]
    pub user_received_account: Option<String>,
    pub amount: RefundResourceAmount,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundResourceAmount {
    pub total: i64,
    pub refund: i64,
    #[serde(default, skip_serializing_if = "none")]
    pub payer_total: Option<i64>,
    #[serde(default, skip_serializing_if = "none")]
    pub payer_refund: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_beijing_rfc3339() {
        let t = parse_time("2018-06-08T10:34:56+08:00").unwrap();
        assert_eq!(format_time(t), "2018-06-08T10:34:56+08:00");
        assert_eq!(parse_time("2018-06-08T02:34:56.123Z").map(|t| t.timestamp()), Some(t.timestamp()));
        assert_eq!(parse_time("20180608103456"), None);
    }

    #[test]
    fn requests_refuse_unknown_fields_and_answers_do_not() {
        let extra = r#"{"mchid":"1","extra":1}"#;
        assert!(serde_json::from_str::<CloseRequest>(extra).is_err());
        let answer = r#"{"prepay_id":"wx1","new_field":true}"#;
        assert_eq!(serde_json::from_str::<PrepayAnswer>(answer).unwrap().prepay_id, "wx1");
        // A real NOTPAY answer (reference §4.2) reads.
        let notpay = r#"{"amount":{"payer_currency":"CNY","total":1},"appid":"wx1","mchid":"16","out_trade_no":"o1","promotion_detail":[],"scene_info":{"device_id":""},"trade_state":"NOTPAY","trade_state_desc":"订单未支付"}"#;
        let t: Transaction = serde_json::from_str(notpay).unwrap();
        assert_eq!((t.trade_state.as_str(), t.transaction_id), ("NOTPAY", None));
    }
}
