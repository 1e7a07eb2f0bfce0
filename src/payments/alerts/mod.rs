//! Alerts for staff (`ALERT_WEBHOOK_URL`): money problems told to a group robot or any JSON
//! receiver, so nobody has to watch the console. The `alerts` job calls these each pass.
//!
//! **Sources.** New exceptions (paid after close, amount mismatch, unknown order, refund CHANGE,
//! conflicting payments, refund mismatches; see [`message::alerted`]), reconciliation runs that
//! failed or found differences, and webhook events given up after their schedule.
//!
//! **Durable, once.** [`gather`] looks for sources in a window that starts at the cursor, and
//! records an `alerts` row per source, unique by its key (`exception:<id>`, …): two passes or two
//! instances seeing one source record one alert. The rows are then posted by a lease (one
//! instance posts a row), retried with back-off ([`RETRY`]) and given up after it. The cursor
//! starts at the first pass with alerts on (nothing older is alerted: a new deployment is not
//! flooded with its history) and trails the clock by [`LAG`], so that a source committed late by
//! a slow transaction is still found; the window is short, so each pass reads little.
//!
//! **Rate limit.** [`claim_due`] counts the posts of the last hour (sent, and in flight) across
//! instances, under a row lock, and claims at most what is left of `ALERT_MAX_PER_HOUR`. When
//! more is due than is left, the last post left becomes one summary ("另有 N 条告警") that
//! stands for the rest, so staff hear of everything at once without a flood.

pub mod message;
pub mod send;

use std::time::Duration;

use chrono::NaiveDateTime;

use crate::db::alerts::{self, Alert, AlertOutcome, NewAlert};
use crate::db::{AnyConnection, Db, DbResult, reconciliation};
use crate::error::AppError;
use crate::payments::LEASE;

/// How far the cursor trails the clock: longer than any transaction that raises a source runs,
/// and than the clocks of two instances differ.
pub const LAG: chrono::Duration = chrono::Duration::minutes(10);
/// Waits after each failed attempt; a failure after the last one gives up (about 24 hours).
pub const RETRY: [Duration; 9] = [
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(3600),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(14 * 3600),
];
/// Sources read per query (paged until the window is exhausted).
const PAGE: i64 = 500;
/// Due alerts one claim looks at (and one summary may stand for).
const DUE_BATCH: i64 = 500;

/// What an attempt after `attempts` earlier ones leads to, given its delivery.
pub fn outcome(attempts: i32, delivery: &send::Delivery, now: NaiveDateTime) -> AlertOutcome {
    match &delivery.error {
        None => AlertOutcome::Sent { at: now },
        Some(error) => match RETRY.get(attempts.max(0) as usize) {
            Some(wait) => AlertOutcome::RetryAt {
                at: now + chrono::Duration::from_std(*wait).unwrap_or(chrono::Duration::hours(1)),
                error: error.clone(),
            },
            None => AlertOutcome::GaveUp { error: error.clone() },
        },
    }
}

/// Records an alert for each source new since the cursor; returns how many were recorded now.
/// Reads first and writes only when there is something to record or the cursor should move, so
/// that a pass over nothing takes no write lock.
pub async fn gather(db: &Db, now: NaiveDateTime) -> Result<usize, AppError> {
    let Some(since) = db.read(alerts::cursor).await? else {
        // The first pass with alerts on: what happened before is not alerted.
        db.write(move |c| alerts::start_cursor(c, now)).await?;
        return Ok(0);
    };
    let drafts = db.read(move |c| new_sources(c, since)).await?;
    let advance = now - LAG > since + chrono::Duration::minutes(1);
    if drafts.is_empty() && !advance {
        return Ok(0);
    }
    let recorded = db
        .write(move |c| -> DbResult<usize> {
            let mut recorded = 0;
            for draft in &drafts {
                if alerts::insert(c, draft, now)? {
                    tracing::info!(alert_key = %draft.key, kind = %draft.kind, "alert recorded");
                    recorded += 1;
                }
            }
            alerts::advance_cursor(c, now - LAG)?;
            Ok(recorded)
        })
        .await?;
    Ok(recorded)
}

/// The alerts of the sources at or after `since` that are not recorded yet.
fn new_sources(c: &mut AnyConnection, since: NaiveDateTime) -> DbResult<Vec<NewAlert>> {
    let mut drafts = Vec::new();
    let mut after = 0;
    loop {
        let page = alerts::exceptions_since(c, since, message::RECONCILE_PREFIX, after, PAGE)?;
        after = page.last().map_or(after, |e| e.id);
        drafts.extend(page.iter().filter(|e| message::alerted(e)).map(message::for_exception));
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    drafts.extend(alerts::failed_webhooks_since(c, since)?.iter().map(message::for_webhook));
    for date in alerts::runs_finished_since(c, since)? {
        if let Some(run) = reconciliation::find_run(c, &date)? {
            let findings = reconciliation::findings_of(c, &date, None, 6)?;
            drafts.push(message::for_run(&run, &findings));
        }
    }
    let keys: Vec<String> = drafts.iter().map(|d| d.key.clone()).collect();
    let known = alerts::existing_keys(c, &keys)?;
    drafts.retain(|d| !known.contains(&d.key));
    Ok(drafts)
}

/// Claims for `owner` the due alerts the hourly limit leaves room for, in one transaction that
/// holds the cursor row's lock; when more are due than there is room, the last room goes to a
/// summary of the rest (recorded and claimed here, its alerts marked SUMMARIZED).
pub async fn claim_due(db: &Db, owner: &str, max_per_hour: u32, now: NaiveDateTime) -> Result<Vec<Alert>, AppError> {
    // A read first: most passes have nothing due (or no room), and then take no write lock.
    let max = i64::from(max_per_hour);
    let worth = db.read(move |c| -> DbResult<bool> {
        Ok(!alerts::due(c, now, 1)?.is_empty() && alerts::posts_in_hour(c, now)? < max)
    });
    if !worth.await? {
        return Ok(Vec::new());
    }
    let owner = owner.to_owned();
    let claimed = db
        .write(move |c| -> DbResult<Vec<Alert>> {
            alerts::start_cursor(c, now)?;
            alerts::lock(c)?;
            let room = max - alerts::posts_in_hour(c, now)?;
            if room <= 0 {
                return Ok(Vec::new());
            }
            let mut due = alerts::due(c, now, DUE_BATCH)?;
            let until = now + LEASE;
            let held = if due.len() as i64 > room { due.split_off((room - 1) as usize) } else { Vec::new() };
            let ids: Vec<i64> = due.iter().map(|a| a.id).collect();
            alerts::claim(c, &ids, &owner, now, until)?;
            if !held.is_empty() {
                let summary = message::summary(&held, now);
                let ids: Vec<i64> = held.iter().map(|a| a.id).collect();
                alerts::summarize(c, &ids, &summary.key, now)?;
                if let Some(row) = alerts::insert_leased(c, &summary, now, &owner, until)? {
                    tracing::info!(alert_key = %row.alert_key, held = held.len(), "alerts over the hourly limit summarized");
                    due.push(row);
                }
            }
            Ok(due)
        })
        .await?;
    Ok(claimed)
}

/// Records an attempt's outcome on an alert `owner` holds; `false` when the lease was lost.
pub async fn record(db: &Db, id: i64, owner: &str, outcome: AlertOutcome) -> Result<bool, AppError> {
    let owner = owner.to_owned();
    Ok(db.write(move |c| alerts::finish(c, id, &owner, &outcome)).await?)
}
