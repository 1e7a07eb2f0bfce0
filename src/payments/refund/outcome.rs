//! Applying a refund's outcome, whoever reports it (WeChat's reply to the request, refundquery,
//! the refund notify, a definitive refusal): the domain's refund transition decides, a guarded
//! UPDATE on the refund's state applies it, and the order's amounts, the timeline entry, any
//! exception and the webhook (`order.refunded` on SUCCESS, `refund.failed` on FAILED or CLOSED)
//! are written in the same transaction. Repeats are no-ops.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::FIRST_CHECK_AFTER;
use crate::db::exceptions::{self, NewException};
use crate::db::refunds::{self, RefundChanges};
use crate::db::{AnyConnection, DbError, DbResult, events, orders};
use crate::domain::refund::{RefundEvent, RefundRejection, RefundTransition, ReservationEffect, transition};
use crate::domain::{ExceptionKind, Refund, RefundState, TimelineKind, TimelineSource};
use crate::payments::outbox::WebhookOutbox;
use crate::wxpay::types::RefundStatus;

/// What a verified source (refund reply, refundquery, refund notify) says about a refund.
#[derive(Clone, Debug)]
pub struct RefundOutcome<'a> {
    pub status: RefundStatus,
    pub refund_id: Option<&'a str>,
    pub success_time: Option<DateTime<Utc>>,
    /// Where the timeline says it came from.
    pub source: TimelineSource,
    pub detail: Value,
}

/// The result of applying an outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundApplied {
    /// This call moved the refund from `from` to its new state.
    Changed { refund: Refund, from: RefundState },
    /// Nothing new (a repeated notify, a refund still processing).
    AlreadyDone(Refund),
    /// The outcome contradicts a final state we hold (SUCCESS for a closed refund…): nothing is
    /// changed and an exception is raised for staff.
    Conflict(Refund),
    /// No refund with this number.
    Unknown,
}

/// The refund event a WeChat status reports.
fn event_of(status: RefundStatus) -> RefundEvent {
    match status {
        RefundStatus::Processing => RefundEvent::Accepted,
        RefundStatus::Success => RefundEvent::Succeeded,
        RefundStatus::RefundClose => RefundEvent::Closed,
        RefundStatus::Fail => RefundEvent::Failed,
        RefundStatus::Change => RefundEvent::Changed,
    }
}

/// Applies a refund outcome inside the caller's transaction.
pub fn apply_refund_outcome(
    c: &mut AnyConnection,
    out_refund_no: &str,
    outcome: &RefundOutcome<'_>,
    outbox: &WebhookOutbox,
) -> DbResult<RefundApplied> {
    // A lost compare-and-set means another writer moved the refund; re-read and decide again.
    for _ in 0..5 {
        let Some(refund) = refunds::find(c, out_refund_no)? else {
            return Ok(RefundApplied::Unknown);
        };
        let t = match transition(refund.state, event_of(outcome.status)) {
            Ok(t) => t,
            Err(RefundRejection::Conflict) => {
                raise_conflict(c, &refund, outcome)?;
                return Ok(RefundApplied::Conflict(refund));
            }
            Err(RefundRejection::AlreadyDone | RefundRejection::Superseded) => {
                return Ok(RefundApplied::AlreadyDone(refund));
            }
        };
        let to = t.to;
        let changes = RefundChanges {
            refund_id: outcome.refund_id.filter(|id| !id.is_empty()).map(str::to_owned),
            last_error: matches!(to, RefundState::Processing | RefundState::Success).then_some(None),
            succeeded_at: (to == RefundState::Success)
                .then(|| outcome.success_time.map(|t| t.naive_utc()).unwrap_or_else(crate::db::now)),
            // Accepted: refund sync checks it from now on; settled: it has nothing left to check.
            next_check_at: Some((to == RefundState::Processing).then(|| crate::db::now() + FIRST_CHECK_AFTER)),
            check_attempts: (to == RefundState::Processing).then_some(0),
        };
        if !refunds::update_if_state(c, out_refund_no, &[t.from], to, &changes)? {
            continue;
        }
        let refund_now = refunds::find(c, out_refund_no)?.expect("the refund we just updated exists");
        apply_effect(c, &t, &refund_now, outcome, outbox)?;
        let mut detail = json!({
            "out_refund_no": out_refund_no,
            "amount_fen": refund.amount.get(),
            "from": t.from.as_str(),
            "to": to.as_str(),
        });
        if let (Value::Object(d), Value::Object(extra)) = (&mut detail, &outcome.detail) {
            for (k, v) in extra {
                d.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        events::insert(c, &refund.out_trade_no, t.timeline_kind(), outcome.source, (None, None), &detail)?;
        return Ok(RefundApplied::Changed { refund: refund_now, from: t.from });
    }
    Err(DbError::Corrupt(format!("refund {out_refund_no} kept changing under us")))
}

/// What the change does to the order: count the money, release it, or raise it for staff.
fn apply_effect(
    c: &mut AnyConnection,
    t: &RefundTransition,
    refund: &Refund,
    outcome: &RefundOutcome<'_>,
    outbox: &WebhookOutbox,
) -> DbResult<()> {
    match t.effect {
        ReservationEffect::CountRefunded => {
            if !orders::add_refunded(c, &refund.out_trade_no, refund.amount.get())? {
                return Err(DbError::Corrupt(format!(
                    "refund {} succeeded but order {} has no reservation for it",
                    refund.out_refund_no, refund.out_trade_no
                )));
            }
            // The order is read again (it now counts the refund) only when there is an event to write.
            if outbox.is_on()
                && let Some(order) = orders::find(c, &refund.out_trade_no)?
            {
                outbox.order_refunded(c, &order, refund)?;
            }
            Ok(())
        }
        ReservationEffect::Release => release(c, refund, outbox),
        ReservationEffect::KeepAndRaise => raise_change(c, refund, outcome),
        ReservationEffect::Keep => Ok(()),
    }
}

/// A definitive refusal of our request: PENDING → FAILED, the reservation released and
/// `refund.failed` written, once.
pub(super) fn refuse(c: &mut AnyConnection, out_refund_no: &str, error: &str, outbox: &WebhookOutbox) -> DbResult<()> {
    let Some(refund) = refunds::find(c, out_refund_no)? else { return Ok(()) };
    let Ok(t) = transition(refund.state, RefundEvent::SendRefused) else { return Ok(()) };
    let changes = RefundChanges { last_error: Some(Some(error.to_owned())), ..RefundChanges::default() };
    if refunds::update_if_state(c, out_refund_no, &[t.from], t.to, &changes)? {
        let refund_now = refunds::find(c, out_refund_no)?.expect("the refund we just updated exists");
        release(c, &refund_now, outbox)?;
        let detail = json!({ "out_refund_no": out_refund_no, "amount_fen": refund.amount.get(), "error": error });
        let source = TimelineSource::Refund;
        events::insert(c, &refund.out_trade_no, TimelineKind::RefundFailed, source, (None, None), &detail)?;
    }
    Ok(())
}

/// Nothing was paid (FAILED or CLOSED): gives the reservation back and announces
/// `refund.failed`. `refund` is read after its change.
fn release(c: &mut AnyConnection, refund: &Refund, outbox: &WebhookOutbox) -> DbResult<()> {
    if !orders::release_refund(c, &refund.out_trade_no, refund.amount.get())? {
        return Err(DbError::Corrupt(format!(
            "order {} reserves less than refund {} releases",
            refund.out_trade_no, refund.out_refund_no
        )));
    }
    // The order is read again (its reservation released) only when there is an event to write.
    if outbox.is_on()
        && let Some(order) = orders::find(c, &refund.out_trade_no)?
    {
        outbox.refund_failed(c, &order, refund)?;
    }
    Ok(())
}

fn raise_change(c: &mut AnyConnection, refund: &Refund, outcome: &RefundOutcome<'_>) -> DbResult<()> {
    let exception = NewException {
        kind: ExceptionKind::RefundChange,
        dedupe_key: format!("refund_change:{}", refund.out_refund_no),
        out_trade_no: Some(refund.out_trade_no.clone()),
        detail: json!({
            "out_refund_no": refund.out_refund_no,
            "amount_fen": refund.amount.get(),
            "source": outcome.source.as_str(),
            "note": "退款到账失败（如银行卡已注销），资金已退回商户账户，需线下处理",
        }),
    };
    exceptions::raise(c, &exception)?;
    Ok(())
}

fn raise_conflict(c: &mut AnyConnection, refund: &Refund, outcome: &RefundOutcome<'_>) -> DbResult<()> {
    let exception = NewException {
        kind: ExceptionKind::RefundConflict,
        dedupe_key: format!("refund_conflict:{}:{}", refund.out_refund_no, outcome.status),
        out_trade_no: Some(refund.out_trade_no.clone()),
        detail: json!({
            "out_refund_no": refund.out_refund_no,
            "local_state": refund.state.as_str(),
            "reported_status": outcome.status.as_str(),
            "source": outcome.source.as_str(),
        }),
    };
    exceptions::raise(c, &exception)?;
    Ok(())
}
