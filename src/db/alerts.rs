//! Alerts for staff: the rows the alerts job posts to `ALERT_WEBHOOK_URL` (unique by key, so a
//! source is alerted once however many passes or instances see it), the cursor from which sources
//! are looked for, the hourly count the limit is kept by, and the source queries of a window:
//! exceptions raised, webhook events given up, reconciliation runs finished.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{alert_cursors, alerts, exceptions, reconciliation_runs, webhook_attempts, webhook_events};
use super::{AnyConnection, DbError, DbResult};
use crate::domain::reconciliation::RunState;
use crate::domain::records::ExceptionRecord;
use crate::domain::vocab::string_enum;
use crate::domain::webhook::WebhookState;

string_enum! {
    /// Where an alert stands (`alerts.state`).
    pub enum AlertState {
        /// Waiting for its next attempt (`next_attempt_at`), or for room under the hourly limit.
        Pending = "PENDING",
        /// The receiver took it.
        Sent = "SENT",
        /// Every attempt of the retry schedule failed.
        Failed = "FAILED",
        /// Held over the hourly limit and told in a summary alert instead (`summarized_by`).
        Summarized = "SUMMARIZED",
    }
}

/// The one cursor row: where the search for sources starts, and the row claimers lock.
const CURSOR: &str = "sources";

/// An alert to record; its text is fixed when it is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAlert {
    /// What makes it unique: `exception:<id>`, `webhook:<event id>:<attempt id>`, …
    pub key: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// A console path (`/admin/orders/WC…`), joined to `PUBLIC_BASE_URL` when posted.
    pub link: Option<String>,
    pub occurred_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = alerts)]
struct AlertInsert<'a> {
    alert_key: &'a str,
    kind: &'a str,
    title: &'a str,
    body: &'a str,
    link: Option<&'a str>,
    occurred_at: NaiveDateTime,
    created_at: NaiveDateTime,
    state: &'a str,
    next_attempt_at: Option<NaiveDateTime>,
    lease_owner: Option<&'a str>,
    lease_until: Option<NaiveDateTime>,
}

/// An alert as stored.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = alerts)]
pub struct Alert {
    pub id: i64,
    pub alert_key: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    pub occurred_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub state: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub sent_at: Option<NaiveDateTime>,
    pub summarized_by: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertOutcome {
    Sent { at: NaiveDateTime },
    RetryAt { at: NaiveDateTime, error: String },
    GaveUp { error: String },
}

// ---- Recording ------------------------------------------------------------------------------

/// Records an alert, due now, unless one with its key exists (then `false`); in a savepoint, so a
/// duplicate does not abort the caller's transaction on PostgreSQL.
pub fn insert(conn: &mut AnyConnection, alert: &NewAlert, now: NaiveDateTime) -> DbResult<bool> {
    insert_row(conn, alert, now, None)
}

/// Records an alert already leased to `owner` until `until` (a summary, posted right away).
pub fn insert_leased(
    conn: &mut AnyConnection,
    alert: &NewAlert,
    now: NaiveDateTime,
    owner: &str,
    until: NaiveDateTime,
) -> DbResult<Option<Alert>> {
    if !insert_row(conn, alert, now, Some((owner, until)))? {
        return Ok(None);
    }
    find_by_key(conn, &alert.key)
}

fn insert_row(
    conn: &mut AnyConnection,
    alert: &NewAlert,
    now: NaiveDateTime,
    lease: Option<(&str, NaiveDateTime)>,
) -> DbResult<bool> {
    let row = AlertInsert {
        alert_key: &alert.key,
        kind: &alert.kind,
        title: &alert.title,
        body: &alert.body,
        link: alert.link.as_deref(),
        occurred_at: alert.occurred_at,
        created_at: now,
        state: AlertState::Pending.as_str(),
        next_attempt_at: Some(now),
        lease_owner: lease.map(|(owner, _)| owner),
        lease_until: lease.map(|(_, until)| until),
    };
    let inserted = conn.transaction::<_, DbError, _>(|c| {
        diesel::insert_into(alerts::table).values(&row).execute(c)?;
        Ok(())
    });
    match inserted {
        Ok(()) => Ok(true),
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Which of `keys` are recorded already (asked in chunks: SQLite caps a statement's variables).
pub fn existing_keys(conn: &mut AnyConnection, keys: &[String]) -> DbResult<Vec<String>> {
    let mut found = Vec::new();
    for chunk in keys.chunks(500) {
        found.extend(alerts::table.filter(alerts::alert_key.eq_any(chunk)).select(alerts::alert_key).load(conn)?);
    }
    Ok(found)
}

pub fn find_by_key(conn: &mut AnyConnection, key: &str) -> DbResult<Option<Alert>> {
    Ok(alerts::table.filter(alerts::alert_key.eq(key)).select(Alert::as_select()).first(conn).optional()?)
}

/// Every alert, oldest first.
pub fn all(conn: &mut AnyConnection, limit: i64) -> DbResult<Vec<Alert>> {
    Ok(alerts::table.order(alerts::id.asc()).limit(limit).select(Alert::as_select()).load(conn)?)
}

// ---- The cursor ---------------------------------------------------------------------------

/// Where the search for sources starts; `None` before the first pass with alerts on.
pub fn cursor(conn: &mut AnyConnection) -> DbResult<Option<NaiveDateTime>> {
    Ok(alert_cursors::table
        .filter(alert_cursors::name.eq(CURSOR))
        .select(alert_cursors::since)
        .first(conn)
        .optional()?)
}

/// Creates the cursor at `since` unless it exists (the first pass with alerts on: nothing older
/// is alerted); returns where it stands.
pub fn start_cursor(conn: &mut AnyConnection, since: NaiveDateTime) -> DbResult<NaiveDateTime> {
    if let Some(at) = cursor(conn)? {
        return Ok(at);
    }
    let inserted = conn.transaction::<_, DbError, _>(|c| {
        diesel::insert_into(alert_cursors::table)
            .values((alert_cursors::name.eq(CURSOR), alert_cursors::since.eq(since)))
            .execute(c)?;
        Ok(())
    });
    match inserted {
        Err(e) if !e.is_unique_violation() => Err(e),
        _ => Ok(cursor(conn)?.unwrap_or(since)),
    }
}

/// Moves the cursor forward to `to` (never back).
pub fn advance_cursor(conn: &mut AnyConnection, to: NaiveDateTime) -> DbResult<()> {
    diesel::update(alert_cursors::table)
        .filter(alert_cursors::name.eq(CURSOR))
        .filter(alert_cursors::since.lt(to))
        .set(alert_cursors::since.eq(to))
        .execute(conn)?;
    Ok(())
}

/// Locks the cursor row until the caller's transaction ends, so that on PostgreSQL claimers count
/// the hour's posts one after another (SQLite's `BEGIN IMMEDIATE` serializes them already).
pub fn lock(conn: &mut AnyConnection) -> DbResult<()> {
    diesel::update(alert_cursors::table)
        .filter(alert_cursors::name.eq(CURSOR))
        .set(alert_cursors::since.eq(alert_cursors::since))
        .execute(conn)?;
    Ok(())
}

// ---- Delivery -----------------------------------------------------------------------------

/// Posts of the last hour before `now` (sent), plus those in flight (leased), all instances'.
pub fn posts_in_hour(conn: &mut AnyConnection, now: NaiveDateTime) -> DbResult<i64> {
    let sent: i64 =
        alerts::table.filter(alerts::sent_at.gt(now - chrono::Duration::hours(1))).count().get_result(conn)?;
    let in_flight: i64 = alerts::table
        .filter(alerts::state.eq(AlertState::Pending.as_str()))
        .filter(alerts::lease_until.gt(now))
        .count()
        .get_result(conn)?;
    Ok(sent + in_flight)
}

/// Alerts due and not leased, oldest first.
pub fn due(conn: &mut AnyConnection, now: NaiveDateTime, limit: i64) -> DbResult<Vec<Alert>> {
    Ok(alerts::table
        .filter(alerts::state.eq(AlertState::Pending.as_str()))
        .filter(alerts::next_attempt_at.le(now))
        .filter(alerts::lease_until.is_null().or(alerts::lease_until.lt(now)))
        .order(alerts::id.asc())
        .limit(limit)
        .select(Alert::as_select())
        .load(conn)?)
}

/// Claims due alerts for `owner` until `until` (one guarded UPDATE); returns how many it got.
pub fn claim(
    conn: &mut AnyConnection,
    ids: &[i64],
    owner: &str,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> DbResult<usize> {
    Ok(diesel::update(alerts::table)
        .filter(alerts::id.eq_any(ids))
        .filter(alerts::state.eq(AlertState::Pending.as_str()))
        .filter(alerts::lease_until.is_null().or(alerts::lease_until.lt(now)))
        .set((alerts::lease_owner.eq(Some(owner)), alerts::lease_until.eq(Some(until))))
        .execute(conn)?)
}

/// Marks held alerts as told by the summary `summary_key`.
pub fn summarize(conn: &mut AnyConnection, ids: &[i64], summary_key: &str, now: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::update(alerts::table)
        .filter(alerts::id.eq_any(ids))
        .filter(alerts::state.eq(AlertState::Pending.as_str()))
        .filter(alerts::lease_until.is_null().or(alerts::lease_until.lt(now)))
        .set((
            alerts::state.eq(AlertState::Summarized.as_str()),
            alerts::summarized_by.eq(Some(summary_key)),
            alerts::next_attempt_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?)
}

/// Applies an attempt's outcome to an alert `owner` holds and releases the lease; `false` means
/// the lease was lost meanwhile.
pub fn finish(conn: &mut AnyConnection, id: i64, owner: &str, outcome: &AlertOutcome) -> DbResult<bool> {
    let (state, next, sent, error) = match outcome {
        AlertOutcome::Sent { at } => (AlertState::Sent, None, Some(*at), None),
        AlertOutcome::RetryAt { at, error } => (AlertState::Pending, Some(*at), None, Some(error.as_str())),
        AlertOutcome::GaveUp { error } => (AlertState::Failed, None, None, Some(error.as_str())),
    };
    let n = diesel::update(alerts::table)
        .filter(alerts::id.eq(id))
        .filter(alerts::state.eq(AlertState::Pending.as_str()))
        .filter(alerts::lease_owner.eq(owner))
        .set((
            alerts::state.eq(state.as_str()),
            alerts::attempts.eq(alerts::attempts + 1),
            alerts::next_attempt_at.eq(next),
            alerts::sent_at.eq(sent),
            alerts::last_error.eq(error),
            alerts::lease_owner.eq(None::<String>),
            alerts::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

// ---- Sources ------------------------------------------------------------------------------

/// Exceptions raised at or after `since` whose dedupe key does not start with `skip_prefix`,
/// oldest first, after id `after` (keyset paging).
pub fn exceptions_since(
    conn: &mut AnyConnection,
    since: NaiveDateTime,
    skip_prefix: &str,
    after: i64,
    limit: i64,
) -> DbResult<Vec<ExceptionRecord>> {
    let rows: Vec<ExceptionColumns> = exceptions::table
        .filter(exceptions::created_at.ge(since))
        .filter(exceptions::dedupe_key.not_like(format!("{skip_prefix}%")))
        .filter(exceptions::id.gt(after))
        .order(exceptions::id.asc())
        .limit(limit)
        .select((
            exceptions::id,
            exceptions::kind,
            exceptions::dedupe_key,
            exceptions::out_trade_no,
            exceptions::detail,
            exceptions::created_at,
            exceptions::resolved_at,
            exceptions::resolved_by,
            exceptions::resolution_note,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, kind, dedupe_key, out_trade_no, detail, created_at, resolved_at, resolved_by, resolution_note)| {
            ExceptionRecord {
                id,
                kind,
                dedupe_key,
                out_trade_no,
                detail,
                created_at,
                resolved_at,
                resolved_by,
                resolution_note,
            }
        })
        .collect())
}

type ExceptionColumns =
    (i64, String, String, Option<String>, String, NaiveDateTime, Option<NaiveDateTime>, Option<String>, Option<String>);

/// A webhook event given up on (FAILED), with its last attempt.
#[derive(Clone, Debug, PartialEq, Eq, Queryable)]
pub struct FailedWebhook {
    pub event_id: i64,
    pub event_type: String,
    pub out_trade_no: String,
    pub attempts: i32,
    pub last_attempt_id: i64,
    pub last_attempt_at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// Events FAILED now whose last attempt was at or after `since`. An event re-sent by staff and
/// given up again has a newer last attempt, so it is a new source.
pub fn failed_webhooks_since(conn: &mut AnyConnection, since: NaiveDateTime) -> DbResult<Vec<FailedWebhook>> {
    let rows: Vec<FailedWebhook> = webhook_attempts::table
        .inner_join(webhook_events::table)
        .filter(webhook_events::state.eq(WebhookState::Failed.as_str()))
        .filter(webhook_attempts::attempted_at.ge(since))
        .order(webhook_attempts::id.asc())
        .select((
            webhook_events::id,
            webhook_events::event_type,
            webhook_events::out_trade_no,
            webhook_events::attempts,
            webhook_attempts::id,
            webhook_attempts::attempted_at,
            webhook_attempts::status_code,
            webhook_attempts::error,
        ))
        .load(conn)?;
    // Ordered by attempt, so the last row of an event (kept by the map) is its last attempt.
    let last: BTreeMap<i64, FailedWebhook> = rows.into_iter().map(|r| (r.event_id, r)).collect();
    Ok(last.into_values().collect())
}

/// Dates whose run finished (DONE or NO_BILL with findings, or FAILED) at or after `since`.
pub fn runs_finished_since(conn: &mut AnyConnection, since: NaiveDateTime) -> DbResult<Vec<String>> {
    let compared = [RunState::Done.as_str(), RunState::NoBill.as_str()];
    Ok(reconciliation_runs::table
        .filter(reconciliation_runs::finished_at.ge(since))
        .filter(
            reconciliation_runs::state
                .eq_any(compared)
                .and(reconciliation_runs::findings.gt(0))
                .or(reconciliation_runs::state.eq(RunState::Failed.as_str())),
        )
        .order(reconciliation_runs::bill_date.asc())
        .select(reconciliation_runs::bill_date)
        .load(conn)?)
}
