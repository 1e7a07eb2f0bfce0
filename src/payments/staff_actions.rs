//! What staff do to the money's records from the console, each one use case with its audit row
//! in the same transaction: re-query an order (and its unsettled refunds), resolve an exception,
//! re-send a webhook, re-process a stored notify, export the order list.

use serde_json::{Value, json};

use super::Payments;
use super::notify_v3::Delivery;
use super::query::{QueryAnswer, Refreshed};
use super::refund::RefundSync;
use crate::db::{DbError, audit, exceptions, notify_log, webhooks};
use crate::domain::webhook::Resend;
use crate::domain::{Actor, AuditAction, NotifyKind, Order};
use crate::error::AppError;
use crate::wxpay::notify::SUCCESS_REPLY;
use crate::wxpay::v3::verify::SignedHeaders;

/// What a staff re-query found.
#[derive(Debug)]
pub struct Requeried {
    /// The order before the query.
    pub before: Order,
    /// The order query: WeChat's answer and the order after it, or why it failed.
    pub order: Result<Refreshed, AppError>,
    /// One result per unsettled refund, or why they could not be listed.
    pub refunds: Result<Vec<RefundSync>, AppError>,
}

/// What re-processing a stored notify did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reprocessed {
    /// Fed through the live handler again; `accepted` when it answered SUCCESS.
    Done { accepted: bool },
    /// The stored delivery is of a kind we cannot handle.
    UnknownKind(String),
}

impl Payments {
    /// Asks WeChat about an order (forced) and its unsettled refunds, applies what it says, and
    /// audits what was found.
    pub async fn requery(&self, out_trade_no: &str, actor: &Actor) -> Result<Requeried, AppError> {
        let before = self.load(out_trade_no).await?;
        let order = self.refresh_from_wechat(out_trade_no, true).await;
        let refunds = self.sync_refunds(out_trade_no).await;
        let said = match &order {
            Ok(Refreshed { answer: QueryAnswer::Trade { state, .. }, .. }) => json!(state.as_str()),
            Ok(Refreshed { answer: QueryAnswer::NotExist, .. }) => json!("ORDERNOTEXIST"),
            Ok(Refreshed { answer: QueryAnswer::Skipped, .. }) => Value::Null,
            Err(e) => json!(e.staff_message()),
        };
        let refund_results: Vec<Value> = match &refunds {
            Ok(results) => results.iter().map(refund_summary).collect(),
            Err(e) => vec![json!(e.staff_message())],
        };
        let detail = json!({
            "ok": order.is_ok(),
            "result": said,
            "from": before.state.as_str(),
            "to": order.as_ref().ok().map(|r| r.order.state.as_str()),
            "refunds": refund_results,
        });
        self.audit(actor, AuditAction::Requery, Some(out_trade_no), None, detail).await?;
        Ok(Requeried { before, order, refunds })
    }

    /// Marks exception `id` resolved with `note`: `None` when there is no such exception,
    /// `Some(false)` when someone else resolved it first.
    pub async fn resolve_exception(&self, id: i64, actor: &Actor, note: &str) -> Result<Option<bool>, DbError> {
        let (actor, note) = (actor.clone(), note.to_owned());
        self.db
            .write(move |c| -> Result<Option<bool>, DbError> {
                let Some(x) = exceptions::find(c, id)? else { return Ok(None) };
                if !exceptions::resolve(c, id, &actor.username, &note, crate::db::now())? {
                    return Ok(Some(false));
                }
                let target = format!("exception:{id}");
                let detail = json!({ "exception_id": id, "kind": x.kind, "note": note });
                let order = x.out_trade_no.as_deref();
                audit::record(c, &actor, AuditAction::ExceptionResolved, order, Some(&target), detail)?;
                Ok(Some(true))
            })
            .await
    }

    /// Queues webhook event `id` for delivery again now, whatever its state, unless an attempt
    /// is in flight.
    pub async fn resend_webhook(&self, id: i64, actor: &Actor) -> Result<Resend, DbError> {
        let actor = actor.clone();
        self.db
            .write(move |c| -> Result<Resend, DbError> {
                let result = webhooks::resend(c, id, crate::db::now())?;
                if let Resend::Queued(e) = &result {
                    let target = format!("webhook:{id}");
                    let detail = json!({
                        "event_id": id,
                        "event_type": e.event_type,
                        "url": e.url,
                        "previous_state": e.state.as_str(),
                        "previous_attempts": e.attempts,
                    });
                    let order = Some(e.out_trade_no.as_str());
                    audit::record(c, &actor, AuditAction::WebhookResend, order, Some(&target), detail)?;
                }
                Ok(result)
            })
            .await
    }

    /// Feeds stored delivery `id` through the same handler as a live one (verified, applied and
    /// logged again, marked as a re-run by `actor`), and audits it.
    pub async fn reprocess_notify(&self, id: i64, actor: &Actor) -> Result<Reprocessed, AppError> {
        let row = self.db.read(move |c| notify_log::find(c, id)).await?.ok_or(AppError::NotFound("notify"))?;
        // Marks the new log row as a re-run by staff, not a delivery from WeChat's address.
        let remote = Some(format!("admin:{} (re-process #{id})", actor.username));
        let Some(kind) = row.kind() else { return Ok(Reprocessed::UnknownKind(row.kind)) };
        let accepted = match &self.v3 {
            // Kept with its signature headers: verified again as of when it arrived.
            Some(_) => {
                let (headers, body) = SignedHeaders::split_stored(&row.raw_body);
                let at = row.received_at.and_utc().timestamp();
                let delivery = Delivery { headers, body: body.as_bytes(), at, remote_addr: remote };
                let answer = match kind {
                    NotifyKind::Payment => self.handle_payment_notify_v3(delivery).await,
                    NotifyKind::Refund => self.handle_refund_notify_v3(delivery).await,
                };
                answer.status == 200
            }
            None => {
                let reply = match kind {
                    NotifyKind::Payment => self.handle_payment_notify(row.raw_body.as_bytes(), remote).await,
                    NotifyKind::Refund => self.handle_refund_notify(row.raw_body.as_bytes(), remote).await,
                };
                reply == SUCCESS_REPLY
            }
        };
        let target = format!("notify:{id}");
        let detail = json!({ "notify_id": id, "kind": row.kind, "reply": if accepted { "SUCCESS" } else { "FAIL" } });
        let order = row.out_trade_no.as_deref();
        self.audit(actor, AuditAction::NotifyReprocess, order, Some(&target), detail).await?;
        Ok(Reprocessed::Done { accepted })
    }

    /// Audits an export of the order list with the filters it used.
    pub async fn record_export(&self, actor: &Actor, filters: Value) -> Result<(), DbError> {
        self.audit(actor, AuditAction::OrdersExported, None, None, filters).await
    }

    /// An audit entry in a transaction of its own, for an action whose effect is already recorded.
    async fn audit(
        &self,
        actor: &Actor,
        action: AuditAction,
        out_trade_no: Option<&str>,
        target: Option<&str>,
        detail: Value,
    ) -> Result<(), DbError> {
        let (actor, no, target) = (actor.clone(), out_trade_no.map(str::to_owned), target.map(str::to_owned));
        self.db.write(move |c| audit::record(c, &actor, action, no.as_deref(), target.as_deref(), detail)).await
    }
}

/// A refund's re-query, for the audit detail.
fn refund_summary(r: &RefundSync) -> Value {
    match r {
        RefundSync::Reported { out_refund_no, status, .. } => {
            json!({ "out_refund_no": out_refund_no, "refund_status": status.as_str() })
        }
        RefundSync::NotExist { out_refund_no } => json!({ "out_refund_no": out_refund_no, "result": "REFUNDNOTEXIST" }),
        RefundSync::Failed { out_refund_no, error } => {
            json!({ "out_refund_no": out_refund_no, "error": error.staff_message() })
        }
    }
}
