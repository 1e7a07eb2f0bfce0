//! v3 notifies: the JSON envelope (a UUID-shaped id, `encrypt-resource`, the event and its
//! summary) around the resource sealed with the merchant's APIv3 key (AAD and original_type
//! `transaction` or `refund`), built once per notify; and its signature, made at every delivery
//! with the platform certificate, or the WeChat Pay public key for a merchant in public-key mode,
//! unless the probe fault sends a `WECHATPAY/SIGNTEST/` one instead.
//!
//! The summaries of REFUND.ABNORMAL and REFUND.CLOSED are unverified (`退款异常`, `退款关闭`).

use chrono::{DateTime, Utc};

use super::orders::transaction_of;
use super::refunds::status_of;
use crate::simulator::model::{SimOrder, SimRefund, SimRefundStatus};
use crate::simulator::{Simulator, ids};
use crate::wxpay::v3::ApiV3Key;
use crate::wxpay::v3::aead::EncryptedResource;
use crate::wxpay::v3::models::{NotifyEnvelope, RefundResource, RefundResourceAmount, format_time};

/// `8-4-4-4-12` hex digits, like the ids of WeChat's notifies.
fn notify_id() -> String {
    let h = ids::random_hex(32);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn envelope(key: &ApiV3Key, kind: &str, event_type: &str, summary: &str, plain: &[u8], now: DateTime<Utc>) -> String {
    let envelope = NotifyEnvelope {
        id: notify_id(),
        create_time: format_time(now),
        resource_type: "encrypt-resource".into(),
        event_type: event_type.into(),
        summary: summary.into(),
        resource: EncryptedResource::seal(key, kind, Some(kind), plain),
    };
    serde_json::to_string(&envelope).expect("an envelope serializes")
}

/// TRANSACTION.SUCCESS: the paid order's `Transaction`, its amounts moved by `amount_delta` (the
/// fault) inside a correctly sealed and signed envelope.
pub(crate) fn payment_envelope(order: &SimOrder, key: &ApiV3Key, amount_delta: i64, now: DateTime<Utc>) -> String {
    let mut transaction = transaction_of(order);
    if let Some(amount) = transaction.amount.as_mut() {
        for value in [&mut amount.total, &mut amount.payer_total].into_iter().flatten() {
            *value = value.saturating_add(amount_delta);
        }
    }
    let plain = serde_json::to_vec(&transaction).expect("a transaction serializes");
    envelope(key, "transaction", "TRANSACTION.SUCCESS", "支付成功", &plain, now)
}

/// REFUND.SUCCESS, REFUND.ABNORMAL or REFUND.CLOSED; None for a refund still processing.
pub(crate) fn refund_envelope(
    order: &SimOrder,
    refund: &SimRefund,
    key: &ApiV3Key,
    now: DateTime<Utc>,
) -> Option<String> {
    let (event_type, summary) = match refund.status {
        SimRefundStatus::Processing => return None,
        SimRefundStatus::Success => ("REFUND.SUCCESS", "退款成功"),
        SimRefundStatus::Change => ("REFUND.ABNORMAL", "退款异常"),
        SimRefundStatus::RefundClose => ("REFUND.CLOSED", "退款关闭"),
    };
    let (total, amount) = (order.total_fee.get(), refund.refund_fee.get());
    let resource = RefundResource {
        mchid: order.mch_id.clone(),
        transaction_id: order.transaction_id.clone().unwrap_or_default(),
        out_trade_no: order.out_trade_no.clone(),
        refund_id: refund.refund_id.clone(),
        out_refund_no: refund.out_refund_no.clone(),
        refund_status: status_of(refund.status).to_owned(),
        success_time: refund.success_time.filter(|_| refund.status == SimRefundStatus::Success).map(format_time),
        user_received_account: Some("支付用户零钱".into()),
        amount: RefundResourceAmount { total, refund: amount, payer_total: Some(total), payer_refund: Some(amount) },
    };
    let plain = serde_json::to_vec(&resource).expect("a refund resource serializes");
    Some(envelope(key, "refund", event_type, summary, &plain, now))
}

/// Puts one delivery's body and signed headers on `request` (the clock-skew and tampering faults
/// applied); true when it carries a probe.
pub(crate) fn sign_notify(
    sim: &Simulator,
    mch_id: &str,
    request: reqwest::RequestBuilder,
    body: &str,
) -> (reqwest::RequestBuilder, bool) {
    let public_key = sim.config().v3_merchant(mch_id).is_some_and(|m| m.public_key_mode);
    let probe = sim.roll_signtest();
    let faults = sim.faults();
    let body = if faults.v3_tampered_ciphertext { tampered(body) } else { body.to_owned() };
    let mut request = request
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Request-ID", format!("{}-0", ids::random_hex(44).to_uppercase()));
    let skew = faults.v3_notify_clock_skew_seconds;
    for (name, value) in sim.platform().sign_skewed(public_key, body.as_bytes(), probe, skew) {
        request = request.header(name, value);
    }
    (request.body(body), probe)
}

/// The envelope with one character of its ciphertext changed (still Base64).
fn tampered(body: &str) -> String {
    let Ok(mut envelope) = serde_json::from_str::<NotifyEnvelope>(body) else { return body.to_owned() };
    let mut chars: Vec<char> = envelope.resource.ciphertext.chars().collect();
    if let Some(c) = chars.first_mut() {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    envelope.resource.ciphertext = chars.into_iter().collect();
    serde_json::to_string(&envelope).expect("an envelope serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::v3::models::Transaction;

    #[test]
    fn ids_are_uuid_shaped() {
        let id = notify_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
    }

    #[test]
    fn resources_open_with_the_merchants_key_and_their_aad() {
        let key = ApiV3Key::new("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        let order = SimOrder {
            state: crate::simulator::model::OrderState::Success,
            transaction_id: Some("4200".into()),
            time_end: Some(Utc::now()),
            ..super::super::orders::sample_order()
        };
        let body = payment_envelope(&order, &key, 3, Utc::now());
        let envelope: NotifyEnvelope = serde_json::from_str(&body).unwrap();
        assert_eq!((envelope.event_type.as_str(), envelope.summary.as_str()), ("TRANSACTION.SUCCESS", "支付成功"));
        assert_eq!(envelope.resource.associated_data, "transaction");
        assert_eq!(envelope.resource.original_type.as_deref(), Some("transaction"));
        let t: Transaction = serde_json::from_slice(&envelope.resource.open(&key).unwrap()).unwrap();
        assert_eq!(t.trade_state, "SUCCESS");
        let amount = t.amount.unwrap();
        assert_eq!(
            (amount.total, amount.payer_total),
            (Some(order.total_fee.get() + 3), Some(order.total_fee.get() + 3))
        );
    }
}
