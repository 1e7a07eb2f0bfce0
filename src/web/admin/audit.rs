//! The audit log page (admins only): every staff action, newest first, in keyset pages by id,
//! filtered by who, what and which order; with Chinese names for the actions we know.

use askama::Template;
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::{State, get, routes};

use super::labels;
use super::layout::Chrome;
use super::session::Admin;
use super::view::beijing_time;
use crate::domain::AuditAction;
use crate::domain::records::{AuditFilter, AuditRecord};
use crate::error::AppError;
use crate::staff::Accounts;
use crate::web::page::render;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_audit]
}

pub const PAGE_SIZE: i64 = 50;
/// Filter values longer than this cannot match anything we store; they are ignored.
const MAX_FILTER_LEN: usize = 128;
/// Longer details are cut on the page (the full text stays in the database).
const MAX_DETAIL_CHARS: usize = 400;

struct EntryView {
    at: String,
    actor: String,
    actor_href: String,
    action: String,
    label: Option<&'static str>,
    action_href: String,
    order: Option<(String, String)>,
    target: String,
    detail: String,
    ip: String,
}

struct ActionOption {
    code: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    chrome: Chrome,
    entries: Vec<EntryView>,
    actor: String,
    order: String,
    actions: Vec<ActionOption>,
    filtered: bool,
    /// Link to the next (older) page, when there is one.
    older_href: Option<String>,
    /// Link back to the newest page, when not on it.
    newest_href: Option<String>,
}

/// A filter value: trimmed, empty or absurdly long meaning "no filter", and so does one with a
/// NUL (no stored text holds one, and PostgreSQL cannot even compare one).
fn clean(value: Option<&str>) -> Option<String> {
    value.map(str::trim).filter(|v| !v.is_empty() && v.len() <= MAX_FILTER_LEN && !v.contains('\0')).map(str::to_owned)
}

/// `/admin/audit?…` for a filter and page, with every value percent-encoded.
fn href(filter: &AuditFilter, before: Option<i64>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(actor) = &filter.actor {
        q.append_pair("actor", actor);
    }
    if let Some(action) = &filter.action {
        q.append_pair("action", action);
    }
    if let Some(order) = &filter.out_trade_no {
        q.append_pair("order", order);
    }
    if let Some(id) = before {
        q.append_pair("before", &id.to_string());
    }
    let q = q.finish();
    if q.is_empty() { "/admin/audit".to_owned() } else { format!("/admin/audit?{q}") }
}

/// `{"from":"viewer","to":"admin"}` as `from: viewer，to: admin`; anything else as stored.
fn detail_text(detail: &str) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(detail) {
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("，"),
        _ => detail.to_owned(),
    };
    if text.chars().count() > MAX_DETAIL_CHARS {
        text.chars().take(MAX_DETAIL_CHARS).chain(std::iter::once('…')).collect()
    } else {
        text
    }
}

fn entry_view(row: AuditRecord) -> EntryView {
    let by_actor = AuditFilter { actor: Some(row.actor.clone()), ..AuditFilter::default() };
    let by_action = AuditFilter { action: Some(row.action.clone()), ..AuditFilter::default() };
    let order = row.out_trade_no.map(|no| {
        let path = format!("/admin/orders/{}", url::form_urlencoded::byte_serialize(no.as_bytes()).collect::<String>());
        (no, path)
    });
    EntryView {
        at: beijing_time(row.at.and_utc()),
        actor_href: href(&by_actor, None),
        actor: row.actor,
        label: labels::audit_action_text(&row.action),
        action_href: href(&by_action, None),
        action: row.action,
        order,
        target: row.target.unwrap_or_default(),
        detail: detail_text(&row.detail),
        ip: row.remote_addr.unwrap_or_default(),
    }
}

#[get("/admin/audit?<before>&<actor>&<action>&<order>")]
async fn get_audit(
    admin: Admin,
    before: Option<i64>,
    actor: Option<&str>,
    action: Option<&str>,
    order: Option<&str>,
    flash: Option<FlashMessage<'_>>,
    accounts: &State<Accounts>,
) -> Result<RawHtml<String>, AppError> {
    let filter = AuditFilter { actor: clean(actor), action: clean(action), out_trade_no: clean(order) };
    let before = before.filter(|id| *id > 0);
    // One row more than a page tells whether an older page exists without counting.
    let mut rows = accounts.audit_page(filter.clone(), before, PAGE_SIZE + 1).await?;
    let more = rows.len() as i64 > PAGE_SIZE;
    rows.truncate(PAGE_SIZE as usize);
    let older_href = if more { rows.last().map(|r| href(&filter, Some(r.id))) } else { None };
    let newest_href = before.map(|_| href(&filter, None));

    let mut actions: Vec<ActionOption> = AuditAction::ALL
        .iter()
        .map(|action| ActionOption {
            code: action.as_str().to_owned(),
            label: labels::audit_action(*action).to_owned(),
            selected: filter.action.as_deref() == Some(action.as_str()),
        })
        .collect();
    if let Some(current) = &filter.action
        && !actions.iter().any(|a| a.selected)
    {
        // An action without a Chinese name stays selectable, by its code.
        actions.push(ActionOption { code: current.clone(), label: current.clone(), selected: true });
    }
    render(&AuditPage {
        chrome: Chrome::new(&admin.0, "audit", flash),
        entries: rows.into_iter().map(entry_view).collect(),
        actor: filter.actor.clone().unwrap_or_default(),
        order: filter.out_trade_no.clone().unwrap_or_default(),
        actions,
        filtered: filter != AuditFilter::default(),
        older_href,
        newest_href,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_encode_filters_and_keep_them_across_pages() {
        let f = AuditFilter { actor: Some("a b&c".into()), action: None, out_trade_no: Some("WX1".into()) };
        assert_eq!(href(&f, Some(42)), "/admin/audit?actor=a+b%26c&order=WX1&before=42");
        assert_eq!(href(&AuditFilter::default(), None), "/admin/audit");
    }

    #[test]
    fn details_read_as_pairs_and_are_cut() {
        assert_eq!(detail_text(r#"{"from":"viewer","to":"admin"}"#), "from: viewer，to: admin");
        assert_eq!(detail_text("{}"), "");
        assert_eq!(detail_text("not json"), "not json");
        assert_eq!(detail_text(&"x".repeat(1000)).chars().count(), MAX_DETAIL_CHARS + 1);
    }
}
