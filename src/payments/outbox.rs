//! The webhook outbox: a merchant webhook event is written in the very transaction that makes the
//! change it announces (`order.paid` with the payment, `order.refunded` with the refund's
//! success), so an event exists if and only if its change committed. The webhooks job only
//! delivers what is here; a crash between the commit and the delivery loses nothing.
//!
//! An event goes to the order's own `webhook_url`, else the global `WEBHOOK_URL`; with neither,
//! or without `WEBHOOK_SECRET` (nothing could be signed), none is written. The `dedupe_key`
//! (`order.paid:<out_trade_no>`, `order.refunded:<out_refund_no>`) is UNIQUE: one logical event
//! is written once, whatever path applied the change.

use std::sync::Arc;

use serde_json::Value;

use super::order_view::{order_json, refunded_json};
use crate::config::AppConfig;
use crate::db::webhooks::{self, NewWebhookEvent};
use crate::db::{AnyConnection, DbResult};
use crate::domain::webhook::{WebhookEventType, WebhookState};
use crate::domain::{Order, Refund};

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
