//! Merchant webhooks: the events to deliver (`webhook_events`, written by the use cases' outbox),
//! every delivery attempt (`webhook_attempts`), the row leases delivery works under, and the
//! console's list and re-send.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{webhook_attempts, webhook_events};
use super::{AnyConnection, DbError, DbResult};
use crate::domain::webhook::{AttemptOutcome, Resend, WebhookAttempt, WebhookEvent, WebhookState};

#[derive(Insertable, Debug)]
#[diesel(table_name = webhook_events)]
pub struct NewWebhookEvent<'a> {
    pub dedupe_key: &'a str,
    pub event_type: &'a str,
    pub out_trade_no: &'a str,
    pub url: &'a str,
    /// The event's `data` object (JSON); the envelope is built from the row's columns.
    pub payload: String,
    pub state: &'a str,
    pub attempts: i32,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = webhook_events)]
struct EventDbRow {
    id: i64,
    dedupe_key: String,
    event_type: String,
    out_trade_no: String,
    url: String,
    payload: String,
    state: String,
    attempts: i32,
    next_attempt_at: Option<NaiveDateTime>,
    lease_owner: Option<String>,
    lease_until: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    delivered_at: Option<NaiveDateTime>,
}

impl TryFrom<EventDbRow> for WebhookEvent {
    type Error = DbError;

    fn try_from(r: EventDbRow) -> DbResult<WebhookEvent> {
        let state = WebhookState::parse(&r.state)
            .ok_or_else(|| DbError::Corrupt(format!("webhook event {} has unknown state {:?}", r.id, r.state)))?;
        Ok(WebhookEvent {
            id: r.id,
            dedupe_key: r.dedupe_key,
            event_type: r.event_type,
            out_trade_no: r.out_trade_no,
            url: r.url,
            payload: r.payload,
            state,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at.map(|t| t.and_utc()),
            lease_owner: r.lease_owner,
            lease_until: r.lease_until.map(|t| t.and_utc()),
            created_at: r.created_at.and_utc(),
            delivered_at: r.delivered_at.map(|t| t.and_utc()),
        })
    }
}

fn convert(rows: Vec<EventDbRow>) -> DbResult<Vec<WebhookEvent>> {
    rows.into_iter().map(WebhookEvent::try_from).collect()
}

#[derive(Insertable, Debug)]
#[diesel(table_name = webhook_attempts)]
pub struct NewAttempt<'a> {
    pub event_id: i64,
    pub attempted_at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub error: Option<&'a str>,
    pub duration_ms: i64,
    pub response_snippet: Option<&'a str>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = webhook_attempts)]
struct AttemptDbRow {
    id: i64,
    event_id: i64,
    attempted_at: NaiveDateTime,
    status_code: Option<i32>,
    error: Option<String>,
    duration_ms: i64,
    response_snippet: Option<String>,
}

impl From<AttemptDbRow> for WebhookAttempt {
    fn from(r: AttemptDbRow) -> WebhookAttempt {
        WebhookAttempt {
            id: r.id,
            event_id: r.event_id,
            attempted_at: r.attempted_at,
            status_code: r.status_code,
            error: r.error,
            duration_ms: r.duration_ms,
            response_snippet: r.response_snippet,
        }
    }
}

// ---- The outbox ----------------------------------------------------------------------------

/// Inserts an event unless one with its dedupe key exists (then `false`: another pass or
/// instance made it). The insert runs in a savepoint so that, on PostgreSQL, the unique
/// violation does not abort the caller's transaction.
pub fn insert_event(conn: &mut AnyConnection, event: &NewWebhookEvent<'_>) -> DbResult<bool> {
    let inserted = conn.transaction::<_, DbError, _>(|c| {
        diesel::insert_into(webhook_events::table).values(event).execute(c)?;
        Ok(())
    });
    match inserted {
        Ok(()) => Ok(true),
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

// ---- Delivery -----------------------------------------------------------------------------

/// Events due for an attempt and not leased by anyone, the longest waiting first.
pub fn due(conn: &mut AnyConnection, now: NaiveDateTime, limit: i64) -> DbResult<Vec<i64>> {
    Ok(webhook_events::table
        .filter(webhook_events::state.eq(WebhookState::Pending.as_str()))
        .filter(webhook_events::next_attempt_at.le(now))
        .filter(webhook_events::lease_until.is_null().or(webhook_events::lease_until.lt(now)))
        .order((webhook_events::next_attempt_at.asc(), webhook_events::id.asc()))
        .select(webhook_events::id)
        .limit(limit)
        .load(conn)?)
}

/// Claims a due event for `owner` until `until`: one guarded UPDATE, so exactly one instance
/// wins; `false` means someone else holds it or it is no longer due.
pub fn claim(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(webhook_events::table)
        .filter(webhook_events::id.eq(id))
        .filter(webhook_events::state.eq(WebhookState::Pending.as_str()))
        .filter(webhook_events::next_attempt_at.le(now))
        .filter(webhook_events::lease_until.is_null().or(webhook_events::lease_until.lt(now)))
        .set((webhook_events::lease_owner.eq(Some(owner)), webhook_events::lease_until.eq(Some(until))))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<WebhookEvent>> {
    webhook_events::table
        .filter(webhook_events::id.eq(id))
        .select(EventDbRow::as_select())
        .first(conn)
        .optional()?
        .map(WebhookEvent::try_from)
        .transpose()
}

pub fn find_by_dedupe_key(conn: &mut AnyConnection, key: &str) -> DbResult<Option<WebhookEvent>> {
    webhook_events::table
        .filter(webhook_events::dedupe_key.eq(key))
        .select(EventDbRow::as_select())
        .first(conn)
        .optional()?
        .map(WebhookEvent::try_from)
        .transpose()
}

pub fn record_attempt(conn: &mut AnyConnection, attempt: &NewAttempt<'_>) -> DbResult<()> {
    diesel::insert_into(webhook_attempts::table).values(attempt).execute(conn)?;
    Ok(())
}

/// Applies an attempt's outcome to an event `owner` holds, and releases the lease. `false`
/// means the lease was lost meanwhile (the attempt is still logged by the caller).
pub fn finish_attempt(conn: &mut AnyConnection, id: i64, owner: &str, outcome: AttemptOutcome) -> DbResult<bool> {
    let (state, next, delivered) = match outcome {
        AttemptOutcome::Delivered { at } => (WebhookState::Delivered, None, Some(at)),
        AttemptOutcome::RetryAt(next) => (WebhookState::Pending, Some(next), None),
        AttemptOutcome::Failed => (WebhookState::Failed, None, None),
    };
    let n = diesel::update(webhook_events::table)
        .filter(webhook_events::id.eq(id))
        .filter(webhook_events::state.eq(WebhookState::Pending.as_str()))
        .filter(webhook_events::lease_owner.eq(owner))
        .set((
            webhook_events::state.eq(state.as_str()),
            webhook_events::attempts.eq(webhook_events::attempts + 1),
            webhook_events::next_attempt_at.eq(next),
            webhook_events::delivered_at.eq(delivered),
            webhook_events::lease_owner.eq(None::<String>),
            webhook_events::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

// ---- The console --------------------------------------------------------------------------

/// One page of events, newest first, before id `before`, optionally in one state or of one order.
pub fn page(
    conn: &mut AnyConnection,
    state: Option<WebhookState>,
    out_trade_no: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> DbResult<Vec<WebhookEvent>> {
    let mut query = webhook_events::table.select(EventDbRow::as_select()).into_boxed();
    if let Some(s) = state {
        query = query.filter(webhook_events::state.eq(s.as_str()));
    }
    if let Some(no) = out_trade_no {
        query = query.filter(webhook_events::out_trade_no.eq(no.to_owned()));
    }
    if let Some(b) = before {
        query = query.filter(webhook_events::id.lt(b));
    }
    convert(query.order(webhook_events::id.desc()).limit(limit).load(conn)?)
}

/// The events of one order, oldest first.
pub fn for_order(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Vec<WebhookEvent>> {
    convert(
        webhook_events::table
            .filter(webhook_events::out_trade_no.eq(out_trade_no))
            .order(webhook_events::id.asc())
            .select(EventDbRow::as_select())
            .load(conn)?,
    )
}

/// Events per state, for the console's filter.
pub fn count_by_state(conn: &mut AnyConnection, state: WebhookState) -> DbResult<i64> {
    Ok(webhook_events::table.filter(webhook_events::state.eq(state.as_str())).count().get_result(conn)?)
}

/// The attempts of these events, oldest first.
pub fn attempts_for(conn: &mut AnyConnection, event_ids: &[i64]) -> DbResult<Vec<WebhookAttempt>> {
    if event_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(webhook_attempts::table
        .filter(webhook_attempts::event_id.eq_any(event_ids))
        .order(webhook_attempts::id.asc())
        .select(AttemptDbRow::as_select())
        .load(conn)?
        .into_iter()
        .map(WebhookAttempt::from)
        .collect())
}

/// Queues an event for delivery again now, whatever its state, unless an attempt is in flight.
/// The attempt count starts over, so a re-sent event gets the whole retry schedule again; the
/// earlier attempts stay in `webhook_attempts`.
pub fn resend(conn: &mut AnyConnection, id: i64, now: NaiveDateTime) -> DbResult<Resend> {
    let Some(event) = find(conn, id)? else { return Ok(Resend::NotFound) };
    let n = diesel::update(webhook_events::table)
        .filter(webhook_events::id.eq(id))
        .filter(webhook_events::lease_until.is_null().or(webhook_events::lease_until.lt(now)))
        .set((
            webhook_events::state.eq(WebhookState::Pending.as_str()),
            webhook_events::attempts.eq(0),
            webhook_events::next_attempt_at.eq(Some(now)),
            webhook_events::delivered_at.eq(None::<NaiveDateTime>),
            webhook_events::lease_owner.eq(None::<String>),
            webhook_events::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    if n == 1 { Ok(Resend::Queued(event)) } else { Ok(Resend::InFlight(event)) }
}
