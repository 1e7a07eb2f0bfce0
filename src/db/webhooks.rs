//! Merchant webhooks: the events to deliver (`webhook_events`), every delivery attempt
//! (`webhook_attempts`), the outbox scan over `order_events` that creates them, the row leases
//! delivery works under, and the console's list and re-send.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::{order_events, orders, webhook_attempts, webhook_events};
use super::{AnyConnection, DbError, DbResult};

/// Where an event is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookState {
    /// Waiting for its next attempt (`next_attempt_at`).
    Pending,
    /// A reply in 2xx was received.
    Delivered,
    /// Every attempt of the schedule failed; it stays until re-sent by staff.
    Failed,
}

impl WebhookState {
    pub const ALL: [WebhookState; 3] = [WebhookState::Pending, WebhookState::Delivered, WebhookState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookState::Pending => "PENDING",
            WebhookState::Delivered => "DELIVERED",
            WebhookState::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<WebhookState> {
        WebhookState::ALL.into_iter().find(|w| w.as_str() == s)
    }
}

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

/// A webhook event as the rest of the program sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    pub id: i64,
    pub dedupe_key: String,
    pub event_type: String,
    pub out_trade_no: String,
    pub url: String,
    /// The `data` object, as JSON text.
    pub payload: String,
    pub state: WebhookState,
    /// Attempts since it was created or last re-sent.
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
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

#[derive(Queryable, Selectable, Clone, Debug, PartialEq, Eq)]
#[diesel(table_name = webhook_attempts)]
pub struct AttemptRow {
    pub id: i64,
    pub event_id: i64,
    pub attempted_at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response_snippet: Option<String>,
}

// ---- The outbox scan ----------------------------------------------------------------------

/// An `order_events` row that may become a webhook, with the order's own webhook URL.
#[derive(Queryable, Clone, Debug)]
pub struct SourceEvent {
    pub id: i64,
    pub kind: String,
    pub out_trade_no: String,
    pub detail: String,
    pub created_at: NaiveDateTime,
    pub order_webhook_url: Option<String>,
}

/// Timeline rows of `kinds` after id `after` and not older than `since`, oldest first. With
/// `only_with_url`, rows of orders without a webhook URL of their own are left out (nothing
/// would be sent for them when no global URL is configured).
pub fn source_events(
    conn: &mut AnyConnection,
    after: i64,
    kinds: &[&str],
    since: NaiveDateTime,
    only_with_url: bool,
    limit: i64,
) -> DbResult<Vec<SourceEvent>> {
    let mut query = order_events::table
        .inner_join(orders::table)
        .filter(order_events::id.gt(after))
        .filter(order_events::kind.eq_any(kinds))
        .filter(order_events::created_at.ge(since))
        .select((
            order_events::id,
            order_events::kind,
            order_events::out_trade_no,
            order_events::detail,
            order_events::created_at,
            orders::webhook_url,
        ))
        .order(order_events::id.asc())
        .limit(limit)
        .into_boxed();
    if only_with_url {
        query = query.filter(orders::webhook_url.is_not_null());
    }
    Ok(query.load(conn)?)
}

/// The highest timeline id after `after` among rows written before `before`: rows up to it
/// have settled (see `jobs::webhooks` on why the scan lags behind the newest rows).
pub fn settled_up_to(conn: &mut AnyConnection, after: i64, before: NaiveDateTime) -> DbResult<Option<i64>> {
    Ok(order_events::table
        .filter(order_events::id.gt(after))
        .filter(order_events::created_at.lt(before))
        .select(diesel::dsl::max(order_events::id))
        .first::<Option<i64>>(conn)?)
}

/// Which of these dedupe keys already have an event.
pub fn existing_keys(conn: &mut AnyConnection, keys: &[String]) -> DbResult<Vec<String>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(webhook_events::table
        .filter(webhook_events::dedupe_key.eq_any(keys))
        .select(webhook_events::dedupe_key)
        .load(conn)?)
}

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

/// What an attempt leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered { at: NaiveDateTime },
    RetryAt(NaiveDateTime),
    Failed,
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
pub fn attempts_for(conn: &mut AnyConnection, event_ids: &[i64]) -> DbResult<Vec<AttemptRow>> {
    if event_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(webhook_attempts::table
        .filter(webhook_attempts::event_id.eq_any(event_ids))
        .order(webhook_attempts::id.asc())
        .select(AttemptRow::as_select())
        .load(conn)?)
}

/// What a re-send found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Set back to PENDING, due now, with a fresh schedule; the event as it was before.
    Queued(WebhookEvent),
    /// An attempt is in flight right now (leased); re-sending now could deliver it twice at once.
    InFlight(WebhookEvent),
    NotFound,
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
