//! What the simulator remembers: orders with their prepay, payment and refunds, notify
//! progress and attempts, OAuth codes; and the serializable snapshots tests and the control API
//! read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::wxpay::money::Fen;
use crate::wxpay::types::RefundStatus;

/// (mch_id, out_trade_no): orders are unique per merchant account.
pub(crate) type OrderKey = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderState {
    #[serde(rename = "NOTPAY")]
    NotPay,
    Success,
    #[serde(rename = "PAYERROR")]
    PayError,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimRefundStatus {
    Processing,
    Success,
    Change,
    #[serde(rename = "REFUNDCLOSE")]
    RefundClose,
}

impl SimRefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SimRefundStatus::Processing => "PROCESSING",
            SimRefundStatus::Success => "SUCCESS",
            SimRefundStatus::Change => "CHANGE",
            SimRefundStatus::RefundClose => "REFUNDCLOSE",
        }
    }

    /// The wire status a test may force; FAIL is not a state WeChat reports any more.
    pub fn from_wire(s: RefundStatus) -> Option<SimRefundStatus> {
        match s {
            RefundStatus::Processing => Some(SimRefundStatus::Processing),
            RefundStatus::Success => Some(SimRefundStatus::Success),
            RefundStatus::Change => Some(SimRefundStatus::Change),
            RefundStatus::RefundClose => Some(SimRefundStatus::RefundClose),
            RefundStatus::Fail => None,
        }
    }

    /// Whether the refund's money counts against the order total (closed refunds give it back).
    pub fn holds_money(self) -> bool {
        !matches!(self, SimRefundStatus::RefundClose)
    }
}

/// The protocol an order or refund was created through: its notifies speak the same one (v2 XML,
/// or v3 JSON with an encrypted resource and signed headers). Absent in state files written before
/// v3 existed, hence the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    #[default]
    V2,
    V3,
}

/// Where the delivery of one notify stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyStatus {
    /// Nothing to deliver (not paid yet, or no notify_url).
    #[default]
    None,
    Pending,
    Delivered,
    GaveUp,
    Dropped,
}

/// One notify and its delivery state, persisted so deliveries resume after a restart.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct NotifyJob {
    /// Identifies this job: a newer job for the same notify supersedes it.
    pub id: u64,
    pub status: NotifyStatus,
    pub url: String,
    /// The exact body sent at every attempt.
    pub body: String,
    /// Index of the next attempt (0 = the first, immediate one).
    pub next_attempt: u32,
    pub duplicates: u32,
    pub concurrent: u32,
    /// How long the first delivery waits (the late-notify fault); 0 for none.
    #[serde(default)]
    pub first_delay_ms: u64,
    /// v3 jobs are signed afresh at every attempt (WeChat's timestamps are those of the attempt).
    #[serde(default)]
    pub api: ApiVersion,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SimRefund {
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_fee: Fen,
    pub status: SimRefundStatus,
    pub refund_account: String,
    pub refund_desc: Option<String>,
    pub notify_url: Option<String>,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "ts::opt")]
    pub success_time: Option<DateTime<Utc>>,
    pub notify: NotifyJob,
    #[serde(default)]
    pub api: ApiVersion,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SimOrder {
    pub appid: String,
    pub mch_id: String,
    pub out_trade_no: String,
    pub body: String,
    pub attach: Option<String>,
    pub device_info: Option<String>,
    pub total_fee: Fen,
    pub fee_type: String,
    pub trade_type: String,
    pub openid: Option<String>,
    pub notify_url: String,
    pub sign_type: String,
    #[serde(with = "ts::opt")]
    pub time_expire: Option<DateTime<Utc>>,
    /// Every non-empty request field except nonce_str and sign: what reentry must repeat.
    pub request: BTreeMap<String, String>,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    pub prepay_id: String,
    #[serde(with = "ts")]
    pub prepay_created_at: DateTime<Utc>,
    pub state: OrderState,
    pub transaction_id: Option<String>,
    #[serde(with = "ts::opt")]
    pub time_end: Option<DateTime<Utc>>,
    pub bank_type: Option<String>,
    #[serde(with = "ts::opt")]
    pub closed_at: Option<DateTime<Utc>>,
    pub refunds: Vec<SimRefund>,
    pub notify: NotifyJob,
    #[serde(default)]
    pub api: ApiVersion,
}

impl SimOrder {
    pub fn trade_state(&self) -> &'static str {
        match self.state {
            OrderState::Success if !self.refunds.is_empty() => "REFUND",
            OrderState::Success => "SUCCESS",
            OrderState::NotPay => "NOTPAY",
            OrderState::PayError => "PAYERROR",
            OrderState::Closed => "CLOSED",
        }
    }

    /// The amount refunded or being refunded.
    pub fn refunded(&self) -> Fen {
        Fen::new(self.refunds.iter().filter(|r| r.status.holds_money()).map(|r| r.refund_fee.get()).sum())
    }
}

/// A single-use OAuth code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct OAuthCode {
    pub appid: String,
    pub openid: String,
    pub scope: String,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    pub used: bool,
    /// A `wx.login` code's session key, which `jscode2session` hands the merchant with the openid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
}

/// One attempt to deliver a notify, as recorded for tests and the control API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyAttempt {
    /// `payment` or `refund`.
    pub kind: String,
    pub mch_id: String,
    pub out_trade_no: String,
    pub out_refund_no: Option<String>,
    /// 1 for the first attempt, then one more per retry; duplicates repeat the accepted number.
    pub attempt: u32,
    /// `first`, `retry`, `concurrent` or `duplicate`; `dropped` when the fault swallowed it.
    pub copy: String,
    /// Simulated clock.
    #[serde(with = "ts")]
    pub at: DateTime<Utc>,
    pub url: String,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    /// The first 200 characters of the reply.
    pub reply: String,
    pub accepted: bool,
    #[serde(default)]
    pub api: ApiVersion,
    /// A v3 delivery that carried a `WECHATPAY/SIGNTEST/` probe instead of a signature.
    #[serde(default)]
    pub signature_probe: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundView {
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_fee: Fen,
    pub status: SimRefundStatus,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "ts::opt")]
    pub success_time: Option<DateTime<Utc>>,
    pub notify_url: Option<String>,
    pub notify_status: NotifyStatus,
}

/// A snapshot of one order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimOrderView {
    pub appid: String,
    pub mch_id: String,
    pub out_trade_no: String,
    /// The orderquery `trade_state`: NOTPAY, SUCCESS, REFUND, CLOSED or PAYERROR.
    pub state: String,
    pub body: String,
    pub attach: Option<String>,
    pub total_fee: Fen,
    pub refunded_fee: Fen,
    pub trade_type: String,
    pub sign_type: String,
    pub openid: Option<String>,
    pub notify_url: String,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    pub prepay_id: String,
    #[serde(with = "ts")]
    pub prepay_created_at: DateTime<Utc>,
    pub transaction_id: Option<String>,
    #[serde(with = "ts::opt")]
    pub time_end: Option<DateTime<Utc>>,
    pub refunds: Vec<RefundView>,
    pub notify_status: NotifyStatus,
    pub notify_attempts: Vec<NotifyAttempt>,
    /// The protocol the order was created through.
    #[serde(default)]
    pub api: ApiVersion,
}

impl SimOrder {
    pub fn view(&self, log: &[NotifyAttempt]) -> SimOrderView {
        SimOrderView {
            appid: self.appid.clone(),
            mch_id: self.mch_id.clone(),
            out_trade_no: self.out_trade_no.clone(),
            state: self.trade_state().to_owned(),
            body: self.body.clone(),
            attach: self.attach.clone(),
            total_fee: self.total_fee,
            refunded_fee: self.refunded(),
            trade_type: self.trade_type.clone(),
            sign_type: self.sign_type.clone(),
            openid: self.openid.clone(),
            notify_url: self.notify_url.clone(),
            created_at: self.created_at,
            prepay_id: self.prepay_id.clone(),
            prepay_created_at: self.prepay_created_at,
            transaction_id: self.transaction_id.clone(),
            time_end: self.time_end,
            refunds: self.refunds.iter().map(SimRefund::view).collect(),
            notify_status: self.notify.status,
            notify_attempts: log
                .iter()
                .filter(|a| a.mch_id == self.mch_id && a.out_trade_no == self.out_trade_no)
                .cloned()
                .collect(),
            api: self.api,
        }
    }
}

impl SimRefund {
    pub fn view(&self) -> RefundView {
        RefundView {
            out_refund_no: self.out_refund_no.clone(),
            refund_id: self.refund_id.clone(),
            refund_fee: self.refund_fee,
            status: self.status,
            created_at: self.created_at,
            success_time: self.success_time,
            notify_url: self.notify_url.clone(),
            notify_status: self.notify.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialize_with_their_wire_names() {
        for s in [
            SimRefundStatus::Processing,
            SimRefundStatus::Success,
            SimRefundStatus::Change,
            SimRefundStatus::RefundClose,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(SimRefundStatus::from_wire(RefundStatus::parse(s.as_str()).unwrap()), Some(s));
        }
        assert_eq!(SimRefundStatus::from_wire(RefundStatus::Fail), None);
        assert_eq!(serde_json::to_value(OrderState::NotPay).unwrap(), "NOTPAY");
        assert_eq!(serde_json::to_value(OrderState::PayError).unwrap(), "PAYERROR");
        let t: DateTime<Utc> = "2024-05-01T16:30:05.123Z".parse().unwrap();
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct T {
            #[serde(with = "ts")]
            a: DateTime<Utc>,
            #[serde(with = "ts::opt")]
            b: Option<DateTime<Utc>>,
        }
        let v = T { a: t, b: None };
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"{"a":"2024-05-01T16:30:05.123Z","b":null}"#);
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v);
    }
}

/// RFC 3339 (de)serialization of UTC instants (chrono's own serde support is not enabled).
pub(crate) mod ts {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(D::Error::custom)
    }

    pub mod opt {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(s) => {
                    DateTime::parse_from_rfc3339(&s).map(|t| Some(t.with_timezone(&Utc))).map_err(D::Error::custom)
                }
            }
        }
    }
}
