//! Closing an order: locally when it never reached WeChat, otherwise with `closeorder`, never
//! sooner than WeChat's 5-minute minimum after the prepay (`Order::close_path`). ORDERPAID takes
//! the paid path (a signed orderquery, applied through the shared transition); ORDERCLOSED and
//! ORDERNOTEXIST mean there is nothing left to close at WeChat. Staff and the expirer use it.

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::Payments;
use super::apply::{Applied, Change, apply_change};
use crate::db::{AnyConnection, DbResult, audit, events};
use crate::domain::{Actor, AuditAction, ClosePath, Order, OrderState, TimelineKind, TimelineSource};
use crate::error::{AppError, describe_wechat as describe};
use crate::wxpay::order_query::CloseOrder;
use crate::wxpay::{ErrCode, WxError};

/// What became of a close.
#[derive(Debug)]
pub enum CloseOutcome {
    /// Closed now; `at_wechat` tells whether WeChat was involved.
    Closed { order: Box<Order>, at_wechat: bool },
    /// It was closed already.
    AlreadyClosed(Box<Order>),
    /// It is paid (WeChat said ORDERPAID and the query confirmed it, or it was paid already).
    Paid(Box<Order>),
    /// The prepay is younger than WeChat's minimum: WeChat was not asked.
    TooEarly { order: Box<Order>, wait: Duration },
    /// WeChat did not close it (SYSTEMERROR, TRADE_STATE_ERROR, no answer…); nothing changed.
    Failed { order: Box<Order>, why: CloseFailure },
}

/// Why a close changed nothing.
#[derive(Debug)]
pub enum CloseFailure {
    /// WeChat refused or could not be reached; its error as staff read it.
    Wechat(String),
    /// WeChat said ORDERPAID but the confirming query failed.
    PaidButQueryFailed(String),
    /// WeChat said ORDERPAID but the query shows this state.
    PaidButQueryShows(OrderState),
    /// The order moved to a state that cannot be closed meanwhile.
    NotClosable(OrderState),
}

impl CloseOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, CloseOutcome::Closed { .. } | CloseOutcome::AlreadyClosed(_))
    }

    fn label(&self) -> &'static str {
        match self {
            CloseOutcome::Closed { at_wechat: true, .. } => "closed_at_wechat",
            CloseOutcome::Closed { at_wechat: false, .. } => "closed_locally",
            CloseOutcome::AlreadyClosed(_) => "already_closed",
            CloseOutcome::Paid(_) => "paid",
            CloseOutcome::TooEarly { .. } => "too_early",
            CloseOutcome::Failed { .. } => "failed",
        }
    }
}

impl Payments {
    /// Closes an order. `actor` is the staff member, or `None` for a job; the audit row is
    /// written in the transaction that records the result.
    pub async fn close_order(&self, out_trade_no: &str, actor: Option<Actor>) -> Result<CloseOutcome, AppError> {
        let order = self.load(out_trade_no).await?;
        let outcome = match order.close_path(Utc::now()) {
            ClosePath::Paid => CloseOutcome::Paid(Box::new(order)),
            ClosePath::AlreadyClosed => CloseOutcome::AlreadyClosed(Box::new(order)),
            ClosePath::Locally => {
                let detail = json!({ "reason": "never reached WeChat" });
                return self.apply_closed(out_trade_no, false, detail, actor).await;
            }
            ClosePath::TooEarly { wait } => CloseOutcome::TooEarly { wait, order: Box::new(order) },
            ClosePath::AtWechat => return self.close_at_wechat(order, actor).await,
        };
        self.record_attempt(out_trade_no, &outcome, None, actor).await?;
        Ok(outcome)
    }

    async fn close_at_wechat(&self, order: Order, actor: Option<Actor>) -> Result<CloseOutcome, AppError> {
        let no = order.out_trade_no.clone();
        let e = match self.gateway.close_order(&CloseOrder { out_trade_no: no.clone() }).await {
            Ok(()) => return self.apply_closed(&no, true, json!({ "closeorder": "OK" }), actor).await,
            Err(e) => e,
        };
        let outcome = match e.err_code() {
            Some(code @ (ErrCode::ORDERCLOSED | ErrCode::ORDERNOTEXIST)) => {
                return self.apply_closed(&no, true, json!({ "closeorder": code.as_str() }), actor).await;
            }
            // Never trust ORDERPAID alone: a signed orderquery decides, through the shared
            // transition.
            Some(ErrCode::ORDERPAID) => match self.refresh_from_wechat(&no, true).await {
                Ok(r) if r.order.state == OrderState::Paid => CloseOutcome::Paid(Box::new(r.order)),
                Ok(r) => {
                    let why = CloseFailure::PaidButQueryShows(r.order.state);
                    CloseOutcome::Failed { why, order: Box::new(r.order) }
                }
                Err(q) => CloseOutcome::Failed {
                    why: CloseFailure::PaidButQueryFailed(q.to_string()),
                    order: Box::new(order),
                },
            },
            _ => {
                tracing::warn!(out_trade_no = %no, error = %e, "closeorder failed");
                CloseOutcome::Failed { why: CloseFailure::Wechat(describe(&e)), order: Box::new(order) }
            }
        };
        self.record_attempt(&no, &outcome, Some(&e), actor).await?;
        Ok(outcome)
    }

    /// Applies `Closed` through the shared transition, auditing in the same transaction.
    async fn apply_closed(
        &self,
        out_trade_no: &str,
        at_wechat: bool,
        mut detail: Value,
        actor: Option<Actor>,
    ) -> Result<CloseOutcome, AppError> {
        let (no, outbox) = (out_trade_no.to_owned(), self.outbox.clone());
        detail["by"] = json!(actor.as_ref().map(|a| a.username.clone()));
        let applied = self
            .db
            .write(move |c| -> DbResult<Applied> {
                let applied = apply_change(c, &no, Change::Closed, TimelineSource::Close, detail.clone(), &outbox)?;
                if let Some(actor) = &actor {
                    let result = match &applied {
                        Applied::Changed { .. } => "closed",
                        Applied::AlreadyDone { .. } => "already_closed",
                        _ => "refused",
                    };
                    detail["result"] = json!(result);
                    audit::record(c, actor, AuditAction::Close, Some(&no), None, detail)?;
                }
                Ok(applied)
            })
            .await?;
        Ok(match applied {
            Applied::Changed { order, .. } => CloseOutcome::Closed { order, at_wechat },
            Applied::AlreadyDone { order } => CloseOutcome::AlreadyClosed(order),
            // Paid while we were closing: the payment wins, the transition refuses the close.
            Applied::Refused { order, .. } => match order.state {
                OrderState::Paid => CloseOutcome::Paid(order),
                state => CloseOutcome::Failed { why: CloseFailure::NotClosable(state), order },
            },
            Applied::UnknownOrder => return Err(AppError::NotFound("order")),
        })
    }

    /// Records a close that changed nothing here: a timeline entry when WeChat was asked, and
    /// the audit row when a person asked.
    async fn record_attempt(
        &self,
        out_trade_no: &str,
        outcome: &CloseOutcome,
        error: Option<&WxError>,
        actor: Option<Actor>,
    ) -> Result<(), AppError> {
        let no = out_trade_no.to_owned();
        let detail = json!({
            "result": outcome.label(),
            "err_code": error.and_then(|e| e.err_code()).map(|c| c.as_str().to_owned()),
            "error": error.map(describe),
            "by": actor.as_ref().map(|a| a.username.clone()),
        });
        let asked_wechat = error.is_some();
        self.db
            .write(move |c: &mut AnyConnection| -> DbResult<()> {
                if asked_wechat {
                    let (kind, source) = (TimelineKind::CloseAttempted, TimelineSource::Close);
                    events::insert(c, &no, kind, source, (None, None), &detail)?;
                }
                if let Some(actor) = &actor {
                    audit::record(c, actor, AuditAction::Close, Some(&no), None, detail)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }
}
