//! Asking WeChat about refunds (`refundquery`) and applying what it says through the shared
//! refund transition: staff re-query an order's refunds, and the refund-sync job checks one.

use chrono::Utc;
use serde_json::json;

use super::outcome::{RefundApplied, RefundOutcome, apply_refund_outcome};
use crate::db::{DbResult, events, refunds};
use crate::domain::{Refund, RefundState, TimelineKind, TimelineSource};
use crate::error::AppError;
use crate::payments::Payments;
use crate::wxpay::ErrCode;
use crate::wxpay::refund::{RefundQuery, RefundRef};
use crate::wxpay::types::RefundStatus;

/// What asking WeChat about one refund found.
#[derive(Debug)]
pub enum RefundSync {
    /// WeChat reported `status`; `applied` is what that did here.
    Reported { out_refund_no: String, status: RefundStatus, applied: RefundApplied },
    /// WeChat has no such refund: it was never accepted, and a PENDING one may be sent again
    /// with the same number.
    NotExist { out_refund_no: String },
    /// The query failed; nothing changed.
    Failed { out_refund_no: String, error: AppError },
}

/// What a refund whose send WeChat never saw says to staff.
const NOT_EXIST_NOTE: &str = "微信支付查无此退款，可用同一退款单号重试";

impl Payments {
    /// Asks WeChat about every refund of an order still waiting for an outcome and applies what
    /// it says: one result per refund. A PENDING refund whose request is still in flight is left
    /// to that request.
    pub async fn sync_refunds(&self, out_trade_no: &str) -> Result<Vec<RefundSync>, AppError> {
        let no = out_trade_no.to_owned();
        let waiting = self.db.read(move |c| refunds::unsettled(c, Some(&no), 50)).await?;
        let now = Utc::now();
        let mut results = Vec::with_capacity(waiting.len());
        for refund in waiting.into_iter().filter(|r| r.state != RefundState::Pending || r.may_resend(now)) {
            results.push(match self.sync_refund(&refund).await {
                Ok(result) => result,
                Err(error) => RefundSync::Failed { out_refund_no: refund.out_refund_no.clone(), error },
            });
        }
        Ok(results)
    }

    /// One refundquery, applied. (The refund-sync job calls this too.)
    pub async fn sync_refund(&self, refund: &Refund) -> Result<RefundSync, AppError> {
        let query = RefundQuery { by: RefundRef::OutRefundNo(refund.out_refund_no.clone()), offset: None };
        let (no, order_no) = (refund.out_refund_no.clone(), refund.out_trade_no.clone());
        let reply = match self.gateway.refund_query(&query).await {
            Ok(reply) => reply,
            Err(e) if e.err_code() == Some(ErrCode::REFUNDNOTEXIST) => {
                let n = no.clone();
                self.db
                    .write(move |c| -> DbResult<_> {
                        let detail = json!({ "out_refund_no": n, "result": "REFUNDNOTEXIST" });
                        let (kind, source) = (TimelineKind::RefundQueried, TimelineSource::Query);
                        events::insert(c, &order_no, kind, source, (None, None), &detail)?;
                        refunds::note_error_if_pending(c, &n, NOT_EXIST_NOTE)
                    })
                    .await?;
                return Ok(RefundSync::NotExist { out_refund_no: no });
            }
            Err(e) => return Err(AppError::Gateway(e)),
        };
        let Some(record) = reply.refunds.into_iter().find(|r| r.out_refund_no == no) else {
            return Err(AppError::Internal(format!("refundquery for {no} did not list it")));
        };
        let (status, n, outbox) = (record.status, no.clone(), self.outbox.clone());
        let applied = self
            .db
            .write(move |c| -> DbResult<_> {
                let detail = json!({
                    "out_refund_no": n,
                    "refund_status": status.as_str(),
                    "refund_id": record.refund_id,
                    "refund_fee": record.refund_fee.get(),
                    "recv_account": record.recv_account,
                });
                let (kind, source) = (TimelineKind::RefundQueried, TimelineSource::Query);
                events::insert(c, &order_no, kind, source, (None, None), &detail)?;
                let outcome = RefundOutcome {
                    status,
                    refund_id: Some(&record.refund_id),
                    success_time: record.success_time,
                    source: TimelineSource::Query,
                    detail,
                };
                apply_refund_outcome(c, &n, &outcome, &outbox)
            })
            .await?;
        Ok(RefundSync::Reported { out_refund_no: no, status, applied })
    }
}
