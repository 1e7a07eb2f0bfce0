//! The merchant API's `Idempotency-Key` rows: claimed before a request runs, completed with the
//! answer a retry is given again, released when the request failed in a way a retry should redo.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::api_idempotency_keys as keys;
use super::{AnyConnection, DbResult};

/// How long a key and its answer are kept (Stripe's 24 hours); the retention job purges after.
pub const KEY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What claiming a key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours now: run the request, then [`complete`] or [`release`] it.
    Claimed,
    /// The same request ran before: its stored answer.
    Replay { status: u16, body: String },
    /// The same request is running right now (another connection claimed the key).
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = keys)]
struct KeyRow {
    request_hash: String,
    status_code: Option<i32>,
    response_body: Option<String>,
    created_at: NaiveDateTime,
}

/// Claims `key` of `principal` for a request whose fingerprint hashes to `request_hash`. A row
/// created before `expired_before` is forgotten (keys live 24 hours); a claim never completed and
/// made before `abandoned_before` belongs to a request that died with its process, and is taken
/// over (every API write is itself idempotent, so running it again is safe).
pub fn claim(
    conn: &mut AnyConnection,
    principal: &str,
    key: &str,
    request_hash: &str,
    now: NaiveDateTime,
    expired_before: NaiveDateTime,
    abandoned_before: NaiveDateTime,
) -> DbResult<Claim> {
    let existing: Option<KeyRow> = keys::table
        .filter(keys::principal.eq(principal))
        .filter(keys::idem_key.eq(key))
        .select(KeyRow::as_select())
        .first(conn)
        .optional()?;
    if let Some(row) = existing {
        let expired = row.created_at < expired_before;
        let abandoned = row.status_code.is_none() && row.created_at < abandoned_before;
        if !expired && !abandoned {
            if row.request_hash != request_hash {
                return Ok(Claim::Mismatch);
            }
            return Ok(match (row.status_code, row.response_body) {
                (Some(status), Some(body)) => Claim::Replay { status: u16::try_from(status).unwrap_or(500), body },
                _ => Claim::InProgress,
            });
        }
        diesel::delete(keys::table.filter(keys::principal.eq(principal)).filter(keys::idem_key.eq(key)))
            .execute(conn)?;
    }
    // A concurrent twin inserting first makes this a unique violation; the caller asks again.
    diesel::insert_into(keys::table)
        .values((
            keys::principal.eq(principal),
            keys::idem_key.eq(key),
            keys::request_hash.eq(request_hash),
            keys::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(Claim::Claimed)
}

/// Stores the answer of a claimed key's request.
pub fn complete(conn: &mut AnyConnection, principal: &str, key: &str, status: u16, body: &str) -> DbResult<bool> {
    let changed = diesel::update(
        keys::table
            .filter(keys::principal.eq(principal))
            .filter(keys::idem_key.eq(key))
            .filter(keys::status_code.is_null()),
    )
    .set((keys::status_code.eq(Some(i32::from(status))), keys::response_body.eq(Some(body))))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Forgets a claimed key whose request should run again when retried (it failed on our side).
pub fn release(conn: &mut AnyConnection, principal: &str, key: &str) -> DbResult<bool> {
    let changed = diesel::delete(
        keys::table
            .filter(keys::principal.eq(principal))
            .filter(keys::idem_key.eq(key))
            .filter(keys::status_code.is_null()),
    )
    .execute(conn)?;
    Ok(changed == 1)
}

/// Keys created before `cutoff`, at most `limit` of the oldest (the retention job's chunk).
pub fn purge(conn: &mut AnyConnection, cutoff: NaiveDateTime, limit: i64) -> DbResult<usize> {
    let ids: Vec<i64> = keys::table
        .select(keys::id)
        .filter(keys::created_at.lt(cutoff))
        .order(keys::id.asc())
        .limit(limit)
        .load(conn)?;
    Ok(diesel::delete(keys::table.filter(keys::id.eq_any(&ids))).execute(conn)?)
}
