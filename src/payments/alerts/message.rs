//! What an alert says: a title and lines in Chinese for staff, built from its source when the
//! alert is recorded (so that a retry posts the same words, and a source purged later is still
//! told). Amounts are shown in 元 from integer fen, times in Beijing time, with a console link.

use chrono::NaiveDateTime;
use serde_json::Value;

use crate::db::alerts::{Alert, FailedWebhook, NewAlert};
use crate::domain::reconciliation::{FindingRecord, ReconciliationRun, RunState};
use crate::domain::records::ExceptionRecord;
use crate::domain::{ExceptionKind, Fen};
use crate::payments::reconcile::findings::FindingKind;

/// Findings named one by one in the alert of a run; the console has them all.
const FINDINGS_SHOWN: usize = 5;
/// Held alerts named one by one in a summary.
const SUMMARY_SHOWN: usize = 10;

/// The dedupe-key prefix of the exceptions a reconciliation raises: those are told by the alert
/// of their run (one message for a day's differences, not one per difference).
pub const RECONCILE_PREFIX: &str = "reconcile:";

/// Whether an exception is alerted. Refused prepays are a set-up problem the shopper meets at once
/// (no money moved); the reconciliation's own exceptions are told by the alert of their run.
pub fn alerted(e: &ExceptionRecord) -> bool {
    !e.dedupe_key.starts_with(RECONCILE_PREFIX) && ExceptionKind::parse(&e.kind) != Some(ExceptionKind::PrepayRefused)
}

/// The staff's word for an exception kind (as the console's labels say it); a kind of a newer
/// build shows as stored.
pub fn exception_label(kind: &str) -> &str {
    match ExceptionKind::parse(kind) {
        Some(ExceptionKind::AmountMismatch) => "金额不符",
        Some(ExceptionKind::UnknownOrder) => "未知订单",
        Some(ExceptionKind::PaidAfterClose) => "关单后支付",
        Some(ExceptionKind::ConflictingPayment) => "重复支付",
        Some(ExceptionKind::PrepayRefused) => "下单被拒",
        Some(ExceptionKind::RefundChange) => "退款异常",
        Some(ExceptionKind::UnknownRefund) => "未知退款",
        Some(ExceptionKind::RefundMismatch) => "退款信息不符",
        Some(ExceptionKind::RefundConflict) => "退款状态冲突",
        Some(ExceptionKind::ReconcilePaidNotLocal) => "对账：我方未支付",
        Some(ExceptionKind::ReconcileMissingAtWechat) => "对账：我方有微信无",
        Some(ExceptionKind::ReconcileRefundMissingAtWechat) => "对账：退款我方有微信无",
        None => kind,
    }
}

/// An amount in 元 with two decimals, from fen: `19.90 元`.
pub fn yuan(fen: i64) -> String {
    format!("{} 元", Fen::new(fen).to_yuan_string())
}

/// Beijing time, as staff read it.
pub fn beijing(t: NaiveDateTime) -> String {
    crate::wxpay::time::format_dashed(t.and_utc())
}

/// The alert of a new exception: `exception:<id>`.
pub fn for_exception(e: &ExceptionRecord) -> NewAlert {
    let detail: Value = serde_json::from_str(&e.detail).unwrap_or(Value::Null);
    let order = e.out_trade_no.clone().or_else(|| detail["out_trade_no"].as_str().map(str::to_owned));
    let mut lines = Vec::new();
    if let Some(no) = &order {
        lines.push(format!("订单号：{no}"));
    }
    lines.extend(detail_lines(&detail));
    lines.push(format!("时间：{}", beijing(e.created_at)));
    let label = exception_label(&e.kind);
    NewAlert {
        key: format!("exception:{}", e.id),
        kind: format!("exception.{}", e.kind),
        title: match &order {
            Some(no) => format!("【支付异常】{label}：{no}"),
            None => format!("【支付异常】{label}"),
        },
        body: lines.join("\n"),
        link: Some(match (&e.out_trade_no, &order) {
            (Some(no), _) => format!("/admin/orders/{no}"),
            _ => "/admin/exceptions".to_owned(),
        }),
        occurred_at: e.created_at,
    }
}

/// The lines of an exception's detail, amounts in 元, notes last.
fn detail_lines(detail: &Value) -> Vec<String> {
    let Value::Object(fields) = detail else { return Vec::new() };
    let (mut lines, mut notes) = (Vec::new(), Vec::new());
    for (name, value) in fields {
        let text = match (is_money(name), value) {
            (true, Value::Number(n)) if n.as_i64().is_some() => yuan(n.as_i64().unwrap_or_default()),
            (_, Value::String(s)) => s.clone(),
            (_, other) => other.to_string(),
        };
        match name.as_str() {
            "out_trade_no" => {}
            "note" | "advice" => notes.push(format!("说明：{text}")),
            _ => lines.push(format!("{}：{text}", field_label(name))),
        }
    }
    lines.extend(notes);
    lines
}

fn is_money(field: &str) -> bool {
    field.ends_with("_fen") || field.ends_with("_fee")
}

fn field_label(field: &str) -> &str {
    match field {
        "transaction_id" => "微信支付单号",
        "total_fee" => "支付金额",
        "expected_fen" => "订单金额",
        "reported_fen" => "微信报告金额",
        "amount_fen" => "金额",
        "refund_fee" => "退款金额",
        "out_refund_no" => "退款单号",
        "refund_id" => "微信退款单号",
        "recorded_transaction_id" => "已记录的支付单号",
        "received_transaction_id" => "新收到的支付单号",
        "local_state" => "本地状态",
        "reported_status" => "微信状态",
        "source" => "来源",
        "err_code" => "错误码",
        other => other,
    }
}

/// The alert of a finished run: differing (`reconciliation:<date>:differs:<findings>`, so a
/// later run that finds more differences alerts again) or failed (`reconciliation:<date>:failed`,
/// once per date: the scheduler retries by itself).
pub fn for_run(run: &ReconciliationRun, findings: &[FindingRecord]) -> NewAlert {
    let date = &run.bill_date;
    let link = Some(format!("/admin/reconciliation/{date}"));
    let occurred_at = run.finished_at.unwrap_or_default();
    if run.state == RunState::Failed {
        let mut lines =
            vec![format!("错误：{}", run.error.as_deref().unwrap_or("未知")), format!("已尝试：{} 次", run.attempts)];
        if let Some(next) = run.next_attempt_at {
            lines.push(format!("下次重试：{}", beijing(next)));
        }
        return NewAlert {
            key: format!("reconciliation:{date}:failed"),
            kind: "reconciliation.failed".into(),
            title: format!("【对账失败】{date} 的对账未完成"),
            body: lines.join("\n"),
            link,
            occurred_at,
        };
    }
    let f = &run.figures;
    let mut lines = vec![
        format!("微信账单收款：{} 笔，{}", f.bill_paid_count, yuan(f.bill_paid_fen)),
        format!("本地收款：{} 笔，{}", f.local_paid_count, yuan(f.local_paid_fen)),
        format!("一致：{} 笔；差异：{} 处", f.matched, f.findings),
    ];
    for finding in findings.iter().take(FINDINGS_SHOWN) {
        let label = FindingKind::parse(&finding.kind).map_or(finding.kind.as_str(), |k| k.label());
        lines.push(format!("· {label}：{}", finding.item_key));
    }
    if f.findings > FINDINGS_SHOWN as i64 {
        lines.push(format!("……另有 {} 处，见后台", f.findings - FINDINGS_SHOWN as i64));
    }
    NewAlert {
        key: format!("reconciliation:{date}:differs:{}", f.findings),
        kind: "reconciliation.differs".into(),
        title: format!("【对账差异】{date}：{} 处差异", f.findings),
        body: lines.join("\n"),
        link,
        occurred_at,
    }
}

/// The alert of a webhook event given up on: `webhook:<event id>:<last attempt id>` (an event
/// re-sent by staff and given up again alerts again).
pub fn for_webhook(w: &FailedWebhook) -> NewAlert {
    let last = match (w.status_code, &w.error) {
        (_, Some(error)) => error.clone(),
        (Some(status), None) => format!("HTTP {status}"),
        (None, None) => "无应答".to_owned(),
    };
    let lines = [
        format!("订单号：{}", w.out_trade_no),
        format!("事件：{}（#{}）", w.event_type, w.event_id),
        format!("已尝试：{} 次，已放弃；可在后台重新发送", w.attempts),
        format!("最后一次：{last}"),
        format!("时间：{}", beijing(w.last_attempt_at)),
    ];
    NewAlert {
        key: format!("webhook:{}:{}", w.event_id, w.last_attempt_id),
        kind: "webhook.failed".into(),
        title: format!("【商户通知失败】{}", w.out_trade_no),
        body: lines.join("\n"),
        link: Some(format!("/admin/webhooks?order={}", w.out_trade_no)),
        occurred_at: w.last_attempt_at,
    }
}

/// One message for the alerts held over the hourly limit: `summary:<first held id>`.
pub fn summary(held: &[Alert], now: NaiveDateTime) -> NewAlert {
    let mut lines: Vec<String> = held.iter().take(SUMMARY_SHOWN).map(|a| format!("· {}", a.title)).collect();
    if held.len() > SUMMARY_SHOWN {
        lines.push(format!("……另有 {} 条，见后台", held.len() - SUMMARY_SHOWN));
    }
    NewAlert {
        key: format!("summary:{}", held.first().map_or(0, |a| a.id)),
        kind: "summary".into(),
        title: format!("另有 {} 条告警（超过每小时上限，合并为一条）", held.len()),
        body: lines.join("\n"),
        link: Some("/admin/exceptions".into()),
        occurred_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exception(kind: &str, detail: Value) -> ExceptionRecord {
        ExceptionRecord {
            id: 7,
            kind: kind.into(),
            dedupe_key: format!("{kind}:WC1"),
            out_trade_no: Some("WC1".into()),
            detail: detail.to_string(),
            created_at: NaiveDateTime::default(),
            resolved_at: None,
            resolved_by: None,
            resolution_note: None,
        }
    }

    #[test]
    fn an_amount_mismatch_names_the_order_and_both_amounts_in_yuan() {
        let e = exception(
            "amount_mismatch",
            serde_json::json!({"expected_fen": 1990, "reported_fen": 1, "source": "notify"}),
        );
        let alert = for_exception(&e);
        assert_eq!(alert.key, "exception:7");
        assert_eq!(alert.title, "【支付异常】金额不符：WC1");
        assert!(
            alert.body.contains("订单金额：19.90 元") && alert.body.contains("微信报告金额：0.01 元"),
            "{}",
            alert.body
        );
        assert_eq!(alert.link.as_deref(), Some("/admin/orders/WC1"));
    }

    #[test]
    fn prepay_refusals_and_reconciliation_exceptions_are_not_alerted_alone() {
        assert!(alerted(&exception("paid_after_close", Value::Null)));
        assert!(!alerted(&exception("prepay_refused", Value::Null)));
        let mut from_run = exception("amount_mismatch", Value::Null);
        from_run.dedupe_key = "reconcile:2026-12-01:amount_differs:WC1".into();
        assert!(!alerted(&from_run));
    }
}
