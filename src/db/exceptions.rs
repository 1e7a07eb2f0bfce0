//! Exceptions: situations the machines could not settle (amount mismatches, unknown orders,
//! payments after close, double payments) waiting for a person.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::exceptions;
use super::{AnyConnection, DbError, DbResult};

#[derive(Insertable, Debug)]
#[diesel(table_name = exceptions)]
pub struct NewException {
    pub kind: &'static str,
    /// The same situation reported again (a retried notify) is recorded once.
    pub dedupe_key: String,
    pub out_trade_no: Option<String>,
    /// JSON.
    pub detail: String,
    pub created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Clone, Debug, serde::Serialize)]
#[diesel(table_name = exceptions)]
pub struct ExceptionRow {
    pub id: i64,
    pub kind: String,
    pub dedupe_key: String,
    pub out_trade_no: Option<String>,
    pub detail: String,
    pub created_at: NaiveDateTime,
    pub resolved_at: Option<NaiveDateTime>,
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
}

/// Records an exception unless the same one is already recorded. Runs in a savepoint so a
/// duplicate does not abort the caller's transaction (PostgreSQL aborts on any error).
pub fn raise(conn: &mut AnyConnection, exception: &NewException) -> DbResult<bool> {
    let inserted = conn.transaction::<_, DbError, _>(|c| {
        diesel::insert_into(exceptions::table).values(exception).execute(c)?;
        Ok(())
    });
    match inserted {
        Ok(()) => Ok(true),
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

pub fn for_order(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Vec<ExceptionRow>> {
    Ok(exceptions::table
        .filter(exceptions::out_trade_no.eq(out_trade_no))
        .order(exceptions::id.asc())
        .select(ExceptionRow::as_select())
        .load(conn)?)
}

pub fn open(conn: &mut AnyConnection, limit: i64) -> DbResult<Vec<ExceptionRow>> {
    Ok(exceptions::table
        .filter(exceptions::resolved_at.is_null())
        .order(exceptions::id.desc())
        .limit(limit)
        .select(ExceptionRow::as_select())
        .load(conn)?)
}

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<ExceptionRow>> {
    Ok(exceptions::table.filter(exceptions::id.eq(id)).select(ExceptionRow::as_select()).first(conn).optional()?)
}

/// Marks an exception resolved, only if it is still open: `true` means this call resolved it.
pub fn resolve(conn: &mut AnyConnection, id: i64, by: &str, note: &str, at: NaiveDateTime) -> DbResult<bool> {
    let n = diesel::update(exceptions::table)
        .filter(exceptions::id.eq(id))
        .filter(exceptions::resolved_at.is_null())
        .set((
            exceptions::resolved_at.eq(Some(at)),
            exceptions::resolved_by.eq(Some(by)),
            exceptions::resolution_note.eq(Some(note)),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Which exceptions a list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Open,
    Resolved,
}

/// Newest first, `limit` rows of one status (and kind) older than `before_id` (keyset paging).
pub fn page(
    conn: &mut AnyConnection,
    status: Status,
    kind: Option<&str>,
    before_id: Option<i64>,
    limit: i64,
) -> DbResult<Vec<ExceptionRow>> {
    let mut q =
        exceptions::table.order(exceptions::id.desc()).limit(limit).select(ExceptionRow::as_select()).into_boxed();
    q = match status {
        Status::Open => q.filter(exceptions::resolved_at.is_null()),
        Status::Resolved => q.filter(exceptions::resolved_at.is_not_null()),
    };
    if let Some(kind) = kind {
        q = q.filter(exceptions::kind.eq(kind.to_owned()));
    }
    if let Some(id) = before_id {
        q = q.filter(exceptions::id.lt(id));
    }
    Ok(q.load(conn)?)
}

/// Every kind recorded so far, for the filter.
pub fn kinds(conn: &mut AnyConnection) -> DbResult<Vec<String>> {
    Ok(exceptions::table.select(exceptions::kind).distinct().order(exceptions::kind.asc()).load(conn)?)
}

pub fn count_open(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(exceptions::table.filter(exceptions::resolved_at.is_null()).count().get_result(conn)?)
}
