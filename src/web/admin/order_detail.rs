//! `GET /admin/orders/<out_trade_no>`: every field of an order, its refunds and open exceptions,
//! the actions the viewer's role allows, and one timeline, newest first, merging the order's
//! events, every notify delivery, exceptions raised and resolved, and staff actions.

use askama::Template;
use chrono::{DateTime, Utc};
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::{State, get, routes};

use super::exceptions::kind_label;
use super::layout::Chrome;
use super::notifies::{verdict_class, verdict_label};
use super::session::Staff;
use super::view::{beijing_time, opt_time, state_class, state_label, yuan};
use crate::db::audit::{self, AuditRow};
use crate::db::events::{self, EventRow};
use crate::db::exceptions::{self, ExceptionRow};
use crate::db::notify_log::{self, NotifyLogRow};
use crate::db::orders::{self, Order};
use crate::db::refunds::{self, RefundRow, RefundState};
use crate::domain::{Fen, OrderState};
use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::close::CLOSE_MIN_AGE;
use crate::payments::refund::state_label as refund_state_label;
use crate::web::page::render;
use crate::wxpay::nonce::random_alphanumeric;
use crate::wxpay::types::is_valid_merchant_no;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_order]
}

/// An order number from a URL: anything that cannot be one is simply not found.
pub fn checked_no(no: &str) -> Result<&str, AppError> {
    if is_valid_merchant_no(no, 32) { Ok(no) } else { Err(AppError::NotFound("order")) }
}

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

/// The order's refund state, from its amounts and refunds.
pub fn refund_status(order: &Order, refunds: &[RefundRow]) -> (&'static str, &'static str) {
    let paid = order.paid.unwrap_or_default();
    if refunds.iter().any(|r| r.state == RefundState::Change) {
        ("退款异常", "bad")
    } else if order.refunded.is_positive() && order.refunded >= paid {
        ("全额退款", "muted")
    } else if order.refund_reserved > order.refunded {
        ("退款中", "wait")
    } else if order.refunded.is_positive() {
        ("部分退款", "wait")
    } else {
        ("无", "muted")
    }
}

/// Masks all but the ends of an openid: enough to compare, not enough to reuse.
fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 10 {
        return "*".repeat(chars.len());
    }
    format!("{}…{}", chars[..6].iter().collect::<String>(), chars[chars.len() - 4..].iter().collect::<String>())
}

struct Field {
    label: &'static str,
    value: String,
    id: &'static str,
    /// Money fields carry their fen for tools and tests.
    fen: Option<i64>,
}

struct RefundView {
    out_refund_no: String,
    amount: String,
    amount_fen: i64,
    reason: String,
    state: &'static str,
    state_label: &'static str,
    state_class: &'static str,
    refund_id: String,
    requested_by: String,
    last_error: String,
    created_at: String,
    updated_at: String,
    succeeded_at: String,
    retryable: bool,
}

struct ExceptionView {
    id: i64,
    kind: String,
    label: &'static str,
    detail: Vec<(String, String)>,
    created_at: String,
}

/// One entry of the timeline.
pub struct Item {
    at: DateTime<Utc>,
    /// Tie-breaker among entries of the same instant: category, then id.
    seq: (u8, i64),
    when: String,
    category: &'static str,
    title: String,
    badge: Option<(&'static str, String)>,
    lines: Vec<(String, String)>,
    reply: Option<String>,
    raw: Option<String>,
    notify_id: Option<i64>,
}

struct RefundFormView {
    out_refund_no: String,
    default_amount: String,
    refundable: String,
}

#[derive(Template)]
#[template(path = "admin/order.html")]
struct OrderPage {
    chrome: Chrome,
    no: String,
    state: &'static str,
    state_label: &'static str,
    state_class: &'static str,
    refund_label: &'static str,
    refund_class: &'static str,
    paid_after_close: bool,
    fields: Vec<Field>,
    refunds: Vec<RefundView>,
    exceptions: Vec<ExceptionView>,
    timeline: Vec<Item>,
    can_requery: bool,
    can_close: bool,
    close_hint: Option<String>,
    refund_form: Option<RefundFormView>,
    back: String,
}

struct Loaded {
    order: Order,
    events: Vec<EventRow>,
    notifies: Vec<NotifyLogRow>,
    refunds: Vec<RefundRow>,
    exceptions: Vec<ExceptionRow>,
    audits: Vec<AuditRow>,
}

#[get("/admin/orders/<no>")]
async fn get_order(
    staff: Staff,
    no: &str,
    flash: Option<FlashMessage<'_>>,
    payments: &State<Payments>,
) -> Result<RawHtml<String>, AppError> {
    let no = checked_no(no)?.to_owned();
    let key = no.clone();
    let loaded = payments
        .db
        .read(move |c| -> Result<Option<Loaded>, AppError> {
            let Some(order) = orders::find(c, &key)? else { return Ok(None) };
            Ok(Some(Loaded {
                order,
                events: events::for_order(c, &key)?,
                notifies: notify_log::for_order(c, &key)?,
                refunds: refunds::for_order(c, &key)?,
                exceptions: exceptions::for_order(c, &key)?,
                audits: audit::for_order(c, &key)?,
            }))
        })
        .await?
        .ok_or(AppError::NotFound("order"))?;
    let chrome = Chrome::new(&staff, "orders", flash);
    render(&page(chrome, no, loaded))
}

fn page(chrome: Chrome, no: String, l: Loaded) -> OrderPage {
    let o = &l.order;
    let (refund_label, refund_class) = refund_status(o, &l.refunds);
    let paid = o.paid.unwrap_or_default();
    let refundable = paid.checked_sub(o.refund_reserved).unwrap_or_default();
    let payable = o.state.is_payable();
    let close_hint = match (payable, o.prepay_id.is_some()) {
        (true, true) => {
            let since = o.prepay_created_at.unwrap_or(o.created_at);
            let age = Utc::now() - since;
            (age < CLOSE_MIN_AGE).then(|| {
                format!(
                    "微信支付要求下单 5 分钟后才能关单（约 {} 秒后可关闭）",
                    (CLOSE_MIN_AGE - age).num_seconds().max(1)
                )
            })
        }
        (true, false) => Some("此订单尚未在微信支付下单，将直接在本地关闭".to_owned()),
        _ => None,
    };
    let refund_form =
        (chrome.is_admin() && o.state == OrderState::Paid && refundable.is_positive()).then(|| RefundFormView {
            out_refund_no: format!("R{}-{}", o.out_trade_no, random_alphanumeric(6)),
            default_amount: refundable.to_yuan_string(),
            refundable: yuan(refundable),
        });
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let money = |label, id, fen: Fen| Field { label, value: yuan(fen), id, fen: Some(fen.get()) };
    let text = |label, id, value: String| Field { label, value, id, fen: None };
    let fields = vec![
        text("商户订单号（out_trade_no）", "f-out-trade-no", o.out_trade_no.clone()),
        text("商户业务单号", "f-merchant-order-id", o.merchant_order_id.clone()),
        text("商品描述", "f-description", o.description.clone()),
        text("附加数据", "f-attach", opt(&o.attach)),
        money("订单金额", "f-amount", o.amount),
        text("微信支付单号", "f-transaction-id", opt(&o.transaction_id)),
        Field {
            label: "实付金额",
            value: o.paid.map(yuan).unwrap_or_default(),
            id: "f-paid",
            fen: o.paid.map(Fen::get),
        },
        text("支付时间", "f-paid-at", opt_time(o.paid_at)),
        money("已退款金额", "f-refunded", o.refunded),
        money("已退及退款中金额", "f-reserved", o.refund_reserved),
        money("可退金额", "f-refundable", refundable),
        text("关单后支付", "f-paid-after-close", if o.paid_after_close { "是".into() } else { "否".into() }),
        text("签名方式", "f-sign-type", o.sign_type.as_str().to_owned()),
        text("付款人 openid", "f-openid", o.openid.as_deref().map(mask).unwrap_or_default()),
        text("付款人 IP", "f-client-ip", opt(&o.client_ip)),
        text("预支付 ID", "f-prepay-id", opt(&o.prepay_id)),
        text("预支付时间", "f-prepay-at", opt_time(o.prepay_created_at)),
        text("创建时间", "f-created-at", beijing_time(o.created_at)),
        text("更新时间", "f-updated-at", beijing_time(o.updated_at)),
        text("过期时间", "f-expires-at", beijing_time(o.expires_at)),
        text("关闭时间", "f-closed-at", opt_time(o.closed_at)),
        text("最近查询时间", "f-queried-at", opt_time(o.last_queried_at)),
    ];
    let stale = Utc::now() - chrono::Duration::seconds(120);
    let refunds = l
        .refunds
        .iter()
        .rev()
        .map(|r| RefundView {
            out_refund_no: r.out_refund_no.clone(),
            amount: yuan(r.amount),
            amount_fen: r.amount.get(),
            reason: r.reason.clone(),
            state: r.state.as_str(),
            state_label: refund_state_label(r.state),
            state_class: refund_class_of(r.state),
            refund_id: opt(&r.refund_id),
            requested_by: r.requested_by.clone(),
            last_error: opt(&r.last_error),
            created_at: beijing_time(r.created_at),
            updated_at: beijing_time(r.updated_at),
            succeeded_at: opt_time(r.succeeded_at),
            retryable: r.state == RefundState::Pending && (r.last_error.is_some() || r.updated_at < stale),
        })
        .collect();
    let exceptions = l
        .exceptions
        .iter()
        .rev()
        .filter(|e| e.resolved_at.is_none())
        .map(|e| ExceptionView {
            id: e.id,
            kind: e.kind.clone(),
            label: kind_label(&e.kind),
            detail: detail_pairs(&e.detail),
            created_at: beijing_time(e.created_at.and_utc()),
        })
        .collect();
    let state = o.state;
    let timeline = timeline(&l);
    OrderPage {
        can_requery: chrome.is_operator(),
        can_close: chrome.is_operator() && payable,
        chrome,
        back: format!("/admin/orders/{no}"),
        no,
        state: state.as_str(),
        state_label: state_label(state),
        state_class: state_class(state),
        refund_label,
        refund_class,
        paid_after_close: l.order.paid_after_close,
        fields,
        refunds,
        exceptions,
        timeline,
        close_hint,
        refund_form,
    }
}

fn refund_class_of(state: RefundState) -> &'static str {
    match state {
        RefundState::Success => "ok",
        RefundState::Pending | RefundState::Processing => "wait",
        RefundState::Change | RefundState::Failed => "bad",
        RefundState::Closed => "muted",
    }
}

fn order_state_name(s: &str) -> String {
    OrderState::parse(s).map(|st| state_label(st).to_owned()).unwrap_or_else(|| s.to_owned())
}

fn event_title(e: &EventRow) -> String {
    let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
    let get = |k: &str| detail.get(k).and_then(|v| v.as_str());
    let source = match e.source.as_str() {
        "notify" if e.kind.starts_with("refund") => "退款通知",
        "notify" => "支付通知",
        "query" => "查询",
        "bill" => "对账单",
        "checkout" => "收银台",
        "api" => "商户 API",
        "close" => "关单",
        "admin" => "后台",
        "refund" => "退款接口",
        other => other,
    };
    match e.kind.as_str() {
        "created" => "订单创建".into(),
        "prepay_issued" => "统一下单，获得预支付 ID".into(),
        "queried" => match (get("trade_state"), get("result")) {
            (Some(ts), _) => format!("查询订单：微信支付返回 {ts}"),
            (None, Some(r)) => format!("查询订单：{r}"),
            _ => "查询订单".into(),
        },
        "payment_confirmed" => format!("确认支付（来源：{source}）"),
        "payment_failed" => format!("支付失败（来源：{source}）"),
        "closed" => format!("订单关闭（来源：{source}）"),
        "close_attempted" => format!("关单请求未关闭订单：{}", get("result").unwrap_or("")),
        "refund_requested" => "发起退款".into(),
        "refund_accepted" => format!("微信支付受理退款（来源：{source}）"),
        "refund_succeeded" => format!("退款成功（来源：{source}）"),
        "refund_closed" => format!("退款关闭（来源：{source}）"),
        "refund_failed" => format!("退款失败（来源：{source}）"),
        "refund_change" => format!("退款异常，资金退回商户（来源：{source}）"),
        "refund_queried" => {
            format!("查询退款：{}", get("refund_status").or(get("result")).unwrap_or(""))
        }
        other => other.to_owned(),
    }
}

fn timeline(l: &Loaded) -> Vec<Item> {
    let mut items = Vec::new();
    for e in &l.events {
        let mut lines = detail_pairs(&e.detail);
        let title = event_title(e);
        let badge = match (&e.from_state, &e.to_state) {
            (Some(from), Some(to)) if from != to => {
                Some(("wait", format!("{} → {}", order_state_name(from), order_state_name(to))))
            }
            (None, Some(to)) => Some(("muted", order_state_name(to))),
            _ => None,
        };
        if let Some((_, amount)) = lines.iter_mut().find(|(k, _)| k == "金额")
            && let Ok(fen) = amount.parse::<i64>()
        {
            *amount = format!("{} ({fen} 分)", yuan(Fen::new(fen)));
        }
        items.push(Item {
            at: e.at(),
            seq: (1, e.id),
            when: beijing_time(e.at()),
            category: if e.kind.starts_with("refund") { "refund" } else { "event" },
            title,
            badge,
            lines,
            reply: None,
            raw: None,
            notify_id: None,
        });
    }
    for n in &l.notifies {
        let at = n.received_at.and_utc();
        let mut lines = vec![("判定".to_owned(), format!("{} ({})", verdict_label(&n.verdict), n.verdict))];
        if !n.reason.is_empty() {
            lines.push(("原因".into(), n.reason.clone()));
        }
        if let Some(t) = &n.transaction_id {
            lines.push(("微信支付单号".into(), t.clone()));
        }
        if let Some(r) = &n.remote_addr {
            lines.push(("来源地址".into(), r.clone()));
        }
        items.push(Item {
            at,
            seq: (2, n.id),
            when: beijing_time(at),
            category: "notify",
            title: format!("{} #{}", if n.kind == "refund" { "退款通知" } else { "支付通知" }, n.id),
            badge: Some((verdict_class(&n.verdict), verdict_label(&n.verdict).to_owned())),
            lines,
            reply: Some(n.reply.clone()),
            raw: Some(n.raw_body.clone()),
            notify_id: Some(n.id),
        });
    }
    for x in &l.exceptions {
        let at = x.created_at.and_utc();
        items.push(Item {
            at,
            seq: (3, x.id),
            when: beijing_time(at),
            category: "exception",
            title: format!("异常 #{}：{}", x.id, kind_label(&x.kind)),
            badge: Some(("bad", "待处理".into())).filter(|_| x.resolved_at.is_none()),
            lines: detail_pairs(&x.detail),
            reply: None,
            raw: None,
            notify_id: None,
        });
        if let Some(resolved) = x.resolved_at {
            let at = resolved.and_utc();
            items.push(Item {
                at,
                seq: (4, x.id),
                when: beijing_time(at),
                category: "exception",
                title: format!("异常 #{} 已处理", x.id),
                badge: Some(("ok", "已处理".into())),
                lines: vec![
                    ("处理人".into(), x.resolved_by.clone().unwrap_or_default()),
                    ("备注".into(), x.resolution_note.clone().unwrap_or_default()),
                ],
                reply: None,
                raw: None,
                notify_id: None,
            });
        }
    }
    for a in &l.audits {
        let at = a.at.and_utc();
        let mut lines = vec![("操作人".to_owned(), a.actor.clone())];
        if let Some(ip) = &a.remote_addr {
            lines.push(("来源地址".into(), ip.clone()));
        }
        if let Some(t) = &a.target {
            lines.push(("对象".into(), t.clone()));
        }
        lines.extend(detail_pairs(&a.detail).into_iter().filter(|(k, _)| k != "操作人"));
        let label = super::audit::action_label(&a.action).unwrap_or(&a.action);
        items.push(Item {
            at,
            seq: (5, a.id),
            when: beijing_time(at),
            category: "audit",
            title: format!("后台操作：{label}（{}）", a.actor),
            badge: None,
            lines,
            reply: None,
            raw: None,
            notify_id: None,
        });
    }
    items.sort_by(|a, b| b.at.cmp(&a.at).then(b.seq.cmp(&a.seq)));
    items
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

    #[test]
    fn openids_are_masked() {
        assert_eq!(mask("oUpF8uMEb4qRXf22hE3X68TekukE"), "oUpF8u…kukE");
        assert_eq!(mask("short"), "*****");
    }
}
