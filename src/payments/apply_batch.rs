//! Many payments confirmed at once, for the notify writer's batches: the same decisions as
//! [`confirm_payment`] (the same `transition`, the same columns, timeline entry and webhook), with
//! the ordinary case (an order becoming PAID) written for the whole batch in a few statements
//! instead of four round trips a payment. Anything else (an unknown order, a payment after close,
//! another amount, a second notify of an order this batch already paid) goes through
//! `confirm_payment` itself, after the batch's own writes, so it sees them.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::apply::{Applied, changes_for, confirm_payment, payment_detail};
use super::outbox::WebhookOutbox;
use crate::db::events::{self, Entry};
use crate::db::order_batch::{self, PaidChange};
use crate::db::orders::OrderChanges;
use crate::db::{AnyConnection, DbError, DbResult};
use crate::domain::{Event, PaymentFacts, Rejection, Transition, transition};

/// What one payment of the batch comes to.
enum Plan {
    /// The order becomes PAID with the batch's writes.
    Paid { transition: Transition, changes: Box<OrderChanges>, detail: Value },
    /// Nothing to write.
    Done(Applied),
    /// Decided and written by `confirm_payment` after the batch's writes.
    OneByOne,
}

/// Confirms each `(out_trade_no, facts)` inside the caller's transaction; the results are in the
/// order of `payments`.
pub fn confirm_payments(
    conn: &mut AnyConnection,
    payments: &[(&str, &PaymentFacts)],
    outbox: &WebhookOutbox,
) -> DbResult<Vec<Applied>> {
    if payments.is_empty() {
        return Ok(Vec::new());
    }
    let mut nos: Vec<String> = payments.iter().map(|(no, _)| (*no).to_owned()).collect();
    nos.sort_unstable();
    nos.dedup();
    let orders = order_batch::find_many_locked(conn, &nos)?;
    let now = crate::db::now();
    let mut paid_here = HashSet::new();
    let plans: Vec<Plan> = payments
        .iter()
        .map(|&(no, facts)| {
            let Some(order) = orders.get(no) else { return Plan::OneByOne };
            if paid_here.contains(no) {
                return Plan::OneByOne;
            }
            let event = Event::PaymentConfirmed(facts.clone());
            match transition(order, &event) {
                Ok(t) if !t.paid_after_close => {
                    paid_here.insert(no);
                    Plan::Paid {
                        changes: Box::new(changes_for(&event, &t, now)),
                        transition: t,
                        detail: payment_detail(facts),
                    }
                }
                Err(Rejection::AlreadyDone) => Plan::Done(Applied::AlreadyDone { order: Box::new(order.clone()) }),
                _ => Plan::OneByOne,
            }
        })
        .collect();
    let written = write_paid(conn, payments, &plans)?;
    let mut results = Vec::with_capacity(payments.len());
    for (&(no, facts), plan) in payments.iter().zip(plans) {
        results.push(match plan {
            Plan::Paid { transition, .. } => {
                let order = written.get(no).cloned().ok_or_else(|| DbError::Corrupt(format!("{no} vanished")))?;
                outbox.order_paid(conn, &order)?;
                Applied::Changed { order: Box::new(order), transition }
            }
            Plan::Done(applied) => applied,
            Plan::OneByOne => confirm_payment(conn, no, facts, outbox)?,
        });
    }
    Ok(results)
}

/// The batch's writes: the guarded UPDATE and the timeline entries of every order it pays; returns
/// those orders as now stored.
fn write_paid(
    conn: &mut AnyConnection,
    payments: &[(&str, &PaymentFacts)],
    plans: &[Plan],
) -> DbResult<HashMap<String, crate::domain::Order>> {
    let mut paid = Vec::new();
    let mut entries = Vec::new();
    for (&(no, facts), plan) in payments.iter().zip(plans) {
        if let Plan::Paid { transition, changes, detail } = plan {
            paid.push(PaidChange { out_trade_no: no, from: transition.from, changes });
            let (kind, source) = (Event::PaymentConfirmed(facts.clone()).timeline_kind(), facts.source.timeline());
            let states = (Some(transition.from), Some(transition.to));
            entries.push(Entry { out_trade_no: no, kind, source, states, detail });
        }
    }
    if paid.is_empty() {
        return Ok(HashMap::new());
    }
    order_batch::mark_paid_many(conn, &paid)?;
    events::insert_many(conn, &entries)?;
    let nos: Vec<String> = paid.iter().map(|p| p.out_trade_no.to_owned()).collect();
    order_batch::find_many_locked(conn, &nos)
}
