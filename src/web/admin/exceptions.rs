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

use super::labels;
use super::layout::Chrome;
use super::notifies::safe_back;
use super::order_timeline::detail_pairs;
use super::session::{AdminForm, CsrfField, Operator, Staff};
use super::view::beijing_time;
use crate::domain::ExceptionKind;
use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::console::{ExceptionCursor, ExceptionShow};
use crate::web::page::render;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_exceptions, post_resolve]
}

pub const PAGE_SIZE: usize = 50;
/// A resolution note is for people; this is plenty.
pub const MAX_NOTE_CHARS: usize = 500;

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
fn parse_show(s: Option<&str>) -> ExceptionShow {
    match s {
        Some("resolved") => ExceptionShow::Resolved,
        Some("all") => ExceptionShow::All,
        _ => ExceptionShow::Open,
    }
}

fn show_str(show: ExceptionShow) -> &'static str {
    match show {
        ExceptionShow::Open => "open",
        ExceptionShow::Resolved => "resolved",
        ExceptionShow::All => "all",
    }
}

fn href(show: ExceptionShow, kind: &Option<String>, cursor: Option<ExceptionCursor>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if show != ExceptionShow::Open {
        q.append_pair("status", show_str(show));
    }
    if let Some(k) = kind {
        q.append_pair("kind", k);
    }
    if let Some(c) = cursor {
        if c.resolved_part && show == ExceptionShow::All {
            q.append_pair("part", "resolved");
        }
        if let Some(b) = c.before {
            q.append_pair("before", &b.to_string());
        }
    }
    let q = q.finish();
    if q.is_empty() { "/admin/exceptions".into() } else { format!("/admin/exceptions?{q}") }
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
    let show = parse_show(status);
    let kind = kind
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 40 && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .map(str::to_owned);
    let cursor = ExceptionCursor { resolved_part: show == ExceptionShow::Resolved || part == Some("resolved"), before };
    let page = payments.exceptions_page(show, kind.clone(), cursor, PAGE_SIZE as i64).await?;
    let (mut rows, known, open_count) = (page.rows, page.known_kinds, page.open_count);
    let older = (rows.len() > PAGE_SIZE).then(|| {
        rows.truncate(PAGE_SIZE);
        let last = rows.last().expect("a full page has a last row");
        href(show, &kind, Some(ExceptionCursor { resolved_part: last.resolved_at.is_some(), before: Some(last.id) }))
    });
    let first = before.map(|_| href(show, &kind, None));
    let back = href(show, &kind, Some(cursor));
    let rows = rows
        .into_iter()
        .map(|x| Row {
            id: x.id,
            label: labels::exception_kind_text(&x.kind),
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
        .map(|(v, l)| Choice { value: v.into(), label: l.into(), selected: show_str(show) == v })
        .collect();
    let mut codes: Vec<String> = ExceptionKind::ALL.iter().map(|k| k.as_str().to_owned()).collect();
    for k in known {
        if !codes.contains(&k) {
            codes.push(k);
        }
    }
    let kinds = codes
        .into_iter()
        .map(|k| Choice {
            label: format!("{} ({k})", labels::exception_kind_text(&k)),
            selected: kind.as_deref() == Some(&k),
            value: k,
        })
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
    let form = form.0;
    let back = safe_back(&form.back, "/admin/exceptions");
    let note = form.note.trim().to_owned();
    if note.is_empty() {
        return Ok(Flash::error(Redirect::to(back), "请填写处理说明"));
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Ok(Flash::error(Redirect::to(back), format!("处理说明最多 {MAX_NOTE_CHARS} 个字符")));
    }
    let resolved = payments.resolve_exception(id, &op.0.actor(), &note).await?;
    Ok(match resolved {
        None => return Err(AppError::NotFound("exception")),
        Some(true) => Flash::success(Redirect::to(back), format!("异常 #{id} 已标记为已处理")),
        Some(false) => Flash::warning(Redirect::to(back), format!("异常 #{id} 已被他人处理，未重复处理")),
    })
}
