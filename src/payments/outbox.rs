//! The webhook outbox: a merchant webhook event is written in the very transaction that makes the
//! change it announces, so an event exists if and only if its change committed. The webhooks job
//! only delivers what is here; a crash between the commit and the delivery loses nothing.
//!
//! - `order.paid`, with the payment (also one after a close): key `order.paid:<out_trade_no>`;
//!   data the order as the API shows it.
//! - `order.closed`, with the move to CLOSED (any close goes through `apply::apply_change`): key
//!   `order.closed:<out_trade_no>`; data the order.
//! - `order.payment_failed`, with the move to PAYERROR (`apply::apply_change`): key
//!   `order.payment_failed:<out_trade_no>:<order_events.id>`; data the order.
//! - `order.refunded`, with a refund's SUCCESS: key `order.refunded:<out_refund_no>`; data the
//!   order plus a `refund` summary.
//! - `refund.failed`, with a refund's FAILED (refused, or reported FAIL) or CLOSED: key
//!   `refund.failed:<out_refund_no>`; data the order plus `refund` as the API shows it.
//!
//! Every `data` carries `simulated`, as the envelope does (`order_view`).
//!
//! The `dedupe_key` is UNIQUE: one logical event is written once, whatever path applied the
//! change. An order closes at most once and a refund ends once, so their number is enough. An
//! order may fail, be retried (a new prepay: PAYING again) and fail again, so each failure is
//! keyed by the id of the timeline entry its transition wrote: stable for that transition, new
//! for the next one, and unique by construction (a transition time would only be unique while
//! clocks behave). A duplicate report of the same failure (a second query; WeChat's FAIL notify,
//! which is only recorded) finds the order PAYERROR already: no transition, so no entry and no
//! event. A close is CLOSED → CLOSED the same way, and a refund's repeated outcome a no-op.
//!
//! An event goes to the order's own `webhook_url`, else the global `WEBHOOK_URL`; with neither,
//! or without `WEBHOOK_SECRET` (nothing could be signed), none is written.

use std::sync::Arc;

use serde_json::Value;

use super::order_view::{order_json, order_with_refund_json, refunded_json};
use crate::config::AppConfig;
use crate::db::webhooks::{self, NewWebhookEvent};
use crate::db::{AnyConnection, DbError, DbResult, events};
use crate::domain::webhook::{WebhookEventType, WebhookState};
use crate::domain::{Order, Refund, TimelineKind};

/// Writes webhook events for the changes being committed; cheap to clone.
#[derive(Clone)]
pub struct WebhookOutbox {
    config: Arc<AppConfig>,
}

impl WebhookOutbox {
    pub fn new(config: Arc<AppConfig>) -> WebhookOutbox {
        WebhookOutbox { config }
    }

    /// `order.paid` for an order that just became PAID.
    pub fn order_paid(&self, conn: &mut AnyConnection, order: &Order) -> DbResult<()> {
        let key = format!("{}:{}", WebhookEventType::OrderPaid, order.out_trade_no);
        self.write(conn, order, WebhookEventType::OrderPaid, &key, || order_json(order, &self.config))
    }

    /// `order.refunded` for a refund that just succeeded; `order` is read after the refund counted.
    pub fn order_refunded(&self, conn: &mut AnyConnection, order: &Order, refund: &Refund) -> DbResult<()> {
        let key = format!("{}:{}", WebhookEventType::OrderRefunded, refund.out_refund_no);
        self.write(conn, order, WebhookEventType::OrderRefunded, &key, || refunded_json(order, refund, &self.config))
    }

    /// `order.closed` for an order that just became CLOSED.
    pub fn order_closed(&self, conn: &mut AnyConnection, order: &Order) -> DbResult<()> {
        let key = format!("{}:{}", WebhookEventType::OrderClosed, order.out_trade_no);
        self.write(conn, order, WebhookEventType::OrderClosed, &key, || order_json(order, &self.config))
    }

    /// `order.payment_failed` for an order that just became PAYERROR, in the transaction that
    /// wrote the transition's timeline entry (whose id tells this failure from the next).
    pub fn order_payment_failed(&self, conn: &mut AnyConnection, order: &Order) -> DbResult<()> {
        if self.url(order).is_none() {
            return Ok(());
        }
        let no = &order.out_trade_no;
        let entry = events::latest_id(conn, no, TimelineKind::PaymentFailed)?
            .ok_or_else(|| DbError::Corrupt(format!("order {no} became PAYERROR without a timeline entry")))?;
        let key = format!("{}:{no}:{entry}", WebhookEventType::OrderPaymentFailed);
        self.write(conn, order, WebhookEventType::OrderPaymentFailed, &key, || order_json(order, &self.config))
    }

    /// `refund.failed` for a refund that just became FAILED or CLOSED; `order` is read after its
    /// reservation was released.
    pub fn refund_failed(&self, conn: &mut AnyConnection, order: &Order, refund: &Refund) -> DbResult<()> {
        let key = format!("{}:{}", WebhookEventType::RefundFailed, refund.out_refund_no);
        let data = || order_with_refund_json(order, refund, &self.config);
        self.write(conn, order, WebhookEventType::RefundFailed, &key, data)
    }

    /// Whether events are written at all: only while they can be signed.
    pub fn is_on(&self) -> bool {
        self.config.jobs.webhook_secret.is_some()
    }

    /// Where this order's events go, if webhooks are on.
    fn url<'a>(&'a self, order: &'a Order) -> Option<&'a str> {
        if !self.is_on() {
            return None;
        }
        order.webhook_url.as_deref().filter(|u| !u.is_empty()).or(self.config.jobs.webhook_url.as_deref())
    }

    fn write(
        &self,
        conn: &mut AnyConnection,
        order: &Order,
        event_type: WebhookEventType,
        dedupe_key: &str,
        data: impl FnOnce() -> Value,
    ) -> DbResult<()> {
        let Some(url) = self.url(order) else { return Ok(()) };
        let now = crate::db::now();
        let event = NewWebhookEvent {
            dedupe_key,
            event_type: event_type.as_str(),
            out_trade_no: &order.out_trade_no,
            url,
            payload: data().to_string(),
            state: WebhookState::Pending.as_str(),
            attempts: 0,
            next_attempt_at: Some(now),
            created_at: now,
        };
        if webhooks::insert_event(conn, &event)? {
            tracing::info!(out_trade_no = %order.out_trade_no, event_type = %event_type, "webhook event created");
        }
        Ok(())
    }
}
