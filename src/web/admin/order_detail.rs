//! `GET /admin/orders/<out_trade_no>`: every field of an order, its refunds and open exceptions,
//! the actions the viewer's role allows, and one timeline, newest first, merging the order's
//! events, every notify delivery, exceptions raised and resolved, and staff actions.

use askama::Template;
use chrono::Utc;
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::{State, get, routes};

use super::labels;
use super::layout::Chrome;
use super::messages;
use super::order_timeline::{Item, detail_pairs, timeline};
use super::session::Staff;
use super::view::{beijing_time, opt_time, yuan};
use crate::domain::refund::progress;
use crate::domain::{ClosePath, Fen, Order, OrderState, Refund};
use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::console::OrderDossier;
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

#[get("/admin/orders/<no>")]
async fn get_order(
    staff: Staff,
    no: &str,
    flash: Option<FlashMessage<'_>>,
    payments: &State<Payments>,
) -> Result<RawHtml<String>, AppError> {
    let no = checked_no(no)?.to_owned();
    let dossier = payments.order_dossier(&no).await?.ok_or(AppError::NotFound("order"))?;
    let chrome = Chrome::new(&staff, "orders", flash);
    render(&page(chrome, no, dossier))
}

fn page(chrome: Chrome, no: String, d: OrderDossier) -> OrderPage {
    let o = &d.order;
    let (refund_label, refund_class) =
        messages::refund_progress(progress(o.paid, o.refunded, o.refund_reserved, &d.refunds));
    let refundable = o.refundable();
    let refund_form =
        (chrome.can_refund() && o.state == OrderState::Paid && refundable.is_positive()).then(|| RefundFormView {
            out_refund_no: format!("R{}-{}", o.out_trade_no, random_alphanumeric(6)),
            default_amount: refundable.to_yuan_string(),
            refundable: yuan(refundable),
        });
    let payable = o.state.is_payable();
    OrderPage {
        can_requery: chrome.is_operator(),
        can_close: chrome.is_operator() && payable,
        back: format!("/admin/orders/{no}"),
        state: o.state.as_str(),
        state_label: labels::order_state(o.state),
        state_class: labels::order_state_class(o.state),
        refund_label,
        refund_class,
        paid_after_close: o.paid_after_close,
        fields: fields(o),
        refunds: d.refunds.iter().rev().map(refund_view).collect(),
        exceptions: open_exceptions(&d),
        timeline: timeline(&d),
        close_hint: close_hint(o),
        refund_form,
        chrome,
        no,
    }
}

/// What the close button will do, when it is not a plain close at WeChat.
fn close_hint(o: &Order) -> Option<String> {
    match o.close_path(Utc::now()) {
        ClosePath::TooEarly { wait } => {
            Some(format!("微信支付要求下单 5 分钟后才能关单（约 {} 秒后可关闭）", wait.num_seconds().max(1)))
        }
        ClosePath::Locally => Some("此订单尚未在微信支付下单，将直接在本地关闭".to_owned()),
        ClosePath::AtWechat | ClosePath::Paid | ClosePath::AlreadyClosed => None,
    }
}

fn fields(o: &Order) -> Vec<Field> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let money = |label, id, fen: Fen| Field { label, value: yuan(fen), id, fen: Some(fen.get()) };
    let text = |label, id, value: String| Field { label, value, id, fen: None };
    let paid = Field {
        label: "实付金额",
        value: o.paid.map(yuan).unwrap_or_default(),
        id: "f-paid",
        fen: o.paid.map(Fen::get),
    };
    vec![
        text("商户订单号（out_trade_no）", "f-out-trade-no", o.out_trade_no.clone()),
        text("商户业务单号", "f-merchant-order-id", o.merchant_order_id.clone()),
        text("商品描述", "f-description", o.description.clone()),
        text("附加数据", "f-attach", opt(&o.attach)),
        money("订单金额", "f-amount", o.amount),
        text("微信支付单号", "f-transaction-id", opt(&o.transaction_id)),
        paid,
        text("支付时间", "f-paid-at", opt_time(o.paid_at)),
        money("已退款金额", "f-refunded", o.refunded),
        money("已退及退款中金额", "f-reserved", o.refund_reserved),
        money("可退金额", "f-refundable", o.refundable()),
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
    ]
}

fn refund_view(r: &Refund) -> RefundView {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    RefundView {
        out_refund_no: r.out_refund_no.clone(),
        amount: yuan(r.amount),
        amount_fen: r.amount.get(),
        reason: r.reason.clone(),
        state: r.state.as_str(),
        state_label: labels::refund_state(r.state),
        state_class: labels::refund_state_class(r.state),
        refund_id: opt(&r.refund_id),
        requested_by: r.requested_by.clone(),
        last_error: opt(&r.last_error),
        created_at: beijing_time(r.created_at),
        updated_at: beijing_time(r.updated_at),
        succeeded_at: opt_time(r.succeeded_at),
        retryable: r.may_resend(Utc::now()),
    }
}

fn open_exceptions(d: &OrderDossier) -> Vec<ExceptionView> {
    d.exceptions
        .iter()
        .rev()
        .filter(|e| e.resolved_at.is_none())
        .map(|e| ExceptionView {
            id: e.id,
            kind: e.kind.clone(),
            label: labels::exception_kind_text(&e.kind),
            detail: detail_pairs(&e.detail),
            created_at: beijing_time(e.created_at.and_utc()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openids_are_masked() {
        assert_eq!(mask("oUpF8uMEb4qRXf22hE3X68TekukE"), "oUpF8u…kukE");
        assert_eq!(mask("short"), "*****");
    }
}
