//! Exceptions (`GET /admin/exceptions`): what the machines could not settle, open ones first,
//! filtered by status and kind, in keyset pages; and resolving one with a required note
//! (`POST /admin/exceptions/<id>/resolve`, operators), a guarded UPDATE audited in the same
//! transaction.

use askama::Template;
use rocket::form::FromForm;
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::response::{Flash, Redirect};
use rocket::{State, get, post, routes};
use serde_json::json;

use super::layout::Chrome;
use super::notifies::safe_back;
use super::order_detail::detail_pairs;
use super::session::{AdminForm, CsrfField, Operator, Staff};
use super::view::beijing_time;
use crate::db::exceptions::{self, ExceptionRow, Status};
use crate::db::{DbError, audit};
use crate::error::AppError;
use crate::payments::Payments;
use crate::web::page::render;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_exceptions, post_resolve]
}

pub const PAGE_SIZE: usize = 50;
/// A resolution note is for people; this is plenty.
pub const MAX_NOTE_CHARS: usize = 500;

/// Kinds with a Chinese name, in the order the filter lists them.
pub const KINDS: &[(&str, &str)] = &[
    ("amount_mismatch", "金额不符"),
    ("unknown_order", "未知订单"),
    ("paid_after_close", "关单后支付"),
    ("conflicting_payment", "重复支付"),
    ("prepay_refused", "下单被拒"),
    ("refund_change", "退款异常"),
    ("unknown_refund", "未知退款"),
    ("refund_mismatch", "退款信息不符"),
    ("refund_conflict", "退款状态冲突"),
];

pub fn kind_label(kind: &str) -> &'static str {
    KINDS.iter().find(|(k, _)| *k == kind).map_or("其他异常", |(_, label)| label)
}

struct Row {
    id: i64,
    kind: String,
    label: &'static str,
    out_trade_no: Option<String>,
    detail: Vec<(String, String)>,
    created_at: String,
    resolved: Option<(String, String, String)>,
}

struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "admin/exceptions.html")]
struct ExceptionsPage {
    chrome: Chrome,
    rows: Vec<Row>,
    statuses: Vec<Choice>,
    kinds: Vec<Choice>,
    older: Option<String>,
    first: Option<String>,
    can_resolve: bool,
    back: String,
    open_count: i64,
}

/// `open` (default), `resolved` or `all` (open first, then resolved).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Show {
    Open,
    Resolved,
    All,
}

impl Show {
    fn parse(s: Option<&str>) -> Show {
        match s {
            Some("resolved") => Show::Resolved,
            Some("all") => Show::All,
            _ => Show::Open,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Show::Open => "open",
            Show::Resolved => "resolved",
            Show::All => "all",
        }
    }
}

/// Where a page starts: in the open or resolved part of the list, before an id.
#[derive(Clone, Copy)]
struct Cursor {
    resolved_part: bool,
    before: Option<i64>,
}

fn href(show: Show, kind: &Option<String>, cursor: Option<Cursor>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if show != Show::Open {
        q.append_pair("status", show.as_str());
    }
    if let Some(k) = kind {
        q.append_pair("kind", k);
    }
    if let Some(c) = cursor {
        if c.resolved_part && show == Show::All {
            q.append_pair("part", "resolved");
        }
        if let Some(b) = c.before {
            q.append_pair("before", &b.to_string());
        }
    }
    let q = q.finish();
    if q.is_empty() { "/admin/exceptions".into() } else { format!("/admin/exceptions?{q}") }
}

/// Loads one page (plus one row to know whether another follows), open rows before resolved
/// ones when showing all.
fn load(
    c: &mut crate::db::AnyConnection,
    show: Show,
    kind: Option<&str>,
    cursor: Cursor,
) -> Result<Vec<ExceptionRow>, DbError> {
    let want = PAGE_SIZE as i64 + 1;
    Ok(match show {
        Show::Open => exceptions::page(c, Status::Open, kind, cursor.before, want)?,
        Show::Resolved => exceptions::page(c, Status::Resolved, kind, cursor.before, want)?,
        Show::All if cursor.resolved_part => exceptions::page(c, Status::Resolved, kind, cursor.before, want)?,
        Show::All => {
            let mut rows = exceptions::page(c, Status::Open, kind, cursor.before, want)?;
            if (rows.len() as i64) < want {
                rows.extend(exceptions::page(c, Status::Resolved, kind, None, want - rows.len() as i64)?);
            }
            rows
        }
    })
}

#[get("/admin/exceptions?<status>&<kind>&<part>&<before>")]
async fn get_exceptions(
    staff: Staff,
    status: Option<&str>,
    kind: Option<&str>,
    part: Option<&str>,
    before: Option<i64>,
    flash: Option<FlashMessage<'_>>,
    payments: &State<Payments>,
) -> Result<RawHtml<String>, AppError> {
    let show = Show::parse(status);
    let kind = kind
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 40 && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .map(str::to_owned);
    let cursor = Cursor { resolved_part: show == Show::Resolved || part == Some("resolved"), before };
    let k = kind.clone();
    let (mut rows, known, open_count) = payments
        .db
        .read(move |c| -> Result<_, AppError> {
            Ok((load(c, show, k.as_deref(), cursor)?, exceptions::kinds(c)?, exceptions::count_open(c)?))
        })
        .await?;
    let older = (rows.len() > PAGE_SIZE).then(|| {
        rows.truncate(PAGE_SIZE);
        let last = rows.last().expect("a full page has a last row");
        href(show, &kind, Some(Cursor { resolved_part: last.resolved_at.is_some(), before: Some(last.id) }))
    });
    let first = before.map(|_| href(show, &kind, None));
    let back = href(show, &kind, Some(cursor));
    let rows = rows
        .into_iter()
        .map(|x| Row {
            id: x.id,
            label: kind_label(&x.kind),
            kind: x.kind,
            out_trade_no: x.out_trade_no,
            detail: detail_pairs(&x.detail),
            created_at: beijing_time(x.created_at.and_utc()),
            resolved: x.resolved_at.map(|at| {
                (beijing_time(at.and_utc()), x.resolved_by.unwrap_or_default(), x.resolution_note.unwrap_or_default())
            }),
        })
        .collect();
    let statuses = [("open", "未处理"), ("resolved", "已处理"), ("all", "全部")]
        .into_iter()
        .map(|(v, l)| Choice { value: v.into(), label: l.into(), selected: show.as_str() == v })
        .collect();
    let mut codes: Vec<String> = KINDS.iter().map(|(k, _)| (*k).to_owned()).collect();
    for k in known {
        if !codes.contains(&k) {
            codes.push(k);
        }
    }
    let kinds = codes
        .into_iter()
        .map(|k| Choice { label: format!("{} ({k})", kind_label(&k)), selected: kind.as_deref() == Some(&k), value: k })
        .collect();
    let chrome = Chrome::new(&staff, "exceptions", flash);
    render(&ExceptionsPage {
        can_resolve: chrome.is_operator(),
        chrome,
        rows,
        statuses,
        kinds,
        older,
        first,
        back,
        open_count,
    })
}

#[derive(FromForm)]
struct ResolveForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    note: String,
    #[field(default = String::new())]
    back: String,
}

impl CsrfField for ResolveForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[post("/admin/exceptions/<id>/resolve", data = "<form>")]
async fn post_resolve(
    op: Operator,
    id: i64,
    form: AdminForm<ResolveForm>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let staff = op.0;
    let form = form.0;
    let back = safe_back(&form.back, "/admin/exceptions");
    let note = form.note.trim().to_owned();
    if note.is_empty() {
        return Ok(Flash::error(Redirect::to(back), "请填写处理说明"));
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Ok(Flash::error(Redirect::to(back), format!("处理说明最多 {MAX_NOTE_CHARS} 个字符")));
    }
    let resolved = payments
        .db
        .write(move |c| -> Result<Option<bool>, DbError> {
            let Some(x) = exceptions::find(c, id)? else { return Ok(None) };
            if !exceptions::resolve(c, id, &staff.username, &note, crate::db::now())? {
                return Ok(Some(false));
            }
            let target = format!("exception:{id}");
            let detail = json!({ "exception_id": id, "kind": x.kind, "note": note });
            audit::record(c, &staff.audit("exception_resolved", x.out_trade_no.as_deref(), Some(&target), detail))?;
            Ok(Some(true))
        })
        .await?;
    Ok(match resolved {
        None => return Err(AppError::NotFound("exception")),
        Some(true) => Flash::success(Redirect::to(back), format!("异常 #{id} 已标记为已处理")),
        Some(false) => Flash::warning(Redirect::to(back), format!("异常 #{id} 已被他人处理，未重复处理")),
    })
}
