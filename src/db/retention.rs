//! Deleting rows past their retention window, a bounded chunk per statement: each call picks at
//! most `limit` of the oldest matching keys, then deletes exactly those, so a first purge of a
//! big table is many short write transactions (on SQLite, a short hold of the write lock each),
//! never one long one. Keys are picked in primary-key order, oldest first, so each pick stops
//! reading early. (Diesel cannot name a table inside a subquery on itself, hence two statements.)

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{audit_log, login_attempts, notify_log, oauth_states, webhook_attempts, webhook_events};
use super::{AnyConnection, DbResult};
use crate::domain::NotifyVerdict;
use crate::domain::webhook::WebhookState;

fn unverified() -> [&'static str; 7] {
    NotifyVerdict::UNVERIFIED.map(NotifyVerdict::as_str)
}

/// Refused (unverified) notify deliveries received before `cutoff`.
pub fn purge_refused_notifies(conn: &mut AnyConnection, cutoff: NaiveDateTime, limit: i64) -> DbResult<usize> {
    let ids: Vec<i64> = notify_log::table
        .select(notify_log::id)
        .filter(notify_log::received_at.lt(cutoff))
        .filter(notify_log::verdict.eq_any(unverified()))
        .order(notify_log::id.asc())
        .limit(limit)
        .load(conn)?;
    Ok(diesel::delete(notify_log::table.filter(notify_log::id.eq_any(&ids))).execute(conn)?)
}

/// Verified notify deliveries (everything but the refused) received before `cutoff`.
pub fn purge_verified_notifies(conn: &mut AnyConnection, cutoff: NaiveDateTime, limit: i64) -> DbResult<usize> {
    let ids: Vec<i64> = notify_log::table
        .select(notify_log::id)
        .filter(notify_log::received_at.lt(cutoff))
        .filter(notify_log::verdict.ne_all(unverified()))
        .order(notify_log::id.asc())
        .limit(limit)
        .load(conn)?;
    Ok(diesel::delete(notify_log::table.filter(notify_log::id.eq_any(&ids))).execute(conn)?)
}

/// OAuth `state` nonces used before `cutoff`.
pub fn purge_oauth_states(conn: &mut AnyConnection, cutoff: NaiveDateTime, limit: i64) -> DbResult<usize> {
    let nonces: Vec<String> = oauth_states::table
        .select(oauth_states::nonce)
        .filter(oauth_states::used_at.lt(cutoff))
        .order(oauth_states::used_at.asc())
        .limit(limit)
        .load(conn)?;
    Ok(diesel::delete(oauth_states::table.filter(oauth_states::nonce.eq_any(&nonces))).execute(conn)?)
}

/// Staff sign-in attempts made before `cutoff`.
pub fn purge_signin_attempts(conn: &mut AnyConnection, cutoff: NaiveDateTime, limit: i64) -> DbResult<usize> {
    let ids: Vec<i64> = login_attempts::table
        .select(login_attempts::id)
        .filter(login_attempts::attempted_at.lt(cutoff))
        .order(login_attempts::id.asc())
        .limit(limit)
        .load(conn)?;
    Ok(diesel::delete(login_attempts::table.filter(login_attempts::id.eq_any(&ids))).execute(conn)?)
}

/// Attempts made before `cutoff` of webhook deliveries that are over (delivered, or failed for
/// good). The deliveries themselves stay, and so does every attempt of one still under way.
pub fn purge_webhook_attempts(conn: &mut AnyConnection, cutoff: NaiveDateTime, limit: i64) -> DbResult<usize> {
    let finished = webhook_events::table
        .select(webhook_events::id)
        .filter(webhook_events::state.eq_any([WebhookState::Delivered.as_str(), WebhookState::Failed.as_str()]));
    let ids: Vec<i64> = webhook_attempts::table
        .select(webhook_attempts::id)
        .filter(webhook_attempts::attempted_at.lt(cutoff))
        .filter(webhook_attempts::event_id.eq_any(finished))
        .order(webhook_attempts::id.asc())
        .limit(limit)
        .load(conn)?;
    Ok(diesel::delete(webhook_attempts::table.filter(webhook_attempts::id.eq_any(&ids))).execute(conn)?)
}

/// Audit entries made before `cutoff`.
pub fn purge_audit(conn: &mut AnyConnection, cutoff: NaiveDateTime, limit: i64) -> DbResult<usize> {
    let ids: Vec<i64> = audit_log::table
        .select(audit_log::id)
        .filter(audit_log::at.lt(cutoff))
        .order(audit_log::id.asc())
        .limit(limit)
        .load(conn)?;
    Ok(diesel::delete(audit_log::table.filter(audit_log::id.eq_any(&ids))).execute(conn)?)
}
