//! Merchant API tokens, stored as SHA-256 hashes (the tokens are 256-bit random values, so a
//! plain hash cannot be brute-forced and lets us look a token up by its hash).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::api_tokens;
use super::{AnyConnection, DbResult};

#[derive(Insertable, Debug)]
#[diesel(table_name = api_tokens)]
pub struct NewToken<'a> {
    pub name: &'a str,
    pub token_hash: &'a str,
    pub created_at: NaiveDateTime,
}

pub fn insert(conn: &mut AnyConnection, token: &NewToken<'_>) -> DbResult<()> {
    diesel::insert_into(api_tokens::table).values(token).execute(conn)?;
    Ok(())
}

pub fn count_active(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(api_tokens::table.filter(api_tokens::revoked_at.is_null()).count().get_result(conn)?)
}

/// Whether an unrevoked token has this hash.
pub fn is_active(conn: &mut AnyConnection, token_hash: &str) -> DbResult<bool> {
    let n: i64 = api_tokens::table
        .filter(api_tokens::token_hash.eq(token_hash))
        .filter(api_tokens::revoked_at.is_null())
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}
