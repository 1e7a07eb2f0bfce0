//! Closing an order: locally when it never reached WeChat, otherwise with `closeorder`, never
//! sooner than WeChat's 5-minute minimum after the prepay. ORDERPAID takes the paid path (a
//! signed orderquery, applied through the shared transition); ORDERCLOSED and ORDERNOTEXIST
//! mean there is nothing left to close at WeChat. Staff use it now, the expiry job later.

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::Payments;
use super::apply::{Applied, apply_event};
use super::refund::{Actor, describe, insert_event};
use crate::db::orders::{Order, OrderChanges};
use crate::db::{AnyConnection, DbResult};
use crate::domain::{Event, OrderState};
use crate::error::AppError;
use crate::wxpay::order_query::CloseOrder;
use crate::wxpay::{ErrCode, WxError};

/// WeChat refuses `closeorder` this soon after `unifiedorder`.
pub const CLOSE_MIN_AGE: Duration = Duration::minutes(5);

/// What became of a close.
#[derive(Debug)]
pub enum CloseOutcome {
    /// Closed now; `at_wechat` tells whether WeChat was involved.
    Closed { order: Box<Order>, at_wechat: bool },
    /// It was closed already.
    AlreadyClosed(Box<Order>),
    /// It is paid (WeChat said ORDERPAID and the query confirmed it, or it was paid already).
    Paid(Box<Order>),
    /// The prepay is younger than [`CLOSE_MIN_AGE`]: WeChat was not asked.
    TooEarly { order: Box<Order>, wait: Duration },
    /// WeChat did not close it (SYSTEMERROR, TRADE_STATE_ERROR, no answer…); nothing changed.
    Failed { order: Box<Order>, error: String },
}

impl CloseOutcome {
    /// A result line for staff.
    pub fn message(&self) -> String {
        match self {
            CloseOutcome::Closed { at_wechat: true, .. } => "已在微信支付关闭订单，订单已标记为已关闭".into(),
            CloseOutcome::Closed { at_wechat: false, .. } => "订单未在微信支付下单，已在本地关闭".into(),
            CloseOutcome::AlreadyClosed(_) => "订单已经是关闭状态".into(),
            CloseOutcome::Paid(_) => "微信支付显示订单已支付，不能关闭；订单已标记为已支付".into(),
            CloseOutcome::TooEarly { wait, .. } => format!(
                "微信支付要求下单 5 分钟后才能关单，请约 {} 秒后再试（未调用微信支付）",
                wait.num_seconds().max(1)
            ),
            CloseOutcome::Failed { error, .. } => format!("关单失败，订单未改变：{error}"),
        }
    }

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
        let outcome = match order.state {
            OrderState::Paid => CloseOutcome::Paid(Box::new(order)),
            OrderState::Closed => CloseOutcome::AlreadyClosed(Box::new(order)),
            OrderState::Created | OrderState::Paying | OrderState::PayError => match order.prepay_id {
                // No prepay was ever handed out, so WeChat has nothing the shopper could pay.
                None => {
                    let detail = json!({ "reason": "never reached WeChat" });
                    return self.apply_closed(out_trade_no, false, detail, actor).await;
                }
                Some(_) => {
                    let since = order.prepay_created_at.unwrap_or(order.created_at);
                    let age = Utc::now() - since;
                    if age < CLOSE_MIN_AGE {
                        CloseOutcome::TooEarly { wait: CLOSE_MIN_AGE - age, order: Box::new(order) }
                    } else {
                        return self.close_at_wechat(order, actor).await;
                    }
                }
            },
        };
        self.record_attempt(out_trade_no, &outcome, None, actor).await?;
        Ok(outcome)
    }

    async fn close_at_wechat(&self, order: Order, actor: Option<Actor>) -> Result<CloseOutcome, AppError> {
        let no = order.out_trade_no.clone();
        let result = self.gateway.close_order(&CloseOrder { out_trade_no: no.clone() }).await;
        match result {
            Ok(()) => self.apply_closed(&no, true, json!({ "closeorder": "OK" }), actor).await,
            Err(e) => match e.err_code() {
                Some(code @ (ErrCode::ORDERCLOSED | ErrCode::ORDERNOTEXIST)) => {
                    self.apply_closed(&no, true, json!({ "closeorder": code.as_str() }), actor).await
                }
                Some(ErrCode::ORDERPAID) => {
                    // Never trust ORDERPAID alone: a signed orderquery decides, through the
                    // shared transition.
                    let order = match self.refresh_from_wechat(&no, true).await {
                        Ok(o) => o,
                        Err(q) => {
                            let outcome = CloseOutcome::Failed {
                                error: format!("微信支付返回 ORDERPAID，但查询订单失败：{q}"),
                                order: Box::new(order),
                            };
                            self.record_attempt(&no, &outcome, Some(&e), actor).await?;
                            return Ok(outcome);
                        }
                    };
                    let outcome = if order.state == OrderState::Paid {
                        CloseOutcome::Paid(Box::new(order))
                    } else {
                        CloseOutcome::Failed {
                            error: format!("微信支付返回 ORDERPAID，查询结果为 {}", order.state),
                            order: Box::new(order),
                        }
                    };
                    self.record_attempt(&no, &outcome, Some(&e), actor).await?;
                    Ok(outcome)
                }
                _ => {
                    tracing::warn!(out_trade_no = %no, error = %e, "closeorder failed");
                    let outcome = CloseOutcome::Failed { error: describe(&e), order: Box::new(order) };
                    self.record_attempt(&no, &outcome, Some(&e), actor).await?;
                    Ok(outcome)
                }
            },
        }
    }

    /// Applies `Closed` through the shared transition, auditing in the same transaction.
    async fn apply_closed(
        &self,
        out_trade_no: &str,
        at_wechat: bool,
        mut detail: Value,
        actor: Option<Actor>,
    ) -> Result<CloseOutcome, AppError> {
        let no = out_trade_no.to_owned();
        detail["by"] = json!(actor.as_ref().map(|a| a.username.clone()));
        let applied = self
            .db
            .write(move |c| -> DbResult<Applied> {
                let applied =
                    apply_event(c, &no, &Event::Closed, None, OrderChanges::default(), "close", detail.clone())?;
                if let Some(actor) = &actor {
                    let result = match &applied {
                        Applied::Changed { .. } => "closed",
                        Applied::AlreadyDone { .. } => "already_closed",
                        _ => "refused",
                    };
                    detail["result"] = json!(result);
                    actor.record(c, "close", Some(&no), None, detail)?;
                }
                Ok(applied)
            })
            .await?;
        Ok(match applied {
            Applied::Changed { order, .. } => CloseOutcome::Closed { order, at_wechat },
            Applied::AlreadyDone { order } => CloseOutcome::AlreadyClosed(order),
            // Paid while we were closing: the payment wins, the transition refuses the close.
            Applied::Refused { order, .. } | Applied::AmountMismatch { order, .. } => match order.state {
                OrderState::Paid => CloseOutcome::Paid(order),
                _ => CloseOutcome::Failed { error: format!("订单状态为 {}，不能关闭", order.state), order },
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
                    insert_event(c, &no, "close_attempted", "close", &detail)?;
                }
                if let Some(actor) = &actor {
                    actor.record(c, "close", Some(&no), None, detail)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }
}
