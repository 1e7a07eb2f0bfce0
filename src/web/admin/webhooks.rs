//! Merchant webhooks in the console (`GET /admin/webhooks`, every role): events newest first in
//! keyset pages by id, filtered by state or order, each with its body and every delivery
//! attempt; and a manual re-send (`POST /admin/webhooks/<id>/resend`, operators) that queues an
//! event again now, whatever its state, audited in the same transaction.

use std::collections::HashMap;

use askama::Template;
use rocket::form::FromForm;
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::response::{Flash, Redirect};
use rocket::{State, get, post, routes};

use super::labels;
use super::layout::Chrome;
use super::notifies::safe_back;
use super::session::{AdminForm, CsrfField, Operator, Staff};
use super::view::{beijing_time, opt_time};
use crate::domain::webhook::{Resend, WebhookAttempt, WebhookEvent, WebhookState};
use crate::error::AppError;
use crate::payments::Payments;
use crate::web::page::render;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_webhooks, post_resend]
}

pub const PAGE_SIZE: usize = 50;

struct AttemptView {
    at: String,
    status: String,
    ok: bool,
    error: String,
    duration_ms: i64,
    snippet: String,
}

struct Row {
    id: i64,
    event_type: String,
    type_label: &'static str,
    out_trade_no: String,
    url: String,
    state: &'static str,
    state_label: &'static str,
    state_class: &'static str,
    attempts: i32,
    /// When the next attempt is due (pending) or when it was delivered.
    next: String,
    delivered: String,
    created_at: String,
    in_flight: bool,
    body: String,
    history: Vec<AttemptView>,
}

struct Choice {
    value: &'static str,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "admin/webhooks.html")]
struct WebhooksPage {
    chrome: Chrome,
    rows: Vec<Row>,
    states: Vec<Choice>,
    order: String,
    older: Option<String>,
    first: Option<String>,
    back: String,
    can_resend: bool,
    global_url: String,
    signing: bool,
}

fn href(state: Option<WebhookState>, order: Option<&str>, before: Option<i64>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(s) = state {
        q.append_pair("state", s.as_str());
    }
    if let Some(o) = order {
        q.append_pair("order", o);
    }
    if let Some(b) = before {
        q.append_pair("before", &b.to_string());
    }
    let q = q.finish();
    if q.is_empty() { "/admin/webhooks".into() } else { format!("/admin/webhooks?{q}") }
}

fn row(e: WebhookEvent, attempts: Vec<WebhookAttempt>, now: chrono::DateTime<chrono::Utc>, simulated: bool) -> Row {
    let history = attempts
        .into_iter()
        .map(|a| AttemptView {
            at: beijing_time(a.attempted_at.and_utc()),
            ok: a.succeeded(),
            status: a.status_code.map_or_else(|| "—".to_owned(), |s| s.to_string()),
            error: a.error.unwrap_or_default(),
            duration_ms: a.duration_ms,
            snippet: a.response_snippet.unwrap_or_default(),
        })
        .collect();
    let body = serde_json::from_str::<serde_json::Value>(&e.body(simulated))
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| e.body(simulated));
    let in_flight = e.in_flight(now);
    Row {
        in_flight,
        id: e.id,
        type_label: labels::webhook_type_text(&e.event_type),
        event_type: e.event_type,
        out_trade_no: e.out_trade_no,
        url: e.url,
        state: e.state.as_str(),
        state_label: labels::webhook_state(e.state),
        state_class: labels::webhook_state_class(e.state),
        attempts: e.attempts,
        next: if e.state == WebhookState::Pending { opt_time(e.next_attempt_at) } else { String::new() },
        delivered: opt_time(e.delivered_at),
        created_at: beijing_time(e.created_at),
        body,
        history,
    }
}

#[get("/admin/webhooks?<state>&<order>&<before>")]
async fn get_webhooks(
    staff: Staff,
    state: Option<&str>,
    order: Option<&str>,
    before: Option<i64>,
    flash: Option<FlashMessage<'_>>,
    payments: &State<Payments>,
) -> Result<RawHtml<String>, AppError> {
    let state = state.and_then(WebhookState::parse);
    let order = order
        .map(str::trim)
        .filter(|o| !o.is_empty() && o.len() <= 64 && o.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let page = payments.webhooks_page(state, order.clone(), before, PAGE_SIZE as i64 + 1, PAGE_SIZE).await?;
    let (mut events, attempts, counts) = (page.events, page.attempts, page.counts);
    let older = (events.len() > PAGE_SIZE).then(|| {
        events.truncate(PAGE_SIZE);
        href(state, order.as_deref(), events.last().map(|e| e.id))
    });
    let mut by_event: HashMap<i64, Vec<WebhookAttempt>> = HashMap::new();
    for a in attempts {
        by_event.entry(a.event_id).or_default().push(a);
    }
    let now = chrono::Utc::now();
    let rows = events
        .into_iter()
        .map(|e| {
            let history = by_event.remove(&e.id).unwrap_or_default();
            row(e, history, now, payments.config.simulator)
        })
        .collect();
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let mut states = vec![Choice { value: "", label: format!("全部 ({total})"), selected: state.is_none() }];
    states.extend(counts.into_iter().map(|(s, n)| Choice {
        value: s.as_str(),
        label: format!("{} ({n})", labels::webhook_state(s)),
        selected: state == Some(s),
    }));
    let chrome = Chrome::new(&staff, "webhooks", flash);
    let jobs = &payments.config.jobs;
    render(&WebhooksPage {
        can_resend: chrome.is_operator(),
        chrome,
        rows,
        states,
        first: before.map(|_| href(state, order.as_deref(), None)),
        back: href(state, order.as_deref(), before),
        order: order.unwrap_or_default(),
        older,
        global_url: jobs.webhook_url.clone().unwrap_or_default(),
        signing: jobs.webhook_secret.is_some(),
    })
}

#[derive(FromForm)]
struct ResendForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    back: String,
}

impl CsrfField for ResendForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[post("/admin/webhooks/<id>/resend", data = "<form>")]
async fn post_resend(
    op: Operator,
    id: i64,
    form: AdminForm<ResendForm>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let back = safe_back(&form.0.back, "/admin/webhooks");
    let result = payments.resend_webhook(id, &op.0.actor()).await?;
    Ok(match result {
        Resend::NotFound => return Err(AppError::NotFound("webhook event")),
        Resend::Queued(_) => Flash::success(Redirect::to(back), format!("Webhook #{id} 已重新排队，将立即投递")),
        Resend::InFlight(_) => Flash::warning(Redirect::to(back), format!("Webhook #{id} 正在投递中，请稍后再试")),
    })
}
