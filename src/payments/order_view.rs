//! The merchant's view of an order: the JSON the API answers with and every webhook carries as
//! `data`, built in one place so the two can never disagree.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::config::AppConfig;
use crate::domain::{Order, Refund};

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The order as `GET /api/v1/orders/{out_trade_no}` shows it.
pub fn order_json(order: &Order, config: &AppConfig) -> Value {
    json!({
        "out_trade_no": order.out_trade_no,
        "merchant_order_id": order.merchant_order_id,
        "state": order.state.as_str(),
        "amount_fen": order.amount.get(),
        "amount_yuan": order.amount.to_yuan_string(),
        "description": order.description,
        "attach": order.attach,
        "checkout_url": config.checkout_url(&order.out_trade_no),
        "transaction_id": order.transaction_id,
        "paid_fen": order.paid.map(|p| p.get()),
        "paid_at": order.paid_at.map(time),
        "paid_after_close": order.paid_after_close,
        "created_at": time(order.created_at),
        "expires_at": time(order.expires_at),
        "closed_at": order.closed_at.map(time),
        "webhook_url": order.webhook_url,
        "return_url": order.return_url,
        // Stripe's `livemode`, inverted: a merchant's system can refuse to ship on a simulated payment.
        "simulated": config.simulator,
    })
}

/// A refund as the API shows it.
pub fn refund_json(refund: &Refund, config: &AppConfig) -> Value {
    json!({
        "out_refund_no": refund.out_refund_no,
        "out_trade_no": refund.out_trade_no,
        "state": refund.state.as_str(),
        "amount_fen": refund.amount.get(),
        "amount_yuan": refund.amount.to_yuan_string(),
        "reason": refund.reason,
        "refund_id": refund.refund_id,
        "requested_by": refund.requested_by,
        "last_error": refund.last_error,
        "created_at": time(refund.created_at),
        "updated_at": time(refund.updated_at),
        "succeeded_at": refund.succeeded_at.map(time),
        "simulated": config.simulator,
    })
}

/// The order with one of its refunds, as an `order.refunded` webhook carries it.
pub fn refunded_json(order: &Order, refund: &Refund, config: &AppConfig) -> Value {
    let mut data = order_json(order, config);
    let succeeded_at = refund.succeeded_at.unwrap_or(refund.updated_at);
    data["refund"] = json!({
        "out_refund_no": refund.out_refund_no,
        "amount_fen": refund.amount.get(),
        "succeeded_at": time(succeeded_at),
    });
    data
}

/// The order with one of its refunds as the API shows it, as a `refund.failed` webhook carries it.
pub fn order_with_refund_json(order: &Order, refund: &Refund, config: &AppConfig) -> Value {
    let mut data = order_json(order, config);
    data["refund"] = refund_json(refund, config);
    data
}
