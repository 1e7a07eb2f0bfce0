//! The notify log (`GET /admin/notifies`): every delivery WeChat made to us, newest first, in
//! keyset pages by id, filtered by verdict and kind, with the raw body; and re-processing a
//! stored delivery (`POST /admin/notifies/<id>/reprocess`, operators), which feeds the stored
//! body through the same handler as a live one, so it is verified, applied and logged again.

use askama::Template;
use rocket::form::FromForm;
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::response::{Flash, Redirect};
use rocket::{State, get, post, routes};
use serde_json::json;

use super::layout::Chrome;
use super::session::{AdminForm, CsrfField, Operator, Staff};
use super::view::beijing_time;
use crate::db::notify_log;
use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::refund::Actor;
use crate::web::page::render;
use crate::wxpay::notify::SUCCESS_REPLY;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_notifies, post_reprocess]
}

pub const PAGE_SIZE: i64 = 50;

/// Verdicts with a Chinese name; others show by their code.
const VERDICTS: &[(&str, &str, &str)] = &[
    ("paid", "已入账", "ok"),
    ("duplicate", "重复通知", "muted"),
    ("paid_after_close", "关单后支付", "bad"),
    ("unknown_order", "未知订单", "bad"),
    ("amount_mismatch", "金额不符", "bad"),
    ("conflicting_payment", "重复支付", "bad"),
    ("refused", "状态不允许", "bad"),
    ("payment_failed", "支付失败", "wait"),
    ("bad_xml", "XML 错误", "bad"),
    ("bad_signature", "签名错误", "bad"),
    ("foreign_merchant", "商户不符", "bad"),
    ("return_fail", "通信失败", "bad"),
    ("bad_field", "字段错误", "bad"),
    ("decrypt_failed", "解密失败", "bad"),
    ("too_large", "请求过大", "bad"),
    ("error", "处理出错", "bad"),
    ("refund_success", "退款成功", "ok"),
    ("refund_processing", "退款处理中", "wait"),
    ("refund_change", "退款异常", "bad"),
    ("refund_closed", "退款关闭", "muted"),
    ("refund_failed", "退款失败", "bad"),
    ("unknown_refund", "未知退款", "bad"),
    ("refund_mismatch", "退款信息不符", "bad"),
    ("refund_conflict", "退款状态冲突", "bad"),
];

pub fn verdict_label(verdict: &str) -> &str {
    VERDICTS.iter().find(|(v, _, _)| *v == verdict).map_or(verdict, |(_, label, _)| label)
}

pub fn verdict_class(verdict: &str) -> &'static str {
    VERDICTS.iter().find(|(v, _, _)| *v == verdict).map_or("muted", |(_, _, class)| class)
}

pub fn kind_name(kind: &str) -> &str {
    match kind {
        "payment" => "支付通知",
        "refund" => "退款通知",
        other => other,
    }
}

/// A filter value we could have stored: short, lower-case code characters only.
fn code(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 40 && v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .map(str::to_owned)
}

struct Row {
    id: i64,
    when: String,
    kind: String,
    kind_name: String,
    out_trade_no: Option<String>,
    transaction_id: String,
    verdict: String,
    verdict_label: String,
    verdict_class: &'static str,
    reason: String,
    remote: String,
    raw: String,
    reply: String,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "admin/notifies.html")]
struct NotifiesPage {
    chrome: Chrome,
    rows: Vec<Row>,
    verdicts: Vec<Choice>,
    kinds: Vec<Choice>,
    older: Option<String>,
    first: Option<String>,
    can_reprocess: bool,
    back: String,
}

fn href(verdict: &Option<String>, kind: &Option<String>, before: Option<i64>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(v) = verdict {
        q.append_pair("verdict", v);
    }
    if let Some(k) = kind {
        q.append_pair("kind", k);
    }
    if let Some(b) = before {
        q.append_pair("before", &b.to_string());
    }
    let q = q.finish();
    if q.is_empty() { "/admin/notifies".into() } else { format!("/admin/notifies?{q}") }
}

#[get("/admin/notifies?<verdict>&<kind>&<before>")]
async fn get_notifies(
    staff: Staff,
    verdict: Option<&str>,
    kind: Option<&str>,
    before: Option<i64>,
    flash: Option<FlashMessage<'_>>,
    payments: &State<Payments>,
) -> Result<RawHtml<String>, AppError> {
    let (verdict, kind) = (code(verdict), code(kind));
    let (v, k) = (verdict.clone(), kind.clone());
    let (mut rows, known) = payments
        .db
        .read(move |c| -> Result<_, AppError> {
            let rows = notify_log::page(c, v.as_deref(), k.as_deref(), before, PAGE_SIZE + 1)?;
            Ok((rows, notify_log::verdicts(c)?))
        })
        .await?;
    let older = (rows.len() as i64 > PAGE_SIZE).then(|| {
        rows.truncate(PAGE_SIZE as usize);
        href(&verdict, &kind, rows.last().map(|r| r.id))
    });
    let rows = rows
        .into_iter()
        .map(|n| Row {
            id: n.id,
            when: beijing_time(n.received_at.and_utc()),
            kind_name: kind_name(&n.kind).to_owned(),
            kind: n.kind,
            out_trade_no: n.out_trade_no.filter(|no| crate::wxpay::types::is_valid_merchant_no(no, 32)),
            transaction_id: n.transaction_id.unwrap_or_default(),
            verdict_label: verdict_label(&n.verdict).to_owned(),
            verdict_class: verdict_class(&n.verdict),
            verdict: n.verdict,
            reason: n.reason,
            remote: n.remote_addr.unwrap_or_default(),
            raw: n.raw_body,
            reply: n.reply,
        })
        .collect();
    let mut verdict_codes: Vec<String> = VERDICTS.iter().map(|(v, _, _)| (*v).to_owned()).collect();
    for v in known {
        if !verdict_codes.contains(&v) {
            verdict_codes.push(v);
        }
    }
    let verdicts = verdict_codes
        .into_iter()
        .map(|v| Choice {
            label: format!("{} ({v})", verdict_label(&v)),
            selected: verdict.as_deref() == Some(v.as_str()),
            value: v,
        })
        .collect();
    let kinds = ["payment", "refund"]
        .into_iter()
        .map(|k| Choice { value: k.into(), label: kind_name(k).into(), selected: kind.as_deref() == Some(k) })
        .collect();
    let first = before.map(|_| href(&verdict, &kind, None));
    let back = href(&verdict, &kind, before);
    let chrome = Chrome::new(&staff, "notifies", flash);
    render(&NotifiesPage { can_reprocess: chrome.is_operator(), chrome, rows, verdicts, kinds, older, first, back })
}

#[derive(FromForm)]
pub struct BackForm {
    #[field(default = String::new())]
    pub csrf: String,
    /// Where to return: an admin page (anything else falls back to the notify log).
    #[field(default = String::new())]
    pub back: String,
}

impl CsrfField for BackForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Only local admin paths are followed (no open redirect).
pub fn safe_back(back: &str, fallback: &str) -> String {
    if back.starts_with("/admin") && !back.starts_with("//") && !back.contains('\\') && !back.contains("://") {
        back.to_owned()
    } else {
        fallback.to_owned()
    }
}

#[post("/admin/notifies/<id>/reprocess", data = "<form>")]
async fn post_reprocess(
    op: Operator,
    id: i64,
    form: AdminForm<BackForm>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let staff = op.0;
    let back = safe_back(&form.0.back, "/admin/notifies");
    let row = payments.db.read(move |c| notify_log::find(c, id)).await?.ok_or(AppError::NotFound("notify"))?;
    // Marks the new log row as a re-run by staff, not a delivery from WeChat's address.
    let remote = Some(format!("admin:{} (re-process #{id})", staff.username));
    let reply = match row.kind.as_str() {
        "payment" => payments.handle_payment_notify(row.raw_body.as_bytes(), remote).await,
        "refund" => payments.handle_refund_notify(row.raw_body.as_bytes(), remote).await,
        other => return Ok(Flash::error(Redirect::to(back), format!("无法重新处理 {other} 类型的通知"))),
    };
    let accepted = reply == SUCCESS_REPLY;
    let actor = Actor { username: staff.username.clone(), remote_addr: staff.remote_addr.clone() };
    let order = row.out_trade_no.clone();
    let target = format!("notify:{id}");
    let detail = json!({ "notify_id": id, "kind": row.kind, "reply": if accepted { "SUCCESS" } else { "FAIL" } });
    payments.db.write(move |c| actor.record(c, "notify_reprocess", order.as_deref(), Some(&target), detail)).await?;
    Ok(if accepted {
        Flash::success(Redirect::to(back), format!("通知 #{id} 已重新处理，结果已记入通知日志（应答 SUCCESS）"))
    } else {
        Flash::error(Redirect::to(back), format!("通知 #{id} 重新处理后仍未通过（应答 FAIL），详见通知日志"))
    })
}
