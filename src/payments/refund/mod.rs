//! Refunds: requesting one, and (in [`outcome`]) applying its outcome; [`sync`] asks WeChat.
//!
//! A request is idempotent by its `out_refund_no`, which the staff form carries from the moment
//! the page was rendered: the refunds row is inserted and the amount reserved on the order (one
//! guarded UPDATE bounded by what was paid) in one transaction, before WeChat is asked. A second
//! submission of the same form finds the row and sends nothing, unless the row is PENDING after a
//! failed or abandoned attempt, and then it sends the very same `out_refund_no` (WeChat refunds a
//! number once).

mod outcome;
mod sync;

use serde_json::json;

pub use outcome::{RefundApplied, RefundOutcome, apply_refund_outcome};
pub use sync::RefundSync;

use super::Payments;
use crate::db::refunds::{self, NewRefund};
use crate::db::{AnyConnection, DbError, DbResult, audit, events, orders};
use crate::domain::refund::SEND_STALE_AFTER;
use crate::domain::{Actor, AuditAction, Fen, Order, OrderState, Refund, RefundState, TimelineKind, TimelineSource};
use crate::error::{AppError, describe_wechat};
use crate::wxpay::refund::Refund as RefundMessage;
use crate::wxpay::types::{OrderRef, RefundStatus, is_valid_merchant_no};
use crate::wxpay::{ErrAction, WxError};

/// WeChat's `refund_desc` limit, in bytes.
pub const MAX_REASON_BYTES: usize = 80;
/// A refund WeChat accepted is first checked (refundquery, by the refund-sync job) this long
/// after; a wallet refund has usually settled by then. Later checks back off (`jobs::refund_sync`).
pub const FIRST_CHECK_AFTER: chrono::Duration = chrono::Duration::seconds(10);

/// A staff member's refund request, as the form carries it.
#[derive(Clone, Debug)]
pub struct RefundRequest {
    pub out_trade_no: String,
    pub out_refund_no: String,
    pub amount: Fen,
    pub reason: String,
}

/// What became of a refund request.
#[derive(Clone, Debug)]
pub enum RefundRequested {
    /// WeChat accepted it (or it already settled): the outcome follows by notify or query.
    Accepted(Refund),
    /// WeChat did not confirm it (SYSTEMERROR, no answer, rate limit): it stays PENDING and
    /// reserved, and may be sent again with the same number.
    Pending { refund: Refund, error: String },
    /// WeChat refused it for good; the reservation is released.
    Refused { refund: Refund, error: String },
    /// This form was submitted before and WeChat already has it: nothing was sent.
    AlreadyRequested(Refund),
    /// Another submission of this form is talking to WeChat right now: nothing was sent.
    InFlight(Refund),
}

enum Prepared {
    Send { refund: Refund, order: Box<Order> },
    Done(RefundRequested),
}

/// Checks a request before anything is written.
pub fn validate(req: &RefundRequest) -> Result<(), AppError> {
    if !is_valid_merchant_no(&req.out_refund_no, 64) {
        return Err(AppError::invalid("out_refund_no", "退款单号无效，请刷新页面后重试"));
    }
    if !req.amount.is_positive() {
        return Err(AppError::invalid("amount", "退款金额必须大于 0"));
    }
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(AppError::invalid("reason", "请填写退款原因"));
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(AppError::invalid(
            "reason",
            format!("退款原因最多 {MAX_REASON_BYTES} 字节（约 26 个汉字），当前 {} 字节", reason.len()),
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err(AppError::invalid("reason", "退款原因不能包含控制字符"));
    }
    Ok(())
}

/// A business error after which this `out_refund_no` will never be refunded: the reservation can
/// be released. Anything else (no answer, SYSTEMERROR, a garbled or unverifiable reply, a rate
/// limit) may still have been, or may yet be, accepted, so the refund stays PENDING and reserved.
fn is_definitive(e: &WxError) -> bool {
    match e {
        WxError::InvalidRequest(_) | WxError::CertificateRequired | WxError::ReturnFail { .. } => true,
        WxError::Business { code, .. } => !matches!(code.action(), ErrAction::RetrySame | ErrAction::RetryLater),
        _ => false,
    }
}

impl Payments {
    /// Requests a refund (or re-sends a PENDING one) for a staff member.
    pub async fn request_refund(&self, req: RefundRequest, actor: Actor) -> Result<RefundRequested, AppError> {
        let req = RefundRequest { reason: req.reason.trim().to_owned(), ..req };
        validate(&req)?;
        // A concurrent submission of the same form may insert the row first; on PostgreSQL our
        // insert then fails as a unique violation, and the second round finds that row.
        let mut attempt = 0;
        let prepared = loop {
            attempt += 1;
            let (r, a) = (req.clone(), actor.clone());
            match self.db.write(move |c| prepare(c, &r, &a)).await {
                Err(AppError::Db(e)) if e.is_unique_violation() && attempt < 3 => continue,
                Err(AppError::Conflict(why)) => {
                    // The refusal rolled the request back; the attempt itself is still audited.
                    let (r, a, detail) =
                        (req.clone(), actor.clone(), json!({ "refused": why, "amount_fen": req.amount.get() }));
                    self.db
                        .write(move |c| {
                            let (no, target) = (Some(r.out_trade_no.as_str()), Some(r.out_refund_no.as_str()));
                            audit::record(c, &a, AuditAction::RefundRefused, no, target, detail)
                        })
                        .await?;
                    return Err(AppError::Conflict(why));
                }
                other => break other?,
            }
        };
        match prepared {
            Prepared::Done(done) => Ok(done),
            Prepared::Send { refund, order } => Ok(self.send_refund(refund, &order).await),
        }
    }

    /// Re-sends a PENDING refund of `out_trade_no` with its stored number, amount and reason.
    pub async fn retry_refund(
        &self,
        out_trade_no: &str,
        out_refund_no: &str,
        actor: Actor,
    ) -> Result<RefundRequested, AppError> {
        let no = out_refund_no.to_owned();
        let refund = self
            .db
            .read(move |c| refunds::find(c, &no))
            .await?
            .filter(|r| r.out_trade_no == out_trade_no)
            .ok_or(AppError::NotFound("refund"))?;
        let req = RefundRequest {
            out_trade_no: refund.out_trade_no,
            out_refund_no: refund.out_refund_no,
            amount: refund.amount,
            reason: refund.reason,
        };
        self.request_refund(req, actor).await
    }

    /// Sends a prepared refund to WeChat and records what it said.
    async fn send_refund(&self, refund: Refund, order: &Order) -> RefundRequested {
        let request = RefundMessage {
            order: match &order.transaction_id {
                Some(t) => OrderRef::TransactionId(t.clone()),
                None => OrderRef::OutTradeNo(order.out_trade_no.clone()),
            },
            out_refund_no: refund.out_refund_no.clone(),
            total_fee: order.paid.unwrap_or(order.amount),
            refund_fee: refund.amount,
            refund_desc: Some(refund.reason.clone()),
            refund_account: None,
            notify_url: Some(self.config.refund_notify_url()),
        };
        let result = self.gateway.refund(&request).await;
        let no = refund.out_refund_no.clone();
        let recorded = match result {
            Ok(reply) => {
                tracing::info!(out_refund_no = %no, refund_id = %reply.refund_id, "refund accepted");
                let detail = json!({ "refund_id": reply.refund_id, "refund_fee": reply.refund_fee.get() });
                let (refund_id, n, outbox) = (reply.refund_id.clone(), no.clone(), self.outbox.clone());
                self.db
                    .write(move |c| -> DbResult<_> {
                        let outcome = RefundOutcome {
                            status: RefundStatus::Processing,
                            refund_id: Some(&refund_id),
                            success_time: None,
                            source: TimelineSource::Refund,
                            detail,
                        };
                        apply_refund_outcome(c, &n, &outcome, &outbox)?;
                        refunds::find(c, &n)
                    })
                    .await
                    .map(|r| RefundRequested::Accepted(r.unwrap_or(refund.clone())))
            }
            Err(e) if is_definitive(&e) => {
                tracing::warn!(out_refund_no = %no, error = %e, "refund refused");
                let error = describe_wechat(&e);
                let (n, err, outbox) = (no.clone(), error.clone(), self.outbox.clone());
                self.db
                    .write(move |c| -> DbResult<_> {
                        outcome::refuse(c, &n, &err, &outbox)?;
                        refunds::find(c, &n)
                    })
                    .await
                    .map(|r| RefundRequested::Refused { refund: r.unwrap_or(refund.clone()), error })
            }
            Err(e) => {
                tracing::warn!(out_refund_no = %no, error = %e, "refund not confirmed; it stays pending");
                let error = describe_wechat(&e);
                let (n, err) = (no.clone(), error.clone());
                self.db
                    .write(move |c| -> DbResult<_> {
                        refunds::note_error_if_pending(c, &n, &err)?;
                        refunds::find(c, &n)
                    })
                    .await
                    .map(|r| RefundRequested::Pending { refund: r.unwrap_or(refund.clone()), error })
            }
        };
        recorded.unwrap_or_else(|e| {
            // The row stays PENDING (reserved, retryable after SEND_STALE_AFTER); nothing is lost.
            tracing::error!(out_refund_no = %no, error = %e, "refund result could not be recorded");
            RefundRequested::Pending { refund, error: format!("结果未能保存：{e}") }
        })
    }
}

/// The first transaction of a request: find or create the refund row, reserve its amount, audit.
fn prepare(c: &mut AnyConnection, req: &RefundRequest, actor: &Actor) -> Result<Prepared, AppError> {
    let no = req.out_refund_no.as_str();
    if let Some(existing) = refunds::find(c, no)? {
        return resubmitted(c, existing, req, actor);
    }
    let order = orders::find(c, &req.out_trade_no)?.ok_or(AppError::NotFound("order"))?;
    if order.state != OrderState::Paid {
        return Err(AppError::Conflict("只能对已支付的订单退款".into()));
    }
    let now = crate::db::now();
    // The row first: a concurrent twin blocks on its unique key here, before reserving anything.
    refunds::insert(
        c,
        &NewRefund {
            out_refund_no: no.to_owned(),
            out_trade_no: req.out_trade_no.clone(),
            amount_fen: req.amount.get(),
            reason: req.reason.clone(),
            state: RefundState::Pending.as_str().to_owned(),
            requested_by: actor.username.clone(),
            created_at: now,
            updated_at: now,
        },
    )?;
    if !orders::reserve_refund(c, &req.out_trade_no, req.amount.get())? {
        // Returning an error rolls the insert back too.
        let (paid, left) = (order.paid.unwrap_or(order.amount), order.refundable());
        return Err(AppError::Conflict(format!(
            "退款金额 {} 元超过可退金额 {} 元（已支付 {} 元，已退或退款中 {} 元），未向微信支付发起退款",
            req.amount.to_yuan_string(),
            left.to_yuan_string(),
            paid.to_yuan_string(),
            order.refund_reserved.to_yuan_string(),
        )));
    }
    let detail = json!({
        "out_refund_no": no,
        "amount_fen": req.amount.get(),
        "reason": req.reason,
        "by": actor.username,
    });
    let (kind, source) = (TimelineKind::RefundRequested, TimelineSource::Admin);
    events::insert(c, &req.out_trade_no, kind, source, (None, None), &detail)?;
    audit::record(c, actor, AuditAction::Refund, Some(&req.out_trade_no), Some(no), detail)?;
    let refund = refunds::find(c, no)?.ok_or_else(|| DbError::Corrupt(format!("refund {no} vanished")))?;
    Ok(Prepared::Send { refund, order: Box::new(order) })
}

/// A form submitted again: the same refund, re-sent only when its last send failed or went silent.
fn resubmitted(
    c: &mut AnyConnection,
    existing: Refund,
    req: &RefundRequest,
    actor: &Actor,
) -> Result<Prepared, AppError> {
    let no = req.out_refund_no.as_str();
    if existing.out_trade_no != req.out_trade_no || existing.amount != req.amount {
        return Err(AppError::Conflict(format!("退款单号 {no} 已用于另一笔退款，请刷新页面后重新填写")));
    }
    let order = orders::find(c, &existing.out_trade_no)?.ok_or(AppError::NotFound("order"))?;
    let detail = json!({ "out_refund_no": no, "amount_fen": req.amount.get(), "state": existing.state.as_str() });
    if existing.state == RefundState::Pending {
        let stale_before = crate::db::now() - SEND_STALE_AFTER;
        if refunds::claim_send(c, no, stale_before)? {
            let action = AuditAction::RefundRetry;
            audit::record(c, actor, action, Some(&existing.out_trade_no), Some(no), detail)?;
            return Ok(Prepared::Send { refund: existing, order: Box::new(order) });
        }
        let action = AuditAction::RefundResubmitted;
        audit::record(c, actor, action, Some(&existing.out_trade_no), Some(no), detail)?;
        return Ok(Prepared::Done(RefundRequested::InFlight(existing)));
    }
    let action = AuditAction::RefundResubmitted;
    audit::record(c, actor, action, Some(&existing.out_trade_no), Some(no), detail)?;
    Ok(Prepared::Done(RefundRequested::AlreadyRequested(existing)))
}
