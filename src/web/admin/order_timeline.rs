//! The order page's timeline: one list, newest first, merging the order's events, every notify
//! delivery, exceptions raised and resolved, and staff actions, each with its details in Chinese.

use chrono::{DateTime, Utc};

use super::labels;
use super::view::{beijing_time, yuan};
use crate::domain::records::{AuditRecord, ExceptionRecord, NotifyRecord, TimelineEntry};
use crate::domain::{Fen, NotifyKind, OrderState, TimelineKind, TimelineSource};
use crate::payments::console::OrderDossier;

/// Chinese names of the detail keys we write; others show as they are.
const KEYS: &[(&str, &str)] = &[
    ("amount_fen", "金额"),
    ("out_refund_no", "退款单号"),
    ("refund_id", "微信退款单号"),
    ("reason", "原因"),
    ("by", "操作人"),
    ("from", "原状态"),
    ("to", "新状态"),
    ("trade_state", "交易状态"),
    ("trade_state_desc", "状态说明"),
    ("transaction_id", "微信支付单号"),
    ("total_fee", "订单金额（分）"),
    ("refund_fee", "退款金额（分）"),
    ("paid_at", "支付时间"),
    ("success_time", "成功时间"),
    ("prepay_id", "预支付 ID"),
    ("merchant_order_id", "商户业务单号"),
    ("refund_status", "退款状态"),
    ("recv_account", "入账账户"),
    ("result", "结果"),
    ("err_code", "错误码"),
    ("error", "错误"),
    ("note", "说明"),
    ("source", "来源"),
    ("closeorder", "关单结果"),
    ("expected_fen", "订单金额（分）"),
    ("reported_fen", "微信报告金额（分）"),
];

/// A JSON detail as `key: value` lines (known keys in Chinese, strings unquoted, RFC 3339 times
/// in Beijing time); anything else as one line.
pub fn detail_pairs(detail: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<serde_json::Value>(detail) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let shown = match v {
                    serde_json::Value::String(s) => match DateTime::parse_from_rfc3339(&s) {
                        Ok(t) => beijing_time(t.with_timezone(&Utc)),
                        Err(_) => s,
                    },
                    other => other.to_string(),
                };
                let label = KEYS.iter().find(|(key, _)| *key == k).map_or(k, |(_, label)| (*label).to_owned());
                (label, shown)
            })
            .collect(),
        _ if detail.trim().is_empty() || detail.trim() == "{}" => Vec::new(),
        _ => vec![(String::new(), detail.to_owned())],
    }
}

/// One entry of the timeline.
pub struct Item {
    at: DateTime<Utc>,
    /// Tie-breaker among entries of the same instant: category, then id.
    seq: (u8, i64),
    pub when: String,
    pub category: &'static str,
    pub title: String,
    pub badge: Option<(&'static str, String)>,
    pub lines: Vec<(String, String)>,
    pub reply: Option<String>,
    pub raw: Option<String>,
    pub notify_id: Option<i64>,
}

impl Item {
    fn new(at: DateTime<Utc>, seq: (u8, i64), category: &'static str, title: String) -> Item {
        let when = beijing_time(at);
        Item { at, seq, when, category, title, badge: None, lines: Vec::new(), reply: None, raw: None, notify_id: None }
    }
}

/// Every entry about the order, newest first.
pub fn timeline(d: &OrderDossier) -> Vec<Item> {
    let mut items: Vec<Item> = d.events.iter().map(event_item).collect();
    items.extend(d.notifies.iter().map(notify_item));
    items.extend(d.exceptions.iter().flat_map(exception_items));
    items.extend(d.audits.iter().map(audit_item));
    items.sort_by(|a, b| b.at.cmp(&a.at).then(b.seq.cmp(&a.seq)));
    items
}

fn order_state_name(s: &str) -> String {
    OrderState::parse(s).map(|st| labels::order_state(st).to_owned()).unwrap_or_else(|| s.to_owned())
}

/// Whether an entry is about a refund (shown apart from the payment's).
fn is_refund(kind: TimelineKind) -> bool {
    use TimelineKind as K;
    match kind {
        K::RefundRequested
        | K::RefundAccepted
        | K::RefundSucceeded
        | K::RefundClosed
        | K::RefundFailed
        | K::RefundChange
        | K::RefundQueried => true,
        K::Created
        | K::PrepayIssued
        | K::Queried
        | K::PaymentConfirmed
        | K::PaymentFailed
        | K::Closed
        | K::CloseAttempted => false,
    }
}

fn source_name(source: &str, kind: Option<TimelineKind>) -> &str {
    let refund = kind.is_some_and(is_refund);
    match TimelineSource::parse(source) {
        Some(TimelineSource::Notify) if refund => "退款通知",
        Some(TimelineSource::Notify) => "支付通知",
        Some(TimelineSource::Query) => "查询",
        Some(TimelineSource::Checkout) => "收银台",
        Some(TimelineSource::Api) => "商户 API",
        Some(TimelineSource::Close) => "关单",
        Some(TimelineSource::Admin) => "后台",
        Some(TimelineSource::Refund) => "退款接口",
        None => source,
    }
}

fn event_title(e: &TimelineEntry) -> String {
    let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
    let get = |k: &str| detail.get(k).and_then(|v| v.as_str());
    let Some(kind) = e.kind() else { return e.kind.clone() };
    let source = source_name(&e.source, Some(kind));
    match kind {
        TimelineKind::Created => "订单创建".into(),
        TimelineKind::PrepayIssued => "统一下单，获得预支付 ID".into(),
        TimelineKind::Queried => match (get("trade_state"), get("result")) {
            (Some(ts), _) => format!("查询订单：微信支付返回 {ts}"),
            (None, Some(r)) => format!("查询订单：{r}"),
            _ => "查询订单".into(),
        },
        TimelineKind::PaymentConfirmed => format!("确认支付（来源：{source}）"),
        TimelineKind::PaymentFailed => format!("支付失败（来源：{source}）"),
        TimelineKind::Closed => format!("订单关闭（来源：{source}）"),
        TimelineKind::CloseAttempted => format!("关单请求未关闭订单：{}", get("result").unwrap_or("")),
        TimelineKind::RefundRequested => "发起退款".into(),
        TimelineKind::RefundAccepted => format!("微信支付受理退款（来源：{source}）"),
        TimelineKind::RefundSucceeded => format!("退款成功（来源：{source}）"),
        TimelineKind::RefundClosed => format!("退款关闭（来源：{source}）"),
        TimelineKind::RefundFailed => format!("退款失败（来源：{source}）"),
        TimelineKind::RefundChange => format!("退款异常，资金退回商户（来源：{source}）"),
        TimelineKind::RefundQueried => format!("查询退款：{}", get("refund_status").or(get("result")).unwrap_or("")),
    }
}

fn event_item(e: &TimelineEntry) -> Item {
    let category = if e.kind().is_some_and(is_refund) { "refund" } else { "event" };
    let mut item = Item::new(e.at(), (1, e.id), category, event_title(e));
    item.badge = match (&e.from_state, &e.to_state) {
        (Some(from), Some(to)) if from != to => {
            Some(("wait", format!("{} → {}", order_state_name(from), order_state_name(to))))
        }
        (None, Some(to)) => Some(("muted", order_state_name(to))),
        _ => None,
    };
    item.lines = detail_pairs(&e.detail);
    if let Some((_, amount)) = item.lines.iter_mut().find(|(k, _)| k == "金额")
        && let Ok(fen) = amount.parse::<i64>()
    {
        *amount = format!("{} ({fen} 分)", yuan(Fen::new(fen)));
    }
    item
}

fn notify_item(n: &NotifyRecord) -> Item {
    let (verdict, class) = labels::verdict_text(&n.verdict);
    let kind = labels::notify_kind(n.kind().unwrap_or(NotifyKind::Payment));
    let mut item = Item::new(n.received_at.and_utc(), (2, n.id), "notify", format!("{kind} #{}", n.id));
    item.badge = Some((class, verdict.to_owned()));
    item.lines.push(("判定".to_owned(), format!("{verdict} ({})", n.verdict)));
    if !n.reason.is_empty() {
        item.lines.push(("原因".into(), n.reason.clone()));
    }
    if let Some(t) = &n.transaction_id {
        item.lines.push(("微信支付单号".into(), t.clone()));
    }
    if let Some(r) = &n.remote_addr {
        item.lines.push(("来源地址".into(), r.clone()));
    }
    item.reply = Some(n.reply.clone());
    item.raw = Some(n.raw_body.clone());
    item.notify_id = Some(n.id);
    item
}

fn exception_items(x: &ExceptionRecord) -> Vec<Item> {
    let title = format!("异常 #{}：{}", x.id, labels::exception_kind_text(&x.kind));
    let mut raised = Item::new(x.created_at.and_utc(), (3, x.id), "exception", title);
    raised.badge = Some(("bad", "待处理".into())).filter(|_| x.resolved_at.is_none());
    raised.lines = detail_pairs(&x.detail);
    let mut items = vec![raised];
    if let Some(resolved) = x.resolved_at {
        let mut done = Item::new(resolved.and_utc(), (4, x.id), "exception", format!("异常 #{} 已处理", x.id));
        done.badge = Some(("ok", "已处理".into()));
        done.lines = vec![
            ("处理人".into(), x.resolved_by.clone().unwrap_or_default()),
            ("备注".into(), x.resolution_note.clone().unwrap_or_default()),
        ];
        items.push(done);
    }
    items
}

fn audit_item(a: &AuditRecord) -> Item {
    let label = labels::audit_action_text(&a.action).unwrap_or(&a.action);
    let title = format!("后台操作：{label}（{}）", a.actor);
    let mut item = Item::new(a.at.and_utc(), (5, a.id), "audit", title);
    item.lines.push(("操作人".to_owned(), a.actor.clone()));
    if let Some(ip) = &a.remote_addr {
        item.lines.push(("来源地址".into(), ip.clone()));
    }
    if let Some(t) = &a.target {
        item.lines.push(("对象".into(), t.clone()));
    }
    item.lines.extend(detail_pairs(&a.detail).into_iter().filter(|(k, _)| k != "操作人"));
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_read_as_pairs() {
        assert_eq!(
            detail_pairs(r#"{"a":"x","b":2,"c":null,"paid_at":"2026-01-01T00:00:00+00:00"}"#),
            vec![
                ("a".to_owned(), "x".to_owned()),
                ("b".to_owned(), "2".to_owned()),
                ("支付时间".to_owned(), "2026-01-01 08:00:00".to_owned())
            ]
        );
        assert!(detail_pairs("{}").is_empty());
        assert_eq!(detail_pairs("plain"), vec![(String::new(), "plain".to_owned())]);
    }
}
