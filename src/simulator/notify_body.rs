//! The bodies of payment and refund notifies, in the protocol the order or refund was created
//! through: v2 XML (the payment notify signed without `sign_type`, the refund notify around an
//! encrypted `req_info`) or the v3 JSON envelope ([`super::v3`]), which is signed at delivery.

use chrono::{DateTime, Utc};

use super::Simulator;
use super::model::{ApiVersion, SimOrder, SimRefund, SimRefundStatus};
use super::v3;
use crate::wxpay::money::Fen;
use crate::wxpay::nonce::nonce_str;
use crate::wxpay::refund_notify::encrypt_req_info;
use crate::wxpay::sign::{self, ApiKey, SignType};
use crate::wxpay::time;
use crate::wxpay::xml::{self, Fields};

/// The payment notify of a just-paid order (the amount fault applied); None when the merchant
/// has no key for the order's protocol.
pub(crate) fn payment_notify(sim: &Simulator, order: &SimOrder, now: DateTime<Utc>) -> Option<String> {
    let delta = sim.faults().notify_amount_delta;
    match order.api {
        ApiVersion::V2 => sim.api_key_for(&order.mch_id).map(|key| payment_body(order, &key, delta)),
        ApiVersion::V3 => {
            sim.config().v3_merchant(&order.mch_id).map(|m| v3::payment_envelope(order, &m.apiv3_key, delta, now))
        }
    }
}

/// The refund notify of a settled refund; None when the merchant has no key for its protocol.
pub(crate) fn refund_notify(
    sim: &Simulator,
    order: &SimOrder,
    refund: &SimRefund,
    now: DateTime<Utc>,
) -> Option<String> {
    match refund.api {
        ApiVersion::V2 => sim.api_key_for(&order.mch_id).map(|key| refund_body(order, refund, &key)),
        ApiVersion::V3 => {
            sim.config().v3_merchant(&order.mch_id).and_then(|m| v3::refund_envelope(order, refund, &m.apiv3_key, now))
        }
    }
}

/// The payment notify: signed with the order's algorithm but, like WeChat's, without `sign_type`.
pub(crate) fn payment_body(order: &SimOrder, key: &ApiKey, amount_delta: i64) -> String {
    let amount = Fen::new(order.total_fee.get().saturating_add(amount_delta)).to_string();
    let mut f = Fields::new();
    f.insert("appid", order.appid.clone());
    f.insert("mch_id", order.mch_id.clone());
    if let Some(device) = &order.device_info {
        f.insert("device_info", device.clone());
    }
    f.insert("nonce_str", nonce_str());
    f.insert("result_code", "SUCCESS");
    f.insert("return_code", "SUCCESS");
    f.insert("openid", order.openid.clone().unwrap_or_default());
    f.insert("is_subscribe", "N");
    f.insert("trade_type", order.trade_type.clone());
    f.insert("bank_type", order.bank_type.clone().unwrap_or_else(|| "OTHERS".into()));
    f.insert("total_fee", amount.clone());
    f.insert("fee_type", "CNY");
    f.insert("cash_fee", amount);
    f.insert("transaction_id", order.transaction_id.clone().unwrap_or_default());
    f.insert("out_trade_no", order.out_trade_no.clone());
    if let Some(attach) = &order.attach {
        f.insert("attach", attach.clone());
    }
    f.insert("time_end", order.time_end.map(time::format_compact).unwrap_or_default());
    let sign_type = SignType::parse(&order.sign_type).unwrap_or_default();
    f.insert("sign", sign::sign(f.pairs(), key, sign_type));
    f.to_xml()
}

/// The refund notify: an unsigned outer message around the AES-encrypted `<root>` document.
pub(crate) fn refund_body(order: &SimOrder, refund: &SimRefund, key: &ApiKey) -> String {
    let total = order.total_fee.to_string();
    let fee = refund.refund_fee.to_string();
    let success_time = match refund.status {
        SimRefundStatus::Success => refund.success_time.map(time::format_dashed).unwrap_or_default(),
        _ => String::new(),
    };
    let root = xml::write_document(
        "root",
        [
            ("transaction_id", order.transaction_id.as_deref().unwrap_or_default()),
            ("out_trade_no", order.out_trade_no.as_str()),
            ("refund_id", refund.refund_id.as_str()),
            ("out_refund_no", refund.out_refund_no.as_str()),
            ("total_fee", total.as_str()),
            ("settlement_total_fee", total.as_str()),
            ("refund_fee", fee.as_str()),
            ("settlement_refund_fee", fee.as_str()),
            ("refund_status", refund.status.as_str()),
            ("success_time", success_time.as_str()),
            ("refund_recv_accout", "支付用户零钱"),
            ("refund_account", refund.refund_account.as_str()),
            ("refund_request_source", "API"),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty()),
    );
    let req_info = encrypt_req_info(&root, key);
    let nonce = nonce_str();
    xml::write_document(
        "xml",
        [
            ("return_code", "SUCCESS"),
            ("appid", order.appid.as_str()),
            ("mch_id", order.mch_id.as_str()),
            ("nonce_str", nonce.as_str()),
            ("req_info", req_info.as_str()),
        ],
    )
}
