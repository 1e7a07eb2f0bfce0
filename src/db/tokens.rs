//! Merchant API tokens, stored as SHA-256 hashes (the tokens are 256-bit random values, so a
//! plain hash cannot be brute-forced and lets us look a token up by its hash).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::api_tokens;
use super::{AnyConnection, DbError, DbResult};
use crate::domain::ApiScope;
use crate::domain::records::ApiToken;

#[derive(Insertable, Debug)]
#[diesel(table_name = api_tokens)]
pub struct NewToken<'a> {
    pub name: &'a str,
    pub token_hash: &'a str,
    pub created_at: NaiveDateTime,
    pub scope: &'a str,
}

pub fn insert(conn: &mut AnyConnection, token: &NewToken<'_>) -> DbResult<()> {
    diesel::insert_into(api_tokens::table).values(token).execute(conn)?;
    Ok(())
}

pub fn count_active(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(api_tokens::table.filter(api_tokens::revoked_at.is_null()).count().get_result(conn)?)
}

/// The unrevoked token with this hash, if any.
pub fn find_active(conn: &mut AnyConnection, token_hash: &str) -> DbResult<Option<ApiToken>> {
    api_tokens::table
        .filter(api_tokens::token_hash.eq(token_hash))
        .filter(api_tokens::revoked_at.is_null())
        .select(TokenDbRow::as_select())
        .first(conn)
        .optional()?
        .map(ApiToken::try_from)
        .transpose()
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
struct TokenDbRow {
    id: i64,
    name: String,
    created_at: NaiveDateTime,
    revoked_at: Option<NaiveDateTime>,
    scope: String,
}

impl TryFrom<TokenDbRow> for ApiToken {
    type Error = DbError;

    fn try_from(r: TokenDbRow) -> DbResult<ApiToken> {
        let scope = ApiScope::parse(&r.scope)
            .ok_or_else(|| DbError::Corrupt(format!("API token {} has unknown scope {:?}", r.id, r.scope)))?;
        Ok(ApiToken { id: r.id, name: r.name, scope, created_at: r.created_at, revoked_at: r.revoked_at })
    }
}

/// Every token, newest first (a merchant has a handful, so no paging).
pub fn list(conn: &mut AnyConnection) -> DbResult<Vec<ApiToken>> {
    api_tokens::table
        .order(api_tokens::id.desc())
        .select(TokenDbRow::as_select())
        .load(conn)?
        .into_iter()
        .map(ApiToken::try_from)
        .collect()
}

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<ApiToken>> {
    api_tokens::table
        .filter(api_tokens::id.eq(id))
        .select(TokenDbRow::as_select())
        .first(conn)
        .optional()?
        .map(ApiToken::try_from)
        .transpose()
}

/// The row just inserted, found by its (unique) hash: we have no RETURNING on every backend.
pub fn find_by_hash(conn: &mut AnyConnection, token_hash: &str) -> DbResult<Option<ApiToken>> {
    api_tokens::table
        .filter(api_tokens::token_hash.eq(token_hash))
        .select(TokenDbRow::as_select())
        .first(conn)
        .optional()?
        .map(ApiToken::try_from)
        .transpose()
}

/// Revokes a token unless it already is: true when this call revoked it.
pub fn revoke(conn: &mut AnyConnection, id: i64, at: NaiveDateTime) -> DbResult<bool> {
    let changed =
        diesel::update(api_tokens::table.filter(api_tokens::id.eq(id)).filter(api_tokens::revoked_at.is_null()))
            .set(api_tokens::revoked_at.eq(Some(at)))
            .execute(conn)?;
    Ok(changed == 1)
}
