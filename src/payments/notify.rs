//! Handling WeChat's payment notify: verify, then hand to the group-commit writer, and answer
//! with the exact XML WeChat expects only after the outcome is durably recorded. A delivery that
//! fails verification is refused and stored bounded and apart (`payments::refused`).

use super::Payments;
use super::notify_writer::{Verdict, Work};
use crate::db::notify_log::NewNotifyLog;
use crate::domain::{NotifyKind, NotifyVerdict, PaymentFacts, PaymentSource};
use crate::wxpay::notify::{NotifyError, NotifyOutcome, fail_reply, parse_payment_notify};
use crate::wxpay::v3::notify::{SUCCESS_ANSWER, fail_answer};

impl Payments {
    /// Processes one delivery and returns the reply body. Never panics, whatever the body.
    pub async fn handle_payment_notify(&self, body: &[u8], remote_addr: Option<String>) -> String {
        let parsed = match self.v3 {
            // Nothing can verify a v2 notify here: there is no APIv2 key to check it with.
            Some(_) => Err(NotifyError::WrongVersion),
            None => self.parse_for_our_apps(body, parse_payment_notify),
        };
        let n = match parsed {
            Ok(n) => n,
            Err(e) => {
                let (verdict, reply) = refusal(&e);
                // What it claims (order, transaction) is not believed: it is stored apart.
                self.record_refused(NotifyKind::Payment, body, remote_addr, verdict, e.to_string(), &reply).await;
                return reply;
            }
        };
        let raw_body = String::from_utf8_lossy(body).into_owned();
        let mut log = NewNotifyLog::received(NotifyKind::Payment, raw_body, remote_addr);
        log.out_trade_no = Some(n.out_trade_no.clone());
        log.transaction_id = Some(n.transaction_id.clone()).filter(|t| !t.is_empty());
        let work = match n.outcome {
            NotifyOutcome::Paid => Work::ConfirmPayment {
                out_trade_no: n.out_trade_no,
                facts: PaymentFacts {
                    transaction_id: n.transaction_id,
                    total_fee: n.total_fee,
                    paid_at: n.time_end.unwrap_or_else(chrono::Utc::now),
                    source: PaymentSource::Notify,
                },
                dialect: Dialect::V2,
            },
            // WeChat reports a failed payment; the order stays payable. Recorded only.
            NotifyOutcome::Failed { err_code, description } => Work::LogOnly {
                verdict: NotifyVerdict::PaymentFailed,
                reason: format!("{err_code}: {description}"),
                reply: crate::wxpay::notify::SUCCESS_REPLY.to_owned(),
            },
        };
        match self.notify_writer.submit(log, work).await {
            Ok(Verdict { verdict, reply, .. }) => {
                tracing::info!(%verdict, "payment notify handled");
                count_delivery(NotifyKind::Payment, verdict);
                reply
            }
            Err(e) => {
                tracing::error!(error = %e, "payment notify not recorded; asking WeChat to retry");
                count_delivery(NotifyKind::Payment, NotifyVerdict::Error);
                fail_reply("系统繁忙，请重试")
            }
        }
    }
}

/// The verdict and exact reply for a payment notify that failed its checks.
fn refusal(e: &NotifyError) -> (NotifyVerdict, String) {
    match e {
        NotifyError::Xml(_) => (NotifyVerdict::BadXml, fail_reply("XML格式错误")),
        NotifyError::Signature(_) | NotifyError::WrongVersion => (NotifyVerdict::BadSignature, fail_reply("签名错误")),
        NotifyError::ForeignMerchant { .. } => (NotifyVerdict::ForeignMerchant, fail_reply("商户号或appid不匹配")),
        NotifyError::ReturnFail(_) => (NotifyVerdict::ReturnFail, fail_reply("return_code不是SUCCESS")),
        NotifyError::MissingField(_) | NotifyError::BadField { .. } | NotifyError::Decrypt(_) => {
            (NotifyVerdict::BadField, fail_reply("参数错误"))
        }
    }
}

/// The protocol a notify is answered in: v2's XML document, or v3's JSON (whose HTTP status the
/// route derives from it: 200 for [`SUCCESS_ANSWER`], an error status otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    V2,
    V3,
}

impl Dialect {
    /// The answer that acknowledges the delivery.
    pub fn success(self) -> String {
        match self {
            Dialect::V2 => crate::wxpay::notify::SUCCESS_REPLY.to_owned(),
            Dialect::V3 => SUCCESS_ANSWER.to_owned(),
        }
    }

    /// The answer that asks WeChat to deliver again.
    pub fn failure(self, message: &str) -> String {
        match self {
            Dialect::V2 => fail_reply(message),
            Dialect::V3 => fail_answer(message),
        }
    }
}

/// Counts one delivery for `/metrics` by its verdict (a fixed vocabulary, so a bounded label).
/// Every delivery is counted once: verified ones here and in `refund_notify`, refused ones in
/// `refused::record_refused`.
pub(super) fn count_delivery(kind: NotifyKind, verdict: NotifyVerdict) {
    metrics::counter!(
        "wechat_checkout_notify_deliveries_total",
        "kind" => kind.as_str(), "verdict" => verdict.as_str()
    )
    .increment(1);
}
