//! Used OAuth `state` nonces: a state is signed and time-limited, and this table makes it
//! single-use across every instance.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::oauth_states;
use super::{AnyConnection, DbResult};

/// Marks a nonce used. `false` if it was used before (a replayed callback).
pub fn consume(conn: &mut AnyConnection, nonce: &str, now: NaiveDateTime) -> DbResult<bool> {
    let result = diesel::insert_into(oauth_states::table)
        .values((oauth_states::nonce.eq(nonce), oauth_states::used_at.eq(now)))
        .execute(conn);
    match result {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// States expire after minutes; their nonces need not be kept longer than that.
pub fn purge_older_than(conn: &mut AnyConnection, cutoff: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::delete(oauth_states::table.filter(oauth_states::used_at.lt(cutoff))).execute(conn)?)
}
