//! The differences a reconciliation can find, their names for staff, and how each is recorded:
//! a finding row (unique per date, kind and item, so a second run of the date adds nothing) and an
//! exception in the console (deduplicated by its key, so one resolved by staff stays resolved),
//! written together in batched transactions.

use serde_json::{Value, json};

use crate::db::reconciliation::{self, NewFinding};
use crate::db::{Db, DbResult, exceptions};
use crate::domain::ExceptionKind;

/// One kind of difference between the bill and our records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FindingKind {
    /// Paid at WeChat; our order exists but is not PAID (a lost notify): confirmed by orderquery
    /// and applied through the shared transition. The shopper paid: ship or refund.
    PaidNotLocal,
    /// Paid at WeChat; no such order here (data loss, or another system on the same mch_id).
    MissingLocal,
    /// PAID here that day; not (or not as a success) in WeChat's bill (a logic bug, or a payment
    /// recorded on the wrong day).
    MissingAtWechat,
    /// Both sides have the payment, with different amounts.
    AmountDiffers,
    /// A refund in the bill that we have no record of.
    RefundMissingLocal,
    /// A refund that succeeded here that day and is not in the bill.
    RefundMissingAtWechat,
    /// Both sides have the refund, with different amounts.
    RefundAmountDiffers,
    /// The bill shows the refund paid out (SUCCESS) while we recorded it as failed or closed.
    RefundStatusDiffers,
}

impl FindingKind {
    pub const ALL: [FindingKind; 8] = [
        FindingKind::PaidNotLocal,
        FindingKind::MissingLocal,
        FindingKind::MissingAtWechat,
        FindingKind::AmountDiffers,
        FindingKind::RefundMissingLocal,
        FindingKind::RefundMissingAtWechat,
        FindingKind::RefundAmountDiffers,
        FindingKind::RefundStatusDiffers,
    ];

    /// The code stored in `reconciliation_findings.kind`.
    pub fn code(self) -> &'static str {
        match self {
            FindingKind::PaidNotLocal => "paid_not_local",
            FindingKind::MissingLocal => "missing_local",
            FindingKind::MissingAtWechat => "missing_at_wechat",
            FindingKind::AmountDiffers => "amount_differs",
            FindingKind::RefundMissingLocal => "refund_missing_local",
            FindingKind::RefundMissingAtWechat => "refund_missing_at_wechat",
            FindingKind::RefundAmountDiffers => "refund_amount_differs",
            FindingKind::RefundStatusDiffers => "refund_status_differs",
        }
    }

    pub fn parse(code: &str) -> Option<FindingKind> {
        FindingKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// What staff read.
    pub fn label(self) -> &'static str {
        match self {
            FindingKind::PaidNotLocal => "我方未支付",
            FindingKind::MissingLocal => "微信有我方无",
            FindingKind::MissingAtWechat => "我方有微信无",
            FindingKind::AmountDiffers => "金额不符",
            FindingKind::RefundMissingLocal => "退款：微信有我方无",
            FindingKind::RefundMissingAtWechat => "退款：我方有微信无",
            FindingKind::RefundAmountDiffers => "退款金额不符",
            FindingKind::RefundStatusDiffers => "退款状态不符",
        }
    }

    /// What staff should do about it.
    pub fn advice(self) -> &'static str {
        match self {
            FindingKind::PaidNotLocal => "顾客已付款：已通过查单补记支付，请发货或退款",
            FindingKind::MissingLocal => "微信收到了付款但本系统没有该订单：请排查数据丢失",
            FindingKind::MissingAtWechat => "本系统记为已支付但微信账单中没有：请排查",
            FindingKind::AmountDiffers => "双方金额不一致：请核对",
            FindingKind::RefundMissingLocal => "微信有退款但本系统没有记录：请排查",
            FindingKind::RefundMissingAtWechat => "本系统记为退款成功但微信账单中没有：请排查",
            FindingKind::RefundAmountDiffers => "退款金额不一致：请核对",
            FindingKind::RefundStatusDiffers => "微信已退款但本系统记为失败或关闭：请核对",
        }
    }

    /// The exception kind raised with the finding. Where the console already has a kind meaning
    /// the same thing (an unknown order, an amount mismatch…), that one is used so staff see one
    /// vocabulary; the other kinds are the reconciliation's own.
    pub fn exception_kind(self) -> ExceptionKind {
        match self {
            FindingKind::PaidNotLocal => ExceptionKind::ReconcilePaidNotLocal,
            FindingKind::MissingLocal => ExceptionKind::UnknownOrder,
            FindingKind::MissingAtWechat => ExceptionKind::ReconcileMissingAtWechat,
            FindingKind::AmountDiffers => ExceptionKind::AmountMismatch,
            FindingKind::RefundMissingLocal => ExceptionKind::UnknownRefund,
            FindingKind::RefundMissingAtWechat => ExceptionKind::ReconcileRefundMissingAtWechat,
            FindingKind::RefundAmountDiffers | FindingKind::RefundStatusDiffers => ExceptionKind::RefundMismatch,
        }
    }

    pub fn is_refund(self) -> bool {
        matches!(
            self,
            FindingKind::RefundMissingLocal
                | FindingKind::RefundMissingAtWechat
                | FindingKind::RefundAmountDiffers
                | FindingKind::RefundStatusDiffers
        )
    }
}

/// One difference, before it is written.
#[derive(Clone, Debug)]
pub struct Finding {
    pub kind: FindingKind,
    /// out_trade_no for payments, out_refund_no for refunds.
    pub key: String,
    pub out_trade_no: Option<String>,
    pub detail: Value,
}

/// Findings are written this many per transaction: few round trips, short write locks.
const BATCH: usize = 256;

/// Buffers findings and writes them with their exceptions.
pub struct FindingSink {
    db: Db,
    bill_date: String,
    buf: Vec<Finding>,
    /// Differences seen by this run (recorded before or now).
    pub seen: u64,
    /// Findings this run recorded for the first time.
    pub new: u64,
}

impl FindingSink {
    pub fn new(db: Db, bill_date: &str) -> FindingSink {
        FindingSink { db, bill_date: bill_date.to_owned(), buf: Vec::new(), seen: 0, new: 0 }
    }

    /// Queues a finding (blocking thread only: a full buffer is written right away).
    pub fn push(&mut self, finding: Finding) -> DbResult<()> {
        self.seen += 1;
        self.buf.push(finding);
        if self.buf.len() >= BATCH { self.flush() } else { Ok(()) }
    }

    /// Writes what is buffered (blocking thread only).
    pub fn flush(&mut self) -> DbResult<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.buf);
        let date = self.bill_date.clone();
        let new = self.db.write_blocking(|c| -> DbResult<Vec<FindingKind>> {
            let mut new = Vec::new();
            for f in &batch {
                if record(c, &date, f)? {
                    new.push(f.kind);
                }
            }
            Ok(new)
        })?;
        // Counted once committed, and only when new: a second run of the date adds nothing.
        for kind in &new {
            metrics::counter!("wechat_checkout_reconciliation_findings_total", "kind" => kind.code()).increment(1);
        }
        self.new += new.len() as u64;
        Ok(())
    }
}

/// Records one finding and raises its exception; `true` when the finding is new.
fn record(c: &mut crate::db::AnyConnection, bill_date: &str, f: &Finding) -> DbResult<bool> {
    let now = crate::db::now();
    let new = reconciliation::record_finding(
        c,
        &NewFinding {
            bill_date: bill_date.to_owned(),
            kind: f.kind.code(),
            item_key: f.key.clone(),
            out_trade_no: f.out_trade_no.clone(),
            detail: f.detail.to_string(),
            created_at: now,
        },
    )?;
    let mut detail = json!({
        "bill_date": bill_date,
        "finding": f.kind.label(),
        "advice": f.kind.advice(),
    });
    if f.kind.is_refund() {
        detail["out_refund_no"] = json!(f.key);
    }
    if let (Value::Object(into), Value::Object(from)) = (&mut detail, &f.detail) {
        for (k, v) in from {
            into.insert(k.clone(), v.clone());
        }
    }
    exceptions::raise(
        c,
        &exceptions::NewException {
            kind: f.kind.exception_kind(),
            dedupe_key: format!("reconcile:{bill_date}:{}:{}", f.kind.code(), f.key),
            out_trade_no: f.out_trade_no.clone(),
            detail,
        },
    )?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for k in FindingKind::ALL {
            assert_eq!(FindingKind::parse(k.code()), Some(k));
            assert!(seen.insert(k.code()));
            assert!(!k.label().is_empty() && !k.advice().is_empty());
        }
        assert_eq!(FindingKind::parse("nope"), None);
    }
}
