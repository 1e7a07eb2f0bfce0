//! Refunds: requesting one, and applying its outcome.
//!
//! A request is idempotent by its `out_refund_no`, which the staff form carries from the moment
//! the page was rendered: the refunds row is inserted and the amount reserved on the order (one
//! guarded UPDATE bounded by what was paid) in one transaction, before WeChat is asked. A second
//! submission of the same form finds the row and sends nothing, unless the row is PENDING after a
//! failed or abandoned attempt, and then it sends the very same `out_refund_no` (WeChat refunds a
//! number once).
//!
//! Outcomes (the refund reply, refundquery, the refund notify, the refund-sync job) all go
//! through [`apply_refund_outcome`]: a guarded UPDATE on the refund's state, with the order's
//! refunded or reserved amount and a timeline entry in the same transaction. Repeats are no-ops.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Payments;
use crate::db::orders::{self, Order};
use crate::db::refunds::{self, NewRefund, RefundChanges, RefundRow, RefundState};
use crate::db::{AnyConnection, DbError, DbResult, audit, events, exceptions};
use crate::domain::{Fen, OrderState};
use crate::error::AppError;
use crate::wxpay::refund::{Refund, RefundQuery, RefundRef};
use crate::wxpay::types::{OrderRef, RefundStatus, is_valid_merchant_no};
use crate::wxpay::{ErrAction, ErrCode, WxError};

/// WeChat's `refund_desc` limit, in bytes.
pub const MAX_REASON_BYTES: usize = 80;
/// A PENDING refund untouched this long has lost its sender (the request timed out or the
/// process died); it may be sent again. Longer than the client's retries of one call.
pub(crate) const SEND_STALE_AFTER: chrono::Duration = chrono::Duration::seconds(120);
/// A refund WeChat accepted is first checked (refundquery, by the refund-sync job) this long
/// after; a wallet refund has usually settled by then. Later checks back off (`jobs::refund_sync`).
pub const FIRST_CHECK_AFTER: chrono::Duration = chrono::Duration::seconds(10);

/// Who asked for an action: written to the audit log in the action's own transaction.
#[derive(Clone, Debug)]
pub struct Actor {
    pub username: String,
    pub remote_addr: Option<String>,
}

impl Actor {
    pub fn record(
        &self,
        conn: &mut AnyConnection,
        action: &str,
        out_trade_no: Option<&str>,
        target: Option<&str>,
        detail: Value,
    ) -> DbResult<()> {
        let entry =
            audit::NewAudit::by(&self.username, self.remote_addr.as_deref(), action, out_trade_no, target, detail);
        audit::record(conn, &entry)
    }
}

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
    Accepted(RefundRow),
    /// WeChat did not confirm it (SYSTEMERROR, no answer, rate limit): it stays PENDING and
    /// reserved, and may be sent again with the same number.
    Pending { refund: RefundRow, error: String },
    /// WeChat refused it for good; the reservation is released.
    Refused { refund: RefundRow, error: String },
    /// This form was submitted before and WeChat already has it: nothing was sent.
    AlreadyRequested(RefundRow),
    /// Another submission of this form is talking to WeChat right now: nothing was sent.
    InFlight(RefundRow),
}

enum Prepared {
    Send { refund: RefundRow, order: Box<Order> },
    Done(RefundRequested),
}

/// The refund-notify URL derived from `PUBLIC_BASE_URL`.
pub fn refund_notify_url(public_base_url: &str) -> String {
    format!("{}/wechat/refund-notify", public_base_url.trim_end_matches('/'))
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
                            a.record(c, "refund_refused", Some(&r.out_trade_no), Some(&r.out_refund_no), detail)
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
    async fn send_refund(&self, refund: RefundRow, order: &Order) -> RefundRequested {
        let request = Refund {
            order: match &order.transaction_id {
                Some(t) => OrderRef::TransactionId(t.clone()),
                None => OrderRef::OutTradeNo(order.out_trade_no.clone()),
            },
            out_refund_no: refund.out_refund_no.clone(),
            total_fee: order.paid.unwrap_or(order.amount),
            refund_fee: refund.amount,
            refund_desc: Some(refund.reason.clone()),
            refund_account: None,
            notify_url: Some(refund_notify_url(&self.config.public_base_url)),
        };
        let result = self.gateway.refund(&request).await;
        let no = refund.out_refund_no.clone();
        let recorded = match result {
            Ok(reply) => {
                tracing::info!(out_refund_no = %no, refund_id = %reply.refund_id, "refund accepted");
                let detail = json!({ "refund_id": reply.refund_id, "refund_fee": reply.refund_fee.get() });
                let refund_id = reply.refund_id.clone();
                let n = no.clone();
                self.db
                    .write(move |c| -> DbResult<_> {
                        let outcome = RefundOutcome {
                            status: RefundStatus::Processing,
                            refund_id: Some(&refund_id),
                            success_time: None,
                            source: "refund",
                            detail,
                        };
                        apply_refund_outcome(c, &n, &outcome)?;
                        refunds::find(c, &n)
                    })
                    .await
                    .map(|r| RefundRequested::Accepted(r.unwrap_or(refund.clone())))
            }
            Err(e) if is_definitive(&e) => {
                tracing::warn!(out_refund_no = %no, error = %e, "refund refused");
                let error = describe(&e);
                let (n, err) = (no.clone(), error.clone());
                self.db
                    .write(move |c| -> DbResult<_> {
                        refuse(c, &n, &err)?;
                        refunds::find(c, &n)
                    })
                    .await
                    .map(|r| RefundRequested::Refused { refund: r.unwrap_or(refund.clone()), error })
            }
            Err(e) => {
                tracing::warn!(out_refund_no = %no, error = %e, "refund not confirmed; it stays pending");
                let error = describe(&e);
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

    /// Asks WeChat (refundquery) about every refund of an order still waiting for an outcome and
    /// applies what it says. Returns one line per refund for the staff member.
    pub async fn sync_refunds(&self, out_trade_no: &str) -> Result<Vec<String>, AppError> {
        let no = out_trade_no.to_owned();
        let waiting = self.db.read(move |c| refunds::unsettled(c, Some(&no), 50)).await?;
        let mut lines = Vec::with_capacity(waiting.len());
        // A PENDING refund whose request is still in flight is left to that request.
        let in_flight_since = Utc::now() - SEND_STALE_AFTER;
        for refund in waiting
            .into_iter()
            .filter(|r| r.state != RefundState::Pending || r.last_error.is_some() || r.updated_at < in_flight_since)
        {
            lines.push(match self.sync_refund(&refund).await {
                Ok(line) => line,
                Err(e) => format!("退款 {} 查询失败：{}", refund.out_refund_no, describe_app(&e)),
            });
        }
        Ok(lines)
    }

    /// One refundquery, applied. (The refund-sync job calls this too.)
    pub async fn sync_refund(&self, refund: &RefundRow) -> Result<String, AppError> {
        let query = RefundQuery { by: RefundRef::OutRefundNo(refund.out_refund_no.clone()), offset: None };
        let (no, order_no) = (refund.out_refund_no.clone(), refund.out_trade_no.clone());
        match self.gateway.refund_query(&query).await {
            Ok(reply) => {
                let Some(record) = reply.refunds.into_iter().find(|r| r.out_refund_no == no) else {
                    return Err(AppError::Internal(format!("refundquery for {no} did not list it")));
                };
                let status = record.status;
                let applied = self
                    .db
                    .write(move |c| -> DbResult<_> {
                        let detail = json!({
                            "out_refund_no": no,
                            "refund_status": status.as_str(),
                            "refund_id": record.refund_id,
                            "refund_fee": record.refund_fee.get(),
                            "recv_account": record.recv_account,
                        });
                        insert_event(c, &order_no, "refund_queried", "query", &detail)?;
                        let outcome = RefundOutcome {
                            status,
                            refund_id: Some(&record.refund_id),
                            success_time: record.success_time,
                            source: "query",
                            detail,
                        };
                        apply_refund_outcome(c, &no, &outcome)
                    })
                    .await?;
                Ok(format!("退款 {} 微信支付返回 {}{}", refund.out_refund_no, status, applied.summary()))
            }
            Err(e) if e.err_code() == Some(ErrCode::REFUNDNOTEXIST) => {
                // Never accepted: a PENDING refund becomes retryable at once (same number).
                let note = "微信支付查无此退款，可用同一退款单号重试";
                self.db
                    .write(move |c| -> DbResult<_> {
                        insert_event(
                            c,
                            &order_no,
                            "refund_queried",
                            "query",
                            &json!({ "out_refund_no": no, "result": "REFUNDNOTEXIST" }),
                        )?;
                        refunds::note_error_if_pending(c, &no, note)
                    })
                    .await?;
                Ok(format!("退款 {} 微信支付查无此退款", refund.out_refund_no))
            }
            Err(e) => Err(AppError::Gateway(e)),
        }
    }
}

/// The first transaction of a request: find or create the refund row, reserve its amount, audit.
fn prepare(c: &mut AnyConnection, req: &RefundRequest, actor: &Actor) -> Result<Prepared, AppError> {
    let no = req.out_refund_no.as_str();
    if let Some(existing) = refunds::find(c, no)? {
        if existing.out_trade_no != req.out_trade_no || existing.amount != req.amount {
            return Err(AppError::Conflict(format!("退款单号 {no} 已用于另一笔退款，请刷新页面后重新填写")));
        }
        let order = orders::find(c, &existing.out_trade_no)?.ok_or(AppError::NotFound("order"))?;
        let detail = json!({ "out_refund_no": no, "amount_fen": req.amount.get(), "state": existing.state.as_str() });
        if existing.state == RefundState::Pending {
            let stale_before = crate::db::now() - SEND_STALE_AFTER;
            if refunds::claim_send(c, no, stale_before)? {
                actor.record(c, "refund_retry", Some(&existing.out_trade_no), Some(no), detail)?;
                return Ok(Prepared::Send { refund: existing, order: Box::new(order) });
            }
            actor.record(c, "refund_resubmitted", Some(&existing.out_trade_no), Some(no), detail)?;
            return Ok(Prepared::Done(RefundRequested::InFlight(existing)));
        }
        actor.record(c, "refund_resubmitted", Some(&existing.out_trade_no), Some(no), detail)?;
        return Ok(Prepared::Done(RefundRequested::AlreadyRequested(existing)));
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
        let paid = order.paid.unwrap_or(order.amount);
        let left = paid.checked_sub(order.refund_reserved).unwrap_or_default();
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
    insert_event(c, &req.out_trade_no, "refund_requested", "admin", &detail)?;
    actor.record(c, "refund", Some(&req.out_trade_no), Some(no), detail)?;
    let refund = refunds::find(c, no)?.ok_or_else(|| DbError::Corrupt(format!("refund {no} vanished")))?;
    Ok(Prepared::Send { refund, order: Box::new(order) })
}

/// A definitive refusal: PENDING → FAILED and the reservation released, once.
fn refuse(c: &mut AnyConnection, out_refund_no: &str, error: &str) -> DbResult<()> {
    let changes = RefundChanges { last_error: Some(Some(error.to_owned())), ..RefundChanges::default() };
    if refunds::update_if_state(c, out_refund_no, &[RefundState::Pending], RefundState::Failed, &changes)?
        && let Some(refund) = refunds::find(c, out_refund_no)?
    {
        release(c, &refund)?;
        let detail = json!({ "out_refund_no": out_refund_no, "amount_fen": refund.amount.get(), "error": error });
        insert_event(c, &refund.out_trade_no, "refund_failed", "refund", &detail)?;
    }
    Ok(())
}

fn release(c: &mut AnyConnection, refund: &RefundRow) -> DbResult<()> {
    if !orders::release_refund(c, &refund.out_trade_no, refund.amount.get())? {
        return Err(DbError::Corrupt(format!(
            "order {} reserves less than refund {} releases",
            refund.out_trade_no, refund.out_refund_no
        )));
    }
    Ok(())
}

/// What a verified source (refund reply, refundquery, refund notify) says about a refund.
#[derive(Clone, Debug)]
pub struct RefundOutcome<'a> {
    pub status: RefundStatus,
    pub refund_id: Option<&'a str>,
    pub success_time: Option<DateTime<Utc>>,
    /// `refund`, `query`, `notify`, `job`: where the timeline says it came from.
    pub source: &'a str,
    pub detail: Value,
}

/// The result of applying an outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundApplied {
    /// This call moved the refund from `from` to its new state.
    Changed { refund: RefundRow, from: RefundState },
    /// Nothing new (a repeated notify, a refund still processing).
    AlreadyDone(RefundRow),
    /// The outcome contradicts a final state we hold (SUCCESS for a closed refund…): nothing is
    /// changed and an exception is raised for staff.
    Conflict(RefundRow),
    /// No refund with this number.
    Unknown,
}

impl RefundApplied {
    /// A short Chinese phrase for flash messages.
    pub fn summary(&self) -> String {
        match self {
            RefundApplied::Changed { refund, from } => {
                format!("，退款状态 {} → {}", state_label(*from), state_label(refund.state))
            }
            RefundApplied::AlreadyDone(r) => format!("，退款状态未变（{}）", state_label(r.state)),
            RefundApplied::Conflict(r) => format!("，与本地状态（{}）冲突，已记录异常", state_label(r.state)),
            RefundApplied::Unknown => "，本地无此退款".into(),
        }
    }
}

/// The Chinese name of a refund state.
pub fn state_label(state: RefundState) -> &'static str {
    match state {
        RefundState::Pending => "待提交",
        RefundState::Processing => "退款处理中",
        RefundState::Success => "退款成功",
        RefundState::Change => "退款异常",
        RefundState::Closed => "退款关闭",
        RefundState::Failed => "退款失败",
    }
}

/// Applies a refund outcome inside the caller's transaction. Every change is a guarded UPDATE on
/// the refund's state, with the order's amounts and the timeline entry in the same transaction.
pub fn apply_refund_outcome(
    c: &mut AnyConnection,
    out_refund_no: &str,
    outcome: &RefundOutcome<'_>,
) -> DbResult<RefundApplied> {
    use RefundState::*;
    let (from, to): (&[RefundState], RefundState) = match outcome.status {
        RefundStatus::Processing => (&[Pending], Processing),
        // CHANGE can still end in SUCCESS when staff re-route the money in the merchant platform.
        RefundStatus::Success => (&[Pending, Processing, Change], Success),
        RefundStatus::RefundClose => (&[Pending, Processing], Closed),
        RefundStatus::Fail => (&[Pending, Processing], Failed),
        RefundStatus::Change => (&[Pending, Processing], Change),
    };
    // A lost compare-and-set means another writer moved the refund; re-read and decide again.
    for _ in 0..5 {
        let Some(refund) = refunds::find(c, out_refund_no)? else {
            return Ok(RefundApplied::Unknown);
        };
        if refund.state == to || (to == Processing && refund.state != Pending) {
            return Ok(RefundApplied::AlreadyDone(refund));
        }
        if !from.contains(&refund.state) {
            raise_conflict(c, &refund, outcome)?;
            return Ok(RefundApplied::Conflict(refund));
        }
        let changes = RefundChanges {
            refund_id: outcome.refund_id.filter(|id| !id.is_empty()).map(str::to_owned),
            last_error: matches!(to, Processing | Success).then_some(None),
            succeeded_at: (to == Success)
                .then(|| outcome.success_time.map(|t| t.naive_utc()).unwrap_or_else(crate::db::now)),
            // Accepted: refund sync checks it from now on; settled: it has nothing left to check.
            next_check_at: Some((to == Processing).then(|| crate::db::now() + FIRST_CHECK_AFTER)),
            check_attempts: (to == Processing).then_some(0),
        };
        if !refunds::update_if_state(c, out_refund_no, &[refund.state], to, &changes)? {
            continue;
        }
        match to {
            Success => {
                if !orders::add_refunded(c, &refund.out_trade_no, refund.amount.get())? {
                    return Err(DbError::Corrupt(format!(
                        "refund {out_refund_no} succeeded but order {} has no reservation for it",
                        refund.out_trade_no
                    )));
                }
            }
            Closed | Failed => release(c, &refund)?,
            Change => raise_change(c, &refund, outcome)?,
            Pending | Processing => {}
        }
        let mut detail = json!({
            "out_refund_no": out_refund_no,
            "amount_fen": refund.amount.get(),
            "from": refund.state.as_str(),
            "to": to.as_str(),
        });
        if let (Value::Object(d), Value::Object(extra)) = (&mut detail, &outcome.detail) {
            for (k, v) in extra {
                d.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let kind = match to {
            Processing => "refund_accepted",
            Success => "refund_succeeded",
            Change => "refund_change",
            Closed => "refund_closed",
            Failed | Pending => "refund_failed",
        };
        insert_event(c, &refund.out_trade_no, kind, outcome.source, &detail)?;
        let from_state = refund.state;
        let refund = refunds::find(c, out_refund_no)?.expect("the refund we just updated exists");
        return Ok(RefundApplied::Changed { refund, from: from_state });
    }
    Err(DbError::Corrupt(format!("refund {out_refund_no} kept changing under us")))
}

fn raise_change(c: &mut AnyConnection, refund: &RefundRow, outcome: &RefundOutcome<'_>) -> DbResult<()> {
    exceptions::raise(
        c,
        &exceptions::NewException {
            kind: "refund_change",
            dedupe_key: format!("refund_change:{}", refund.out_refund_no),
            out_trade_no: Some(refund.out_trade_no.clone()),
            detail: json!({
                "out_refund_no": refund.out_refund_no,
                "amount_fen": refund.amount.get(),
                "source": outcome.source,
                "note": "退款到账失败（如银行卡已注销），资金已退回商户账户，需线下处理",
            })
            .to_string(),
            created_at: crate::db::now(),
        },
    )?;
    Ok(())
}

fn raise_conflict(c: &mut AnyConnection, refund: &RefundRow, outcome: &RefundOutcome<'_>) -> DbResult<()> {
    exceptions::raise(
        c,
        &exceptions::NewException {
            kind: "refund_conflict",
            dedupe_key: format!("refund_conflict:{}:{}", refund.out_refund_no, outcome.status),
            out_trade_no: Some(refund.out_trade_no.clone()),
            detail: json!({
                "out_refund_no": refund.out_refund_no,
                "local_state": refund.state.as_str(),
                "reported_status": outcome.status.as_str(),
                "source": outcome.source,
            })
            .to_string(),
            created_at: crate::db::now(),
        },
    )?;
    Ok(())
}

pub(crate) fn insert_event(
    c: &mut AnyConnection,
    out_trade_no: &str,
    kind: &str,
    source: &str,
    detail: &Value,
) -> DbResult<()> {
    events::insert(
        c,
        &events::NewEvent {
            out_trade_no,
            kind,
            from_state: None,
            to_state: None,
            source,
            detail: detail.to_string(),
            created_at: crate::db::now(),
        },
    )
}

/// A WeChat error for staff: the code and WeChat's own description when there is one.
pub fn describe(e: &WxError) -> String {
    match e {
        WxError::Business { code, description, .. } => format!("{code}：{description}"),
        WxError::ReturnFail { return_msg } => format!("通信失败：{return_msg}"),
        WxError::Transport { .. } => format!("无法连接微信支付（{e}）"),
        other => other.to_string(),
    }
}

/// An [`AppError`] for staff, with the WeChat detail that the public message hides.
pub fn describe_app(e: &AppError) -> String {
    match e {
        AppError::Gateway(w) => describe(w),
        other => other.public_message(),
    }
}
