//! Merchant webhooks: the events we announce, their delivery states, each attempt, and the exact
//! envelope that is signed and sent.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

use super::vocab::string_enum;

string_enum! {
    /// What an event announces (`webhook_events.event_type`).
    pub enum WebhookEventType {
        /// The order became PAID (also when it was paid after it closed).
        OrderPaid = "order.paid",
        /// One refund of the order succeeded.
        OrderRefunded = "order.refunded",
        /// The order became CLOSED (closed here, at WeChat, or reported closed by WeChat).
        OrderClosed = "order.closed",
        /// The order became PAYERROR (WeChat reports the payment failed; the shopper may retry).
        OrderPaymentFailed = "order.payment_failed",
        /// One refund of the order ended without paying the shopper (FAILED or CLOSED).
        RefundFailed = "refund.failed",
    }
}

string_enum! {
    /// Where an event is in its life.
    pub enum WebhookState {
        /// Waiting for its next attempt (`next_attempt_at`).
        Pending = "PENDING",
        /// A reply in 2xx was received.
        Delivered = "DELIVERED",
        /// Every attempt of the schedule failed; it stays until re-sent by staff.
        Failed = "FAILED",
    }
}

/// A webhook event as the rest of the program sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    pub id: i64,
    pub dedupe_key: String,
    pub event_type: String,
    pub out_trade_no: String,
    pub url: String,
    /// The `data` object, as JSON text.
    pub payload: String,
    pub state: WebhookState,
    /// Attempts since it was created or last re-sent.
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl WebhookEvent {
    /// The exact body sent: the envelope around the stored `data`, keys in a fixed order.
    /// `simulated` says whether the simulator stood in for WeChat, so a receiver can refuse
    /// to ship goods for a payment that never happened.
    pub fn body(&self, simulated: bool) -> String {
        let quote = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        format!(
            "{{\"id\":{},\"type\":{},\"created_at\":{},\"simulated\":{},\"data\":{}}}",
            self.id,
            quote(&self.event_type),
            quote(&self.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            simulated,
            self.payload
        )
    }

    /// An attempt is under way (its lease has not run out): re-sending now could deliver twice.
    pub fn in_flight(&self, now: DateTime<Utc>) -> bool {
        self.lease_until.is_some_and(|t| t > now)
    }
}

/// One delivery attempt of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub id: i64,
    pub event_id: i64,
    pub attempted_at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response_snippet: Option<String>,
}

impl WebhookAttempt {
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

/// What an attempt leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered { at: NaiveDateTime },
    RetryAt(NaiveDateTime),
    Failed,
}

/// What a re-send found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Set back to PENDING, due now, with a fresh schedule; the event as it was before.
    Queued(WebhookEvent),
    /// An attempt is in flight right now (leased); re-sending now could deliver it twice at once.
    InFlight(WebhookEvent),
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_the_envelope_around_the_stored_data() {
        let event = WebhookEvent {
            id: 7,
            dedupe_key: "order.paid:WC1".into(),
            event_type: "order.paid".into(),
            out_trade_no: "WC1".into(),
            url: "http://merchant.example/hook".into(),
            payload: r#"{"out_trade_no":"WC1"}"#.into(),
            state: WebhookState::Pending,
            attempts: 0,
            next_attempt_at: None,
            lease_owner: None,
            lease_until: None,
            created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            delivered_at: None,
        };
        let v: serde_json::Value = serde_json::from_str(&event.body(true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": 7, "type": "order.paid", "created_at": "2023-11-14T22:13:20Z", "simulated": true, "data": {"out_trade_no": "WC1"}})
        );
        assert!(event.body(false).contains(r#""simulated":false,"#));
    }
}
