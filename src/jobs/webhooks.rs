//! Merchant webhook delivery. Events are written by the use cases in the transaction of the
//! change they announce (`payments::outbox`: `order.paid`, `order.refunded`, `order.closed`,
//! `order.payment_failed`, `refund.failed`); this job delivers them, and nothing else.
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
//! of [`super::signature`] over the exact body `{"id","type","created_at","simulated","data"}`
//! (`WebhookEvent::body`), where `data` is the order as the API shows it (plus `refund` for
//! `order.refunded` and `refund.failed`). The URL is fixed when the event is created. Redirects are not followed: a
//! 3xx counts as a failed attempt.
//!
//! **Addresses.** Only the addresses `WEBHOOK_ALLOW_PRIVATE` allows (`domain::address`) are
//! connected to: a name through the client's resolver, which returns only allowed addresses
//! (what is checked is what is dialled), an IP literal before sending. A refused destination is a
//! failed attempt like any other, its error the reason ("refused: address 10.0.0.1 is private").

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{JobContext, JobReport, LEASE, signature};
use crate::config::Secret;
use crate::db::DbResult;
use crate::db::webhooks::{self, NewAttempt};
use crate::domain::address::AddressPolicy;
use crate::domain::webhook::{AttemptOutcome, WebhookEvent};
use crate::error::AppError;
use crate::payments::webhook_address::{GuardedResolver, Unreachable, literal_refusal};

pub const EVENT_HEADER: &str = "X-Wechat-Checkout-Event";
pub const EVENT_ID_HEADER: &str = "X-Wechat-Checkout-Event-Id";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The whole of one attempt: connecting, sending, and reading the reply's start.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a reply is kept with the attempt.
pub const SNIPPET_BYTES: usize = 512;
pub async fn run_once(ctx: &JobContext) -> Result<JobReport, AppError> {
    let Some(secret) = ctx.settings.webhook_secret.clone() else {
        warn_unsigned_once(ctx);
        return Ok(JobReport { note: "WEBHOOK_SECRET is not set: webhooks are off".into(), ..JobReport::default() });
    };
    let (delivered, failed) = deliver_due(ctx, &secret).await?;
    Ok(JobReport { handled: delivered + failed, failed, note: String::new() })
}

fn warn_unsigned_once(ctx: &JobContext) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if ctx.settings.webhook_url.is_some() && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "WEBHOOK_URL is set but WEBHOOK_SECRET is not: no webhooks are sent, since they could not be signed"
        );
    }
}

// ---- Delivery -----------------------------------------------------------------------------

/// The delivery client for `addresses`: one per policy, built once. Names are resolved by
/// [`GuardedResolver`], so only addresses the policy allows are connected to; redirects are not
/// followed (a 3xx to an internal address must not be), and no proxy is used (the resolver would
/// then judge the proxy's address, not the receiver's).
fn client(addresses: AddressPolicy) -> Result<&'static reqwest::Client, AppError> {
    static CLIENTS: [OnceLock<reqwest::Client>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = &CLIENTS[usize::from(addresses.allow_private)];
    if let Some(c) = slot.get() {
        return Ok(c);
    }
    let built = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { policy: addresses }))
        .user_agent(concat!("wechat-checkout-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AppError::Internal(format!("webhook HTTP client: {e}")))?;
    Ok(slot.get_or_init(|| built))
}

/// Claims and delivers the due events, `concurrency` at a time; returns (delivered, failed).
async fn deliver_due(ctx: &JobContext, secret: &Secret) -> Result<(usize, usize), AppError> {
    let http = client(ctx.settings.webhook_addresses)?;
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
    let body = event.body(ctx.payments.config.simulator);
    let attempted_at = crate::db::now();
    let started = Instant::now();
    let reply = deliver(http, ctx.settings.webhook_addresses, secret, &event, body).await;
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
    count_attempt(outcome, started.elapsed());
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

/// Counts one attempt for `/metrics` by what became of its event.
fn count_attempt(outcome: AttemptOutcome, took: Duration) {
    let counted = match outcome {
        AttemptOutcome::Delivered { .. } => "delivered",
        AttemptOutcome::RetryAt(_) => "retry",
        AttemptOutcome::Failed => "failed",
    };
    metrics::counter!("wechat_checkout_webhook_deliveries_total", "outcome" => counted).increment(1);
    metrics::histogram!("wechat_checkout_webhook_delivery_duration_seconds").record(took);
}

/// What one POST got.
struct Reply {
    status: Option<u16>,
    error: Option<String>,
    snippet: Option<String>,
}

/// Sends `event` unless its URL is an IP literal `addresses` refuses: a literal is dialled
/// without a lookup, so the client's resolver never sees it.
async fn deliver(
    http: &reqwest::Client,
    addresses: AddressPolicy,
    secret: &Secret,
    event: &WebhookEvent,
    body: String,
) -> Reply {
    match literal_refusal(&event.url, addresses) {
        Some(refusal) => Reply { status: None, error: Some(format!("refused: {refusal}")), snippet: None },
        None => send(http, secret, event, body).await,
    }
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

/// A transport error with its causes, without the URL (it is on the event already); a host the
/// resolver refused is said plainly ("refused: address 10.0.0.1 (hooks.example) is private").
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {}s", TIMEOUT.as_secs());
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(refused @ Unreachable::Refused(_)) = cause.downcast_ref::<Unreachable>() {
            return refused.to_string();
        }
        source = cause.source();
    }
    crate::error::transport_failure(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event for `url`, as the outbox would have written it.
    fn event_for(url: &str) -> WebhookEvent {
        let now = chrono::Utc::now();
        WebhookEvent {
            id: 1,
            dedupe_key: "order.paid:T1".into(),
            event_type: "order.paid".into(),
            out_trade_no: "T1".into(),
            url: url.into(),
            payload: "{}".into(),
            state: crate::domain::webhook::WebhookState::Pending,
            attempts: 0,
            next_attempt_at: Some(now),
            delivered_at: None,
            lease_owner: None,
            lease_until: None,
            created_at: now,
        }
    }

    /// A local listener that counts the connections it accepts and answers each 200.
    async fn counting_listener() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // The whole request (its body is `{}`) is read before answering, so that closing
                // the socket does not reset the connection under the reply.
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n{}") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn internal_destinations_are_refused_before_any_connection_unless_allowed() {
        let (port, accepted) = counting_listener().await;
        let secret = Secret::new("whsec-unit-0123456789");
        let strict = AddressPolicy { allow_private: false };
        for (url, reason) in [
            (format!("http://localhost:{port}/h"), "(localhost) is loopback"),
            (format!("http://127.0.0.1:{port}/h"), "refused: address 127.0.0.1 is loopback"),
            (format!("http://2130706433:{port}/h"), "refused: address 127.0.0.1 is loopback"),
            (format!("http://[::ffff:127.0.0.1]:{port}/h"), "refused: address ::ffff:127.0.0.1 is loopback"),
        ] {
            let reply = deliver(client(strict).unwrap(), strict, &secret, &event_for(&url), "{}".into()).await;
            let error = reply.error.unwrap_or_default();
            assert!(error.starts_with("refused: address ") && error.contains(reason), "{url}: {error}");
            assert_eq!((reply.status, reply.snippet), (None, None));
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing was dialled");

        let local = AddressPolicy { allow_private: true };
        let url = format!("http://localhost:{port}/h");
        let reply = deliver(client(local).unwrap(), local, &secret, &event_for(&url), "{}".into()).await;
        assert_eq!((reply.status, reply.error, reply.snippet.as_deref()), (Some(200), None, Some("ok")));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn snippets_are_cut_at_512_bytes_on_a_character_boundary() {
        assert_eq!(snippet(b"ok"), "ok");
        let long = "支".repeat(300);
        let s = snippet(long.as_bytes());
        assert!(s.len() <= SNIPPET_BYTES && s.chars().all(|c| c == '支' || c == '\u{fffd}'), "{s}");
    }
}
