//! Merchant webhooks: when an order becomes PAID (`order.paid`, paid-after-close included) or a
//! refund succeeds (`order.refunded`), a signed JSON event is POSTed to the order's own
//! `webhook_url`, else the global `WEBHOOK_URL`; orders with neither get no event. Each pass
//! of this job first turns new timeline rows into `webhook_events`, then delivers the due ones.
//!
//! **Creating events (the outbox).** Every state change already writes an `order_events` row in
//! its own transaction (`payment_confirmed`, `refund_succeeded`), so nothing can be paid without
//! a row to announce it. The job scans those rows by id and inserts one `webhook_events` row per
//! logical event; its `dedupe_key` (`order.paid:<out_trade_no>`, `order.refunded:<out_refund_no>`)
//! is UNIQUE, so a second pass or another instance finds it there (or loses the insert to a
//! unique violation, taken in a savepoint) and nothing is announced twice.
//!
//! Where the scan resumes is kept in memory per database and instance, not in a table: the
//! schema has no place for it, and it only saves work, since the dedupe key is what makes
//! creation exactly-once. It deliberately lags [`SETTLE`] behind the newest rows and those rows
//! are re-read each pass: on PostgreSQL, ids come from a sequence when a row is inserted, not
//! when it commits, so a row with a lower id can become visible after a higher one; a cursor that
//! jumped to the highest id seen would skip it forever. No write transaction of this app lasts
//! anywhere near [`SETTLE`] (none spans a network call), which also absorbs clock differences
//! between instances (`created_at` is each instance's clock). After a restart the scan starts at
//! [`CATCH_UP`] ago: events missed while no instance ran the job are still announced, and
//! payments older than that, e.g. from before a URL was configured, never are.
//!
//! **Delivery.** Due events (PENDING, `next_attempt_at` ≤ now) are claimed one by one, right
//! before their attempt, with the row lease of `jobs` (one guarded UPDATE; a lease outlives the
//! [`TIMEOUT`] of an attempt by far), at most `JOB_CONCURRENCY` at once. A 2xx reply within the
//! timeout is DELIVERED; anything else is logged and retried after `WEBHOOK_SCHEDULE[attempts-1]`,
//! and an event whose schedule is exhausted becomes FAILED and stays for staff to re-send.
//! Every attempt is a `webhook_attempts` row (status, error, duration, the reply's first
//! [`SNIPPET_BYTES`] bytes). Delivery is at least once: an instance that dies between the reply
//! and its write lets the lease run out and the event is sent again, so receivers dedupe by the
//! event id (the `Idempotency-Key` header).
//!
//! **The request.** `POST <url>` with `Content-Type: application/json`, `X-Wechat-Checkout-Event:
//! <type>`, `X-Wechat-Checkout-Event-Id` and `Idempotency-Key: <id>`, and the signature header
//! of [`super::signature`] over the exact body `{"id","type","created_at","data"}`, where `data`
//! is the order as the API shows it (plus `refund` for `order.refunded`). The URL is fixed when
//! the event is created. Redirects are not followed: a 3xx counts as a failed attempt.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, SecondsFormat};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{JobContext, JobReport, LEASE, signature};
use crate::config::{AppConfig, Secret};
use crate::db::webhooks::{self, AttemptOutcome, NewAttempt, NewWebhookEvent, SourceEvent, WebhookEvent, WebhookState};
use crate::db::{AnyConnection, DbError, DbResult, orders, refunds};
use crate::error::AppError;

pub const EVENT_HEADER: &str = "X-Wechat-Checkout-Event";
pub const EVENT_ID_HEADER: &str = "X-Wechat-Checkout-Event-Id";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// How long the scan lags behind the newest timeline rows (see the module comment). Every pass
/// re-reads this window, so it is kept short: a minute is still far beyond any write transaction
/// here and any sane clock difference between instances.
pub const SETTLE: chrono::Duration = chrono::Duration::minutes(1);
/// How far back a fresh scan (a new process) starts.
pub const CATCH_UP: chrono::Duration = chrono::Duration::hours(24);
/// The whole of one attempt: connecting, sending, and reading the reply's start.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a reply is kept with the attempt.
pub const SNIPPET_BYTES: usize = 512;
/// Timeline rows read per query, and queries per pass: a long catch-up continues next pass.
const SCAN_PAGE: i64 = 1000;
const SCAN_PAGES_PER_PASS: usize = 20;

/// Timeline kinds that become webhooks, and the event types they become.
const SOURCES: &[(&str, &str)] = &[("payment_confirmed", "order.paid"), ("refund_succeeded", "order.refunded")];

pub async fn run_once(ctx: &JobContext) -> Result<JobReport, AppError> {
    let Some(secret) = ctx.settings.webhook_secret.clone() else {
        warn_unsigned_once(ctx);
        return Ok(JobReport { note: "WEBHOOK_SECRET is not set: webhooks are off".into(), ..JobReport::default() });
    };
    let created = create_events(ctx).await?;
    let (delivered, failed) = deliver_due(ctx, &secret).await?;
    Ok(JobReport {
        handled: delivered + failed,
        failed,
        note: if created > 0 { format!("{created} new events") } else { String::new() },
    })
}

fn warn_unsigned_once(ctx: &JobContext) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if ctx.settings.webhook_url.is_some() && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "WEBHOOK_URL is set but WEBHOOK_SECRET is not: no webhooks are sent, since they could not be signed"
        );
    }
}

// ---- Creating events ----------------------------------------------------------------------

type CursorKey = (String, String);

/// Per (database URL, instance): every timeline row up to this id has been turned into events.
fn cursors() -> &'static Mutex<HashMap<CursorKey, i64>> {
    static CURSORS: OnceLock<Mutex<HashMap<CursorKey, i64>>> = OnceLock::new();
    CURSORS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cursor(key: &CursorKey) -> Option<i64> {
    cursors().lock().unwrap_or_else(|p| p.into_inner()).get(key).copied()
}

fn set_cursor(key: CursorKey, id: i64) {
    cursors().lock().unwrap_or_else(|p| p.into_inner()).insert(key, id);
}

/// A timeline row that should become an event.
struct Candidate {
    source: SourceEvent,
    event_type: &'static str,
    dedupe_key: String,
    url: String,
    out_refund_no: Option<String>,
}

fn candidate(source: SourceEvent, global_url: Option<&str>) -> Option<Candidate> {
    let event_type = SOURCES.iter().find(|(kind, _)| *kind == source.kind)?.1;
    let url = source.order_webhook_url.clone().filter(|u| !u.is_empty()).or_else(|| global_url.map(str::to_owned))?;
    let (dedupe_key, out_refund_no) = if event_type == "order.refunded" {
        let detail: Value = serde_json::from_str(&source.detail).unwrap_or(Value::Null);
        let Some(no) = detail["out_refund_no"].as_str().map(str::to_owned) else {
            tracing::warn!(order_event = source.id, "refund_succeeded without out_refund_no: no webhook");
            return None;
        };
        (format!("{event_type}:{no}"), Some(no))
    } else {
        (format!("{event_type}:{}", source.out_trade_no), None)
    };
    Some(Candidate { source, event_type, dedupe_key, url, out_refund_no })
}

/// Scans the timeline from this instance's cursor and inserts the events not made yet.
async fn create_events(ctx: &JobContext) -> Result<usize, AppError> {
    let key = (ctx.payments.config.database_url.clone(), ctx.owner().to_owned());
    let now = crate::db::now();
    let horizon = now - CATCH_UP;
    let start = cursor(&key).unwrap_or(0);
    let settled = ctx.payments.db.read(move |c| webhooks::settled_up_to(c, start, now - SETTLE)).await?;
    let global = ctx.settings.webhook_url.clone();
    let kinds: Vec<&'static str> = SOURCES.iter().map(|(k, _)| *k).collect();
    let mut after = start;
    let mut exhausted = false;
    let mut created = 0;
    for _ in 0..SCAN_PAGES_PER_PASS {
        let (g, k) = (global.clone(), kinds.clone());
        // Reading which events exist needs no write lock; most passes find nothing new.
        let (rows, last, fresh) = ctx
            .payments
            .db
            .read(move |c| -> Result<_, DbError> {
                let page = webhooks::source_events(c, after, &k, horizon, g.is_none(), SCAN_PAGE)?;
                let (rows, last) = (page.len(), page.last().map(|s| s.id));
                let candidates: Vec<Candidate> = page.into_iter().filter_map(|s| candidate(s, g.as_deref())).collect();
                let keys: Vec<String> = candidates.iter().map(|c| c.dedupe_key.clone()).collect();
                let existing: HashSet<String> = webhooks::existing_keys(c, &keys)?.into_iter().collect();
                let fresh: Vec<Candidate> =
                    candidates.into_iter().filter(|c| !existing.contains(&c.dedupe_key)).collect();
                Ok((rows, last, fresh))
            })
            .await?;
        if !fresh.is_empty() {
            let config = ctx.payments.config.clone();
            created += ctx.payments.db.write(move |c| insert_events(c, &config, &fresh, now)).await?;
        }
        match last {
            Some(id) if rows as i64 == SCAN_PAGE => after = id,
            _ => {
                exhausted = true;
                break;
            }
        }
    }
    // Rows up to `settled` were all committed when the pass began, and every candidate among
    // them has been handled, unless the pass stopped early at `after`.
    let settled = settled.unwrap_or(start).max(start);
    set_cursor(key, if exhausted { settled } else { settled.min(after) });
    Ok(created)
}

/// Inserts the events of these candidates in one transaction; returns how many were new.
fn insert_events(
    c: &mut AnyConnection,
    config: &AppConfig,
    fresh: &[Candidate],
    now: NaiveDateTime,
) -> DbResult<usize> {
    let mut created = 0;
    for cand in fresh {
        let Some(data) = event_data(c, config, cand)? else { continue };
        let event = NewWebhookEvent {
            dedupe_key: &cand.dedupe_key,
            event_type: cand.event_type,
            out_trade_no: &cand.source.out_trade_no,
            url: &cand.url,
            payload: data.to_string(),
            state: WebhookState::Pending.as_str(),
            attempts: 0,
            next_attempt_at: Some(now),
            // When it happened, not when this scan noticed it.
            created_at: cand.source.created_at,
        };
        if webhooks::insert_event(c, &event)? {
            created += 1;
            tracing::info!(
                out_trade_no = %cand.source.out_trade_no,
                event_type = cand.event_type,
                "webhook event created"
            );
        }
    }
    Ok(created)
}

/// The event's `data`: the order as the API shows it, plus the refund for `order.refunded`.
fn event_data(c: &mut AnyConnection, config: &AppConfig, cand: &Candidate) -> DbResult<Option<Value>> {
    let Some(order) = orders::find(c, &cand.source.out_trade_no)? else { return Ok(None) };
    let mut data = crate::web::api::order_json(&order, config);
    if let Some(no) = &cand.out_refund_no {
        let detail: Value = serde_json::from_str(&cand.source.detail).unwrap_or(Value::Null);
        let refund = refunds::find(c, no)?;
        let amount = refund.as_ref().map(|r| r.amount.get()).or_else(|| detail["amount_fen"].as_i64());
        let succeeded_at = refund
            .and_then(|r| r.succeeded_at)
            .unwrap_or_else(|| cand.source.created_at.and_utc())
            .to_rfc3339_opts(SecondsFormat::Secs, true);
        if let Some(fields) = data.as_object_mut() {
            let refund = json!({ "out_refund_no": no, "amount_fen": amount, "succeeded_at": succeeded_at });
            fields.insert("refund".to_owned(), refund);
        }
    }
    Ok(Some(data))
}

// ---- Delivery -----------------------------------------------------------------------------

/// The exact body sent: the envelope around the stored `data`, keys in a fixed order.
pub fn body(event: &WebhookEvent) -> String {
    let quote = |s: &str| Value::String(s.to_owned()).to_string();
    format!(
        "{{\"id\":{},\"type\":{},\"created_at\":{},\"data\":{}}}",
        event.id,
        quote(&event.event_type),
        quote(&event.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        event.payload
    )
}

fn client() -> Result<&'static reqwest::Client, AppError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let built = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wechat-checkout-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AppError::Internal(format!("webhook HTTP client: {e}")))?;
    Ok(CLIENT.get_or_init(|| built))
}

/// Claims and delivers the due events, `concurrency` at a time; returns (delivered, failed).
async fn deliver_due(ctx: &JobContext, secret: &Secret) -> Result<(usize, usize), AppError> {
    let http = client()?;
    let now = crate::db::now();
    let batch = (ctx.settings.concurrency * 8) as i64;
    let due = ctx.payments.db.read(move |c| webhooks::due(c, now, batch)).await?;
    if due.is_empty() {
        return Ok((0, 0));
    }
    let results: Vec<Option<bool>> = futures_util::stream::iter(due)
        .map(|id| attempt(ctx, http, secret, id))
        .buffer_unordered(ctx.settings.concurrency.max(1))
        .collect()
        .await;
    let delivered = results.iter().filter(|r| **r == Some(true)).count();
    let failed = results.iter().filter(|r| **r == Some(false)).count();
    Ok((delivered, failed))
}

/// One attempt at one event, if this instance wins its lease: `Some(true)` delivered,
/// `Some(false)` failed (or could not be recorded), `None` not ours.
async fn attempt(ctx: &JobContext, http: &reqwest::Client, secret: &Secret, id: i64) -> Option<bool> {
    let owner = ctx.owner().to_owned();
    let o = owner.clone();
    let claimed = ctx
        .payments
        .db
        .write(move |c| -> DbResult<Option<WebhookEvent>> {
            let now = crate::db::now();
            let until = now + LEASE;
            if webhooks::claim(c, id, &o, now, until)? { webhooks::find(c, id) } else { Ok(None) }
        })
        .await;
    let event = match claimed {
        Ok(Some(e)) => e,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(webhook_event = id, error = %e, "webhook claim failed");
            return Some(false);
        }
    };
    let body = body(&event);
    let attempted_at = crate::db::now();
    let started = Instant::now();
    let reply = send(http, secret, &event, body).await;
    let duration_ms = started.elapsed().as_millis().min(i64::MAX as u128) as i64;
    let ok = reply.status.is_some_and(|s| (200..300).contains(&s));
    let outcome = if ok {
        AttemptOutcome::Delivered { at: crate::db::now() }
    } else {
        match ctx.settings.webhook_schedule.get(event.attempts.max(0) as usize) {
            Some(delay) => AttemptOutcome::RetryAt(
                crate::db::now() + chrono::Duration::from_std(*delay).unwrap_or(chrono::Duration::hours(24)),
            ),
            None => AttemptOutcome::Failed,
        }
    };
    match outcome {
        AttemptOutcome::Delivered { .. } => tracing::info!(
            webhook_event = id, out_trade_no = %event.out_trade_no, event_type = %event.event_type,
            status = reply.status, duration_ms, "webhook delivered"
        ),
        _ => tracing::warn!(
            webhook_event = id, out_trade_no = %event.out_trade_no, event_type = %event.event_type,
            status = reply.status, error = reply.error.as_deref().unwrap_or(""), attempt = event.attempts + 1,
            gave_up = outcome == AttemptOutcome::Failed, "webhook attempt failed"
        ),
    }
    let recorded = ctx
        .payments
        .db
        .write(move |c| -> DbResult<bool> {
            webhooks::record_attempt(
                c,
                &NewAttempt {
                    event_id: id,
                    attempted_at,
                    status_code: reply.status.map(i32::from),
                    error: reply.error.as_deref(),
                    duration_ms,
                    response_snippet: reply.snippet.as_deref(),
                },
            )?;
            webhooks::finish_attempt(c, id, &owner, outcome)
        })
        .await;
    match recorded {
        Ok(true) => Some(ok),
        Ok(false) => {
            tracing::warn!(webhook_event = id, "webhook lease lost during the attempt; its outcome was only logged");
            Some(ok)
        }
        Err(e) => {
            // The lease runs out and the event is attempted again: at least once, never lost.
            tracing::error!(webhook_event = id, error = %e, "webhook attempt could not be recorded");
            Some(false)
        }
    }
}

/// What one POST got.
struct Reply {
    status: Option<u16>,
    error: Option<String>,
    snippet: Option<String>,
}

async fn send(http: &reqwest::Client, secret: &Secret, event: &WebhookEvent, body: String) -> Reply {
    let signature = signature::sign(secret.expose().as_bytes(), chrono::Utc::now().timestamp(), body.as_bytes());
    let request = http
        .post(&event.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(signature::HEADER, signature)
        .header(EVENT_HEADER, &event.event_type)
        .header(EVENT_ID_HEADER, event.id.to_string())
        .header(IDEMPOTENCY_HEADER, event.id.to_string())
        .body(body);
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Reply { status: None, error: Some(describe(&e)), snippet: None },
    };
    let status = response.status().as_u16();
    // Only the start of the reply is kept; a huge or endless body is not read further.
    let mut bytes = Vec::new();
    let mut read_error = None;
    while bytes.len() < SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                read_error = Some(describe(&e));
                break;
            }
        }
    }
    // A 2xx is delivered even if the rest of its reply broke off: the merchant has the event.
    let error = match read_error {
        _ if (200..300).contains(&status) => None,
        Some(e) => Some(format!("HTTP {status} (reading the reply: {e})")),
        None => Some(format!("HTTP {status}")),
    };
    Reply { status: Some(status), error, snippet: Some(snippet(&bytes)) }
}

/// The first [`SNIPPET_BYTES`] bytes of a reply as text, cut at a character boundary.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SNIPPET_BYTES)]).into_owned();
    let mut end = text.len().min(SNIPPET_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A transport error with its causes, without the URL (it is on the event already).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {}s", TIMEOUT.as_secs());
    }
    let mut text = if e.is_connect() { "connection failed".to_owned() } else { "request failed".to_owned() };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_cut_at_512_bytes_on_a_character_boundary() {
        assert_eq!(snippet(b"ok"), "ok");
        let long = "支".repeat(300);
        let s = snippet(long.as_bytes());
        assert!(s.len() <= SNIPPET_BYTES && s.chars().all(|c| c == '支' || c == '\u{fffd}'), "{s}");
    }

    #[test]
    fn the_body_is_the_envelope_around_the_stored_data() {
        let event = WebhookEvent {
            id: 7,
            dedupe_key: "order.paid:WC1".into(),
            event_type: "order.paid".into(),
            out_trade_no: "WC1".into(),
            url: "http://merchant.example/hook".into(),
            payload: r#"{"out_trade_no":"WC1"}"#.into(),
            state: WebhookState::Pending,
            attempts: 0,
            next_attempt_at: None,
            lease_owner: None,
            lease_until: None,
            created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            delivered_at: None,
        };
        let v: Value = serde_json::from_str(&body(&event)).unwrap();
        assert_eq!(
            v,
            json!({"id": 7, "type": "order.paid", "created_at": "2023-11-14T22:13:20Z", "data": {"out_trade_no": "WC1"}})
        );
    }
}
