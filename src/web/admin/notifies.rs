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

use super::labels;
use super::layout::Chrome;
use super::session::{AdminForm, CsrfField, Operator, Staff};
use super::view::beijing_time;
use crate::domain::{NotifyKind, NotifyVerdict};
use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::staff_actions::Reprocessed;
use crate::web::page::render;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_notifies, post_reprocess]
}

pub const PAGE_SIZE: i64 = 50;

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
    let (mut rows, known) = payments.notifies_page(verdict.clone(), kind.clone(), before, PAGE_SIZE + 1).await?;
    let older = (rows.len() as i64 > PAGE_SIZE).then(|| {
        rows.truncate(PAGE_SIZE as usize);
        href(&verdict, &kind, rows.last().map(|r| r.id))
    });
    let rows = rows
        .into_iter()
        .map(|n| {
            let (verdict_label, verdict_class) = labels::verdict_text(&n.verdict);
            Row {
                id: n.id,
                when: beijing_time(n.received_at.and_utc()),
                kind_name: labels::notify_kind_text(&n.kind).to_owned(),
                out_trade_no: n.out_trade_no.filter(|no| crate::wxpay::types::is_valid_merchant_no(no, 32)),
                transaction_id: n.transaction_id.unwrap_or_default(),
                verdict_label: verdict_label.to_owned(),
                verdict_class,
                kind: n.kind,
                verdict: n.verdict,
                reason: n.reason,
                remote: n.remote_addr.unwrap_or_default(),
                raw: n.raw_body,
                reply: n.reply,
            }
        })
        .collect();
    // Every verdict a delivery can get (the transient `pending` never is stored), then any other
    // stored one.
    let mut verdict_codes: Vec<String> =
        NotifyVerdict::ALL.iter().filter(|v| **v != NotifyVerdict::Pending).map(|v| v.as_str().to_owned()).collect();
    for v in known {
        if !verdict_codes.contains(&v) {
            verdict_codes.push(v);
        }
    }
    let verdicts = verdict_codes
        .into_iter()
        .map(|v| Choice {
            label: format!("{} ({v})", labels::verdict_text(&v).0),
            selected: verdict.as_deref() == Some(v.as_str()),
            value: v,
        })
        .collect();
    let kinds = NotifyKind::ALL
        .into_iter()
        .map(|k| Choice {
            value: k.as_str().into(),
            label: labels::notify_kind(k).into(),
            selected: kind.as_deref() == Some(k.as_str()),
        })
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
    let back = safe_back(&form.0.back, "/admin/notifies");
    Ok(match payments.reprocess_notify(id, &op.0.actor()).await? {
        Reprocessed::UnknownKind(other) => Flash::error(Redirect::to(back), format!("无法重新处理 {other} 类型的通知")),
        Reprocessed::Done { accepted: true } => {
            Flash::success(Redirect::to(back), format!("通知 #{id} 已重新处理，结果已记入通知日志（应答 SUCCESS）"))
        }
        Reprocessed::Done { accepted: false } => {
            Flash::error(Redirect::to(back), format!("通知 #{id} 重新处理后仍未通过（应答 FAIL），详见通知日志"))
        }
    })
}
