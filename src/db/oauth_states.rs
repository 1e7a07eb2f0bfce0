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
