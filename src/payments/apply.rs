//! The single write path for order state. An event goes through `domain::transition` and, when it
//! changes something, through the guarded UPDATE of `db::orders`, with its timeline entry, any
//! exception, and the webhook it announces (the outbox: `order.paid`, `order.closed`,
//! `order.payment_failed`) written in the same transaction, so no caller can forget one.
//! Notifies, queries, closes and the reconciler all land here; nothing else marks an order paid.
//!
//! A payment enters only through [`confirm_payment`], whose event carries the payment's facts (the
//! transition itself refuses another amount); every other change is a [`Change`], which cannot
//! express a payment. The function that applies either is private to this module.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::outbox::WebhookOutbox;
use crate::db::exceptions::{self, NewException};
use crate::db::orders::{self, OrderChanges};
use crate::db::{AnyConnection, DbResult, events};
use crate::domain::{
    Event, ExceptionKind, Order, OrderState, PaymentApp, PaymentFacts, Rejection, TimelineSource, Transition,
    transition,
};

/// The result of applying an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// This call changed the order.
    Changed { order: Box<Order>, transition: Transition },
    /// Nothing to do: the order was already there (duplicates land here).
    AlreadyDone { order: Box<Order> },
    /// The event does not fit the order (another amount, a second transaction, a close of a paid
    /// order); recorded where it matters.
    Refused { order: Box<Order>, rejection: Rejection },
    /// No such order.
    UnknownOrder,
}

/// A change of an order other than a payment.
#[derive(Clone, Debug)]
pub enum Change {
    /// `unifiedorder` returned a prepay for this shopper in this app; the poller's schedule starts
    /// over.
    PrepayIssued {
        app: PaymentApp,
        openid: String,
        client_ip: String,
        prepay_id: String,
        issued_at: DateTime<Utc>,
        first_query_at: DateTime<Utc>,
    },
    /// Closed: at WeChat, reported closed by WeChat, or never reached WeChat.
    Closed,
    /// WeChat reports the payment failed.
    PaymentFailed,
}

/// Applies a non-payment change inside the caller's transaction; `detail` goes to the timeline.
/// A move to CLOSED or PAYERROR is announced through `outbox` in the same transaction.
pub fn apply_change(
    conn: &mut AnyConnection,
    out_trade_no: &str,
    change: Change,
    source: TimelineSource,
    detail: Value,
    outbox: &WebhookOutbox,
) -> DbResult<Applied> {
    let (event, extra) = match change {
        Change::PrepayIssued { app, openid, client_ip, prepay_id, issued_at, first_query_at } => {
            let extra = OrderChanges {
                prepay_app: Some(app.as_str().to_owned()),
                openid: Some(openid),
                client_ip: Some(client_ip),
                prepay_id: Some(prepay_id),
                prepay_created_at: Some(issued_at.naive_utc()),
                query_attempts: Some(0),
                next_query_at: Some(Some(first_query_at.naive_utc())),
                ..OrderChanges::default()
            };
            (Event::PrepayIssued, extra)
        }
        Change::Closed => (Event::Closed, OrderChanges::default()),
        Change::PaymentFailed => (Event::PaymentFailed, OrderChanges::default()),
    };
    let applied = apply_event(conn, out_trade_no, &event, extra, source, &detail)?;
    if let Applied::Changed { order, transition } = &applied {
        match transition.to {
            OrderState::Closed => outbox.order_closed(conn, order)?,
            OrderState::PayError => outbox.order_payment_failed(conn, order)?,
            OrderState::Created | OrderState::Paying | OrderState::Paid => {}
        }
    }
    Ok(applied)
}

/// Columns an event sets besides `state`.
pub(super) fn changes_for(event: &Event, t: &Transition, now: chrono::NaiveDateTime) -> OrderChanges {
    let mut c =
        OrderChanges { state: Some(t.to.as_str().to_owned()), updated_at: Some(now), ..OrderChanges::default() };
    match event {
        Event::PaymentConfirmed(facts) => {
            c.transaction_id = Some(facts.transaction_id.clone());
            c.paid_fen = Some(facts.total_fee.get());
            c.paid_at = Some(facts.paid_at.naive_utc());
            c.paid_after_close = Some(i32::from(t.paid_after_close));
        }
        Event::Closed => c.closed_at = Some(now),
        Event::PrepayIssued | Event::PaymentFailed => {}
    }
    // Only PAYING orders are polled; leaving PAYING ends the schedule in the same guarded UPDATE
    // (a new prepay starts it again through `extra`).
    if t.to != OrderState::Paying {
        c.next_query_at = Some(None);
    }
    c
}

/// Applies `event` inside the caller's transaction. `extra` adds columns of its own (the prepay
/// on `PrepayIssued`).
fn apply_event(
    conn: &mut AnyConnection,
    out_trade_no: &str,
    event: &Event,
    extra: OrderChanges,
    source: TimelineSource,
    detail: &Value,
) -> DbResult<Applied> {
    // A lost compare-and-set means another writer moved the order between our read and our
    // update; re-reading and deciding again converges within a few rounds.
    for _ in 0..5 {
        let Some(order) = orders::find(conn, out_trade_no)? else {
            return Ok(Applied::UnknownOrder);
        };
        let t = match transition(&order, event) {
            Ok(t) => t,
            Err(Rejection::AlreadyDone) => return Ok(Applied::AlreadyDone { order: Box::new(order) }),
            Err(rejection) => return Ok(Applied::Refused { order: Box::new(order), rejection }),
        };
        let mut changes = changes_for(event, &t, crate::db::now());
        changes.merge(&extra);
        if orders::update_if_state(conn, out_trade_no, t.from, &changes)? {
            let kind = event.timeline_kind();
            events::insert(conn, out_trade_no, kind, source, (Some(t.from), Some(t.to)), detail)?;
            let order = orders::find(conn, out_trade_no)?.expect("the order we just updated exists");
            return Ok(Applied::Changed { order: Box::new(order), transition: t });
        }
    }
    Err(crate::db::DbError::Corrupt(format!("order {out_trade_no} kept changing under us")))
}

/// What the timeline records of a payment.
pub(super) fn payment_detail(facts: &PaymentFacts) -> Value {
    json!({
        "transaction_id": facts.transaction_id,
        "total_fee": facts.total_fee.get(),
        "paid_at": facts.paid_at.to_rfc3339(),
    })
}

/// Confirms a payment reported by a verified source (a notify, an orderquery): applies
/// `PaymentConfirmed` with its facts, announces it, and raises the exceptions staff must see.
pub fn confirm_payment(
    conn: &mut AnyConnection,
    out_trade_no: &str,
    facts: &PaymentFacts,
    outbox: &WebhookOutbox,
) -> DbResult<Applied> {
    let event = Event::PaymentConfirmed(facts.clone());
    let detail = payment_detail(facts);
    let applied = apply_event(conn, out_trade_no, &event, OrderChanges::default(), facts.source.timeline(), &detail)?;
    let source = facts.source.as_str();
    let (kind, key, order_no, detail) = match &applied {
        Applied::Changed { order, transition } => {
            outbox.order_paid(conn, order)?;
            if !transition.paid_after_close {
                return Ok(applied);
            }
            let detail = json!({
                "transaction_id": facts.transaction_id,
                "total_fee": facts.total_fee.get(),
                "note": "the order was closed before the payment arrived: ship it or refund it",
            });
            (ExceptionKind::PaidAfterClose, format!("paid_after_close:{out_trade_no}"), true, detail)
        }
        Applied::UnknownOrder => {
            let detail = json!({
                "out_trade_no": out_trade_no,
                "transaction_id": facts.transaction_id,
                "total_fee": facts.total_fee.get(),
                "source": source,
            });
            (
                ExceptionKind::UnknownOrder,
                format!("unknown_order:{out_trade_no}:{}", facts.transaction_id),
                false,
                detail,
            )
        }
        Applied::Refused { rejection: Rejection::AmountMismatch { expected, reported }, .. } => {
            let detail = json!({
                "transaction_id": facts.transaction_id,
                "expected_fen": expected.get(),
                "reported_fen": reported.get(),
                "source": source,
            });
            let key = format!("amount_mismatch:{out_trade_no}:{}", facts.transaction_id);
            (ExceptionKind::AmountMismatch, key, true, detail)
        }
        Applied::Refused { rejection: Rejection::ConflictingPayment { recorded, received }, .. } => {
            let detail = json!({ "recorded_transaction_id": recorded, "received_transaction_id": received });
            (ExceptionKind::ConflictingPayment, format!("conflicting_payment:{out_trade_no}:{received}"), true, detail)
        }
        Applied::AlreadyDone { .. } | Applied::Refused { .. } => return Ok(applied),
    };
    let out_trade_no = order_no.then(|| out_trade_no.to_owned());
    exceptions::raise(conn, &NewException { kind, dedupe_key: key, out_trade_no, detail })?;
    Ok(applied)
}
