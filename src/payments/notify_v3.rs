//! WeChat's v3 notifies (payment and refund): verified and decrypted by the v3 client, then
//! handled exactly as v2's are (the same group-commit writer, the same refund transition), and
//! answered HTTP 200 only once the outcome is durably recorded; refusals are stored apart.

use super::Payments;
use super::notify::Dialect;
use super::notify_writer::{Verdict, Work};
use crate::db::notify_log::NewNotifyLog;
use crate::domain::{NotifyKind, NotifyVerdict, PaymentFacts, PaymentSource};
use crate::wxpay::v3::convert::Ours;
use crate::wxpay::v3::models::{RefundResource, Transaction};
use crate::wxpay::v3::notify::{self, Opened, SUCCESS_ANSWER, V3NotifyError, fail_answer};
use crate::wxpay::v3::verify::{SignatureError, SignedHeaders};

/// The HTTP answer to a v3 notify: its status and JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyAnswer {
    pub status: u16,
    pub body: String,
}

/// One v3 delivery as received: its signature headers (or which is missing), its body, and the
/// time it is checked at (now; for a stored delivery re-processed, when it arrived).
pub struct Delivery<'a> {
    pub headers: Result<SignedHeaders, SignatureError>,
    pub body: &'a [u8],
    pub at: i64,
    pub remote_addr: Option<String>,
}

impl Delivery<'_> {
    /// The delivery as the log keeps it: headers, a blank line, the body as received.
    fn stored(&self) -> String {
        SignedHeaders::stored(self.headers.as_ref().ok(), self.body)
    }
}

impl NotifyAnswer {
    /// 200 for the acknowledgement, `failed` for anything else.
    fn of(body: String, failed: u16) -> NotifyAnswer {
        let status = if body == SUCCESS_ANSWER { 200 } else { failed };
        NotifyAnswer { status, body }
    }
}

impl Payments {
    /// Processes one v3 payment notify. Never panics, whatever arrives.
    pub async fn handle_payment_notify_v3(&self, delivery: Delivery<'_>) -> NotifyAnswer {
        let opened = self.open_v3::<Transaction>(&delivery, "transaction").await;
        let paid = opened.and_then(|o| {
            let (mchid, appids) = self.v3.as_ref().map(|v3| v3.ours()).unwrap_or_default();
            notify::payment(&o, &Ours { mchid: &mchid, appids: &appids })
        });
        let paid = match paid {
            Ok(paid) => paid,
            Err(e) => return self.refuse_v3(NotifyKind::Payment, delivery, e).await,
        };
        let mut log = NewNotifyLog::received(NotifyKind::Payment, delivery.stored(), delivery.remote_addr);
        log.out_trade_no = Some(paid.out_trade_no.clone());
        log.transaction_id = Some(paid.transaction_id.clone());
        let work = Work::ConfirmPayment {
            out_trade_no: paid.out_trade_no,
            facts: PaymentFacts {
                transaction_id: paid.transaction_id,
                total_fee: paid.total_fee,
                paid_at: paid.paid_at.unwrap_or_else(chrono::Utc::now),
                source: PaymentSource::Notify,
            },
            dialect: Dialect::V3,
        };
        match self.notify_writer.submit(log, work).await {
            Ok(Verdict { verdict, reply, .. }) => {
                tracing::info!(%verdict, "payment notify handled (v3)");
                super::notify::count_delivery(NotifyKind::Payment, verdict);
                NotifyAnswer::of(reply, 500)
            }
            Err(e) => {
                tracing::error!(error = %e, "payment notify not recorded; asking WeChat to retry");
                super::notify::count_delivery(NotifyKind::Payment, NotifyVerdict::Error);
                NotifyAnswer { status: 500, body: fail_answer("系统繁忙，请重试") }
            }
        }
    }

    /// Processes one v3 refund notify. Never panics, whatever arrives.
    pub async fn handle_refund_notify_v3(&self, delivery: Delivery<'_>) -> NotifyAnswer {
        let opened = self.open_v3::<RefundResource>(&delivery, "refund").await;
        let read = opened.and_then(|o| {
            let mchid = self.v3.as_ref().map(|v3| v3.ours().0).unwrap_or_default();
            notify::refund(&o, &mchid)
        });
        match read {
            Ok(refund) => {
                // As for v2, the refund's resource stays encrypted in the log; the decrypted fields
                // staff need go into its reason.
                let reply =
                    self.apply_refund_notify(refund, delivery.stored(), delivery.remote_addr, Dialect::V3).await;
                NotifyAnswer::of(reply, 500)
            }
            Err(e) => self.refuse_v3(NotifyKind::Refund, delivery, e).await,
        }
    }

    /// Refuses a delivery larger than the routes accept; `prefix` is what was read.
    pub async fn refuse_oversized_v3(
        &self,
        kind: NotifyKind,
        prefix: &[u8],
        remote_addr: Option<String>,
    ) -> NotifyAnswer {
        let body = fail_answer("请求过大");
        let reason = format!("body larger than {} bytes", prefix.len());
        self.record_refused(kind, prefix, remote_addr, NotifyVerdict::TooLarge, reason, &body).await;
        NotifyAnswer { status: 413, body }
    }

    async fn open_v3<T: serde::de::DeserializeOwned>(
        &self,
        delivery: &Delivery<'_>,
        original_type: &'static str,
    ) -> Result<Opened<T>, V3NotifyError> {
        let Some(v3) = &self.v3 else {
            // Configured for v2: no v3 key can verify it.
            return Err(V3NotifyError::Signature(SignatureError::UnknownSerial("(this checkout is on API v2)".into())));
        };
        let headers = delivery.headers.as_ref().map_err(|e| V3NotifyError::Signature(e.clone()))?;
        v3.open_notify(headers, delivery.body, original_type, delivery.at).await
    }

    async fn refuse_v3(&self, kind: NotifyKind, delivery: Delivery<'_>, e: V3NotifyError) -> NotifyAnswer {
        let (verdict, message) = match &e {
            V3NotifyError::Signature(_) => (NotifyVerdict::BadSignature, "签名错误"),
            V3NotifyError::Decrypt(_) => (NotifyVerdict::DecryptFailed, "解密失败"),
            V3NotifyError::ForeignMerchant { .. } => (NotifyVerdict::ForeignMerchant, "商户号或appid不匹配"),
            V3NotifyError::Envelope(_) | V3NotifyError::Unexpected { .. } | V3NotifyError::BadField { .. } => {
                (NotifyVerdict::BadField, "参数错误")
            }
        };
        let answer = NotifyAnswer { status: e.status(), body: fail_answer(message) };
        let stored = delivery.stored();
        self.record_refused(kind, stored.as_bytes(), delivery.remote_addr, verdict, e.to_string(), &answer.body).await;
        answer
    }
}
