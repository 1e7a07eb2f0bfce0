//! WeChat's refund notify: decrypt and check it, log every delivery (refused ones bounded and
//! apart, see `payments::refused`), apply its outcome through the shared refund transition, and
//! answer SUCCESS only after that is committed.
//!
//! The log keeps the outer XML as received (its `req_info` stays encrypted); the decrypted fields
//! staff need (refund number, status, amount, account) go into the log's `reason`.

use serde_json::json;

use super::Payments;
use super::notify::Dialect;
use super::outbox::WebhookOutbox;
use super::refund::{RefundApplied, RefundOutcome, apply_refund_outcome};
use crate::db::exceptions::{self, NewException};
use crate::db::notify_log::{self, NewNotifyLog};
use crate::db::{AnyConnection, DbError, DbResult, refunds};
use crate::domain::{ExceptionKind, NotifyKind, NotifyVerdict, RefundState, TimelineSource};
use crate::wxpay::notify::{NotifyError, fail_reply};
use crate::wxpay::refund_notify::{RefundNotify, parse_refund_notify};

impl Payments {
    /// Processes one refund-notify delivery and returns the reply body. Never panics.
    pub async fn handle_refund_notify(&self, body: &[u8], remote_addr: Option<String>) -> String {
        let parsed = match self.v3 {
            // Nothing can verify a v2 notify here: there is no APIv2 key to check it with.
            Some(_) => Err(NotifyError::WrongVersion),
            None => self.parse_for_our_apps(body, parse_refund_notify),
        };
        let notify = match parsed {
            Ok(n) => n,
            Err(e) => {
                let (verdict, reply) = refusal(&e);
                self.record_refused(NotifyKind::Refund, body, remote_addr, verdict, e.to_string(), &reply).await;
                return reply;
            }
        };
        let raw_body = String::from_utf8_lossy(body).into_owned();
        self.apply_refund_notify(notify, raw_body, remote_addr, Dialect::V2).await
    }

    /// Applies a verified refund notify (either protocol) and logs it in the same transaction;
    /// returns the answer, acknowledging only what was committed.
    pub(super) async fn apply_refund_notify(
        &self,
        notify: RefundNotify,
        raw_body: String,
        remote_addr: Option<String>,
        dialect: Dialect,
    ) -> String {
        let mut log = NewNotifyLog::received(NotifyKind::Refund, raw_body, remote_addr);
        log.out_trade_no = Some(notify.out_trade_no.clone()).filter(|s| s.len() <= 64);
        log.transaction_id = Some(notify.transaction_id.clone()).filter(|s| !s.is_empty() && s.len() <= 64);
        log.reason = summary(&notify).to_string();
        log.reply = dialect.success();
        let (row, outbox) = (log.clone(), self.outbox.clone());
        let applied = self
            .db
            .write(move |c| -> DbResult<NotifyVerdict> {
                let verdict = apply(c, &notify, &outbox)?;
                let mut row = row;
                row.verdict = verdict;
                notify_log::insert(c, &row)?;
                Ok(verdict)
            })
            .await;
        match applied {
            Ok(verdict) => {
                tracing::info!(%verdict, "refund notify handled");
                super::notify::count_delivery(NotifyKind::Refund, verdict);
                dialect.success()
            }
            Err(e) => {
                // Nothing was committed: WeChat must deliver it again. Log the failure on its own.
                tracing::error!(error = %e, "refund notify could not be applied; asking WeChat to retry");
                super::notify::count_delivery(NotifyKind::Refund, NotifyVerdict::Error);
                let reply = dialect.failure("处理失败，请重试");
                log.verdict = NotifyVerdict::Error;
                log.reason = format!("{}; {e}", log.reason);
                log.reply = reply.clone();
                let _ = self.db.write(move |c| notify_log::insert(c, &log)).await;
                reply
            }
        }
    }
}

impl Payments {
    /// Refuses a delivery larger than the route accepts; `prefix` is what was read. Stored like
    /// any refused delivery: its start, within the rate limits.
    pub async fn refuse_oversized_refund_notify(&self, prefix: &[u8], remote_addr: Option<String>) -> String {
        let reply = fail_reply("请求过大");
        let reason = format!("body larger than {} bytes", prefix.len());
        self.record_refused(NotifyKind::Refund, prefix, remote_addr, NotifyVerdict::TooLarge, reason, &reply).await;
        reply
    }
}

/// The verdict and exact reply for a refund notify that failed its checks.
fn refusal(e: &NotifyError) -> (NotifyVerdict, String) {
    match e {
        NotifyError::Xml(_) => (NotifyVerdict::BadXml, fail_reply("XML格式错误")),
        NotifyError::Decrypt(_) => (NotifyVerdict::DecryptFailed, fail_reply("解密失败")),
        NotifyError::ForeignMerchant { .. } => (NotifyVerdict::ForeignMerchant, fail_reply("商户号或appid不匹配")),
        NotifyError::ReturnFail(_) => (NotifyVerdict::ReturnFail, fail_reply("return_code不是SUCCESS")),
        NotifyError::WrongVersion => (NotifyVerdict::BadSignature, fail_reply("签名错误")),
        NotifyError::Signature(_) | NotifyError::MissingField(_) | NotifyError::BadField { .. } => {
            (NotifyVerdict::BadField, fail_reply("参数错误"))
        }
    }
}

/// The decrypted fields staff need to read, without the outer message's secrets.
fn summary(n: &RefundNotify) -> serde_json::Value {
    json!({
        "out_refund_no": n.out_refund_no,
        "refund_id": n.refund_id,
        "refund_status": n.refund_status.as_str(),
        "refund_fee": n.refund_fee.get(),
        "total_fee": n.total_fee.get(),
        "success_time": n.success_time.map(|t| t.to_rfc3339()),
        "refund_recv_accout": n.recv_account,
        "refund_account": n.refund_account,
        "refund_request_source": n.request_source,
    })
}

/// Applies a verified notify; the verdict names what happened. Genuine notifies we cannot apply
/// (unknown refund, fields that contradict ours) are answered SUCCESS, since retrying cannot fix
/// them, and raised as exceptions for staff.
fn apply(c: &mut AnyConnection, n: &RefundNotify, outbox: &WebhookOutbox) -> Result<NotifyVerdict, DbError> {
    let Some(refund) = refunds::find(c, &n.out_refund_no)? else {
        // E.g. a refund made in the merchant platform: show it on the order when we have one.
        let order = crate::db::orders::find(c, &n.out_trade_no)?.map(|o| o.out_trade_no);
        let key = format!("unknown_refund:{}:{}", n.out_refund_no, n.refund_status);
        raise(c, ExceptionKind::UnknownRefund, key, order, n)?;
        return Ok(NotifyVerdict::UnknownRefund);
    };
    if refund.out_trade_no != n.out_trade_no || refund.amount != n.refund_fee {
        let key = format!("refund_mismatch:{}:{}", n.out_refund_no, n.refund_status);
        raise(c, ExceptionKind::RefundMismatch, key, Some(refund.out_trade_no.clone()), n)?;
        return Ok(NotifyVerdict::RefundMismatch);
    }
    let outcome = RefundOutcome {
        status: n.refund_status,
        refund_id: Some(&n.refund_id),
        success_time: n.success_time,
        source: TimelineSource::Notify,
        detail: json!({ "refund_id": n.refund_id, "recv_account": n.recv_account }),
    };
    Ok(match apply_refund_outcome(c, &n.out_refund_no, &outcome, outbox)? {
        RefundApplied::Changed { refund, .. } => match refund.state {
            RefundState::Success => NotifyVerdict::RefundSuccess,
            RefundState::Change => NotifyVerdict::RefundChange,
            RefundState::Closed => NotifyVerdict::RefundClosed,
            RefundState::Failed => NotifyVerdict::RefundFailed,
            RefundState::Processing | RefundState::Pending => NotifyVerdict::RefundProcessing,
        },
        RefundApplied::AlreadyDone(_) => NotifyVerdict::Duplicate,
        RefundApplied::Conflict(_) => NotifyVerdict::RefundConflict,
        RefundApplied::Unknown => NotifyVerdict::UnknownRefund,
    })
}

fn raise(
    c: &mut AnyConnection,
    kind: ExceptionKind,
    dedupe_key: String,
    out_trade_no: Option<String>,
    n: &RefundNotify,
) -> DbResult<()> {
    let mut detail = summary(n);
    detail["reported_out_trade_no"] = json!(n.out_trade_no);
    exceptions::raise(c, &NewException { kind, dedupe_key, out_trade_no, detail })?;
    Ok(())
}
