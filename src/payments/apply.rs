//! The single write path for order state: an event goes through `domain::transition` and, when
//! it changes something, through the guarded UPDATE of `db::orders`, with its timeline entry and
//! any exception written in the same transaction. Notifies, queries, closes and (later) bills
//! all land here; nothing else marks an order paid.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::db::orders::{self, Order, OrderChanges};
use crate::db::{AnyConnection, DbResult, events, exceptions};
use crate::domain::{Event, Fen, OrderState, PaymentSource, Rejection, Transition, transition};

/// What a verified source says about a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentFacts {
    pub transaction_id: String,
    pub total_fee: Fen,
    pub paid_at: DateTime<Utc>,
    pub source: PaymentSource,
}

/// The result of applying an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// This call changed the order.
    Changed { order: Box<Order>, transition: Transition },
    /// Nothing to do: the order was already there (duplicates land here).
    AlreadyDone { order: Box<Order> },
    /// The event does not fit the order; recorded where it matters.
    Refused { order: Box<Order>, rejection: Rejection },
    /// No such order.
    UnknownOrder,
    /// The amount WeChat reports differs from the order's: no payment is recorded.
    AmountMismatch { order: Box<Order>, reported: Fen },
}

/// Columns an event sets besides `state`.
fn changes_for(event: &Event, facts: Option<&PaymentFacts>, t: &Transition, now: DateTime<Utc>) -> OrderChanges {
    let mut c = OrderChanges {
        state: Some(t.to.as_str().to_owned()),
        updated_at: Some(now.naive_utc()),
        ..OrderChanges::default()
    };
    match event {
        Event::PaymentConfirmed { transaction_id, .. } => {
            c.transaction_id = Some(transaction_id.clone());
            if let Some(f) = facts {
                c.paid_fen = Some(f.total_fee.get());
                c.paid_at = Some(f.paid_at.naive_utc());
            }
            c.paid_after_close = Some(i32::from(t.paid_after_close));
        }
        Event::Closed => c.closed_at = Some(now.naive_utc()),
        Event::PrepayIssued | Event::PaymentFailed => {}
    }
    // Only PAYING orders are polled; leaving PAYING ends the schedule in the same guarded UPDATE
    // (a new prepay starts it again through `extra`).
    if t.to != OrderState::Paying {
        c.next_query_at = Some(None);
    }
    c
}

/// Applies `event` to an order inside the caller's transaction. `extra` adds columns of its own
/// (the prepay id on `PrepayIssued`); `detail` goes to the timeline.
pub fn apply_event(
    conn: &mut AnyConnection,
    out_trade_no: &str,
    event: &Event,
    facts: Option<&PaymentFacts>,
    extra: OrderChanges,
    source: &str,
    detail: serde_json::Value,
) -> DbResult<Applied> {
    // A lost compare-and-set means another writer moved the order between our read and our
    // update; re-reading and deciding again converges within a few rounds.
    for _ in 0..5 {
        let Some(order) = orders::find(conn, out_trade_no)? else {
            return Ok(Applied::UnknownOrder);
        };
        let t = match transition(order.state, order.transaction_id.as_deref(), event) {
            Ok(t) => t,
            Err(Rejection::AlreadyDone) => return Ok(Applied::AlreadyDone { order: Box::new(order) }),
            Err(rejection) => return Ok(Applied::Refused { order: Box::new(order), rejection }),
        };
        let now = Utc::now();
        let mut changes = changes_for(event, facts, &t, now);
        merge(&mut changes, &extra);
        if orders::update_if_state(conn, out_trade_no, t.from, &changes)? {
            events::insert(
                conn,
                &events::NewEvent {
                    out_trade_no,
                    kind: event.kind(),
                    from_state: Some(t.from.as_str()),
                    to_state: Some(t.to.as_str()),
                    source,
                    detail: detail.to_string(),
                    created_at: crate::db::now(),
                },
            )?;
            let order = orders::find(conn, out_trade_no)?.expect("the order we just updated exists");
            return Ok(Applied::Changed { order: Box::new(order), transition: t });
        }
    }
    Err(crate::db::DbError::Corrupt(format!("order {out_trade_no} kept changing under us")))
}

fn merge(into: &mut OrderChanges, extra: &OrderChanges) {
    macro_rules! take {
        ($($f:ident),*) => { $( if extra.$f.is_some() { into.$f = extra.$f.clone(); } )* };
    }
    take!(openid, client_ip, prepay_id, prepay_created_at, query_attempts, next_query_at);
}

/// Confirms a payment reported by a verified source (notify, orderquery, bill): checks the
/// amount, applies `PaymentConfirmed`, and raises the exceptions staff must see.
pub fn confirm_payment(conn: &mut AnyConnection, out_trade_no: &str, facts: &PaymentFacts) -> DbResult<Applied> {
    let Some(order) = orders::find(conn, out_trade_no)? else {
        exceptions::raise(
            conn,
            &exceptions::NewException {
                kind: "unknown_order",
                dedupe_key: format!("unknown_order:{out_trade_no}:{}", facts.transaction_id),
                out_trade_no: None,
                detail: json!({
                    "out_trade_no": out_trade_no,
                    "transaction_id": facts.transaction_id,
                    "total_fee": facts.total_fee.get(),
                    "source": facts.source.as_str(),
                })
                .to_string(),
                created_at: crate::db::now(),
            },
        )?;
        return Ok(Applied::UnknownOrder);
    };
    if facts.total_fee != order.amount {
        exceptions::raise(
            conn,
            &exceptions::NewException {
                kind: "amount_mismatch",
                dedupe_key: format!("amount_mismatch:{out_trade_no}:{}", facts.transaction_id),
                out_trade_no: Some(out_trade_no.to_owned()),
                detail: json!({
                    "transaction_id": facts.transaction_id,
                    "expected_fen": order.amount.get(),
                    "reported_fen": facts.total_fee.get(),
                    "source": facts.source.as_str(),
                })
                .to_string(),
                created_at: crate::db::now(),
            },
        )?;
        return Ok(Applied::AmountMismatch { order: Box::new(order), reported: facts.total_fee });
    }
    let event = Event::PaymentConfirmed { transaction_id: facts.transaction_id.clone(), source: facts.source };
    let detail = json!({
        "transaction_id": facts.transaction_id,
        "total_fee": facts.total_fee.get(),
        "paid_at": facts.paid_at.to_rfc3339(),
    });
    let applied =
        apply_event(conn, out_trade_no, &event, Some(facts), OrderChanges::default(), facts.source.as_str(), detail)?;
    match &applied {
        Applied::Changed { transition, .. } if transition.paid_after_close => {
            exceptions::raise(
                conn,
                &exceptions::NewException {
                    kind: "paid_after_close",
                    dedupe_key: format!("paid_after_close:{out_trade_no}"),
                    out_trade_no: Some(out_trade_no.to_owned()),
                    detail: json!({
                        "transaction_id": facts.transaction_id,
                        "total_fee": facts.total_fee.get(),
                        "note": "the order was closed before the payment arrived: ship it or refund it",
                    })
                    .to_string(),
                    created_at: crate::db::now(),
                },
            )?;
        }
        Applied::Refused { rejection: Rejection::ConflictingPayment { recorded, received }, .. } => {
            exceptions::raise(
                conn,
                &exceptions::NewException {
                    kind: "conflicting_payment",
                    dedupe_key: format!("conflicting_payment:{out_trade_no}:{received}"),
                    out_trade_no: Some(out_trade_no.to_owned()),
                    detail: json!({ "recorded_transaction_id": recorded, "received_transaction_id": received })
                        .to_string(),
                    created_at: crate::db::now(),
                },
            )?;
        }
        _ => {}
    }
    Ok(applied)
}
