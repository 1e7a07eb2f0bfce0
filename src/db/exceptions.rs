//! Exceptions: situations the machines could not settle (amount mismatches, unknown orders,
//! payments after close, double payments) waiting for a person.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::exceptions;
use super::{AnyConnection, DbError, DbResult};
use crate::domain::ExceptionKind;
use crate::domain::records::{ExceptionRecord, ExceptionStatus};

/// A new exception for staff.
#[derive(Debug)]
pub struct NewException {
    pub kind: ExceptionKind,
    /// The same situation reported again (a retried notify) is recorded once.
    pub dedupe_key: String,
    pub out_trade_no: Option<String>,
    pub detail: serde_json::Value,
}

#[derive(Insertable)]
#[diesel(table_name = exceptions)]
struct ExceptionInsert<'a> {
    kind: &'a str,
    dedupe_key: &'a str,
    out_trade_no: Option<&'a str>,
    detail: String,
    created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = exceptions)]
struct ExceptionDbRow {
    id: i64,
    kind: String,
    dedupe_key: String,
    out_trade_no: Option<String>,
    detail: String,
    created_at: NaiveDateTime,
    resolved_at: Option<NaiveDateTime>,
    resolved_by: Option<String>,
    resolution_note: Option<String>,
}

impl From<ExceptionDbRow> for ExceptionRecord {
    fn from(r: ExceptionDbRow) -> ExceptionRecord {
        ExceptionRecord {
            id: r.id,
            kind: r.kind,
            dedupe_key: r.dedupe_key,
            out_trade_no: r.out_trade_no,
            detail: r.detail,
            created_at: r.created_at,
            resolved_at: r.resolved_at,
            resolved_by: r.resolved_by,
            resolution_note: r.resolution_note,
        }
    }
}

fn records(rows: Vec<ExceptionDbRow>) -> Vec<ExceptionRecord> {
    rows.into_iter().map(ExceptionRecord::from).collect()
}

/// Records an exception unless the same one is already recorded. Runs in a savepoint so a
/// duplicate does not abort the caller's transaction (PostgreSQL aborts on any error).
pub fn raise(conn: &mut AnyConnection, exception: &NewException) -> DbResult<bool> {
    let row = ExceptionInsert {
        kind: exception.kind.as_str(),
        dedupe_key: &exception.dedupe_key,
        out_trade_no: exception.out_trade_no.as_deref(),
        detail: exception.detail.to_string(),
        created_at: super::now(),
    };
    let inserted = conn.transaction::<_, DbError, _>(|c| {
        diesel::insert_into(exceptions::table).values(&row).execute(c)?;
        Ok(())
    });
    match inserted {
        Ok(()) => Ok(true),
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

pub fn for_order(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Vec<ExceptionRecord>> {
    Ok(records(
        exceptions::table
            .filter(exceptions::out_trade_no.eq(out_trade_no))
            .order(exceptions::id.asc())
            .select(ExceptionDbRow::as_select())
            .load(conn)?,
    ))
}

/// The newest `limit` open exceptions.
pub fn open(conn: &mut AnyConnection, limit: i64) -> DbResult<Vec<ExceptionRecord>> {
    page(conn, ExceptionStatus::Open, None, None, limit)
}

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<ExceptionRecord>> {
    Ok(exceptions::table
        .filter(exceptions::id.eq(id))
        .select(ExceptionDbRow::as_select())
        .first(conn)
        .optional()?
        .map(ExceptionRecord::from))
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

/// Newest first, `limit` rows of one status (and kind) older than `before_id` (keyset paging).
pub fn page(
    conn: &mut AnyConnection,
    status: ExceptionStatus,
    kind: Option<&str>,
    before_id: Option<i64>,
    limit: i64,
) -> DbResult<Vec<ExceptionRecord>> {
    let mut q =
        exceptions::table.order(exceptions::id.desc()).limit(limit).select(ExceptionDbRow::as_select()).into_boxed();
    q = match status {
        ExceptionStatus::Open => q.filter(exceptions::resolved_at.is_null()),
        ExceptionStatus::Resolved => q.filter(exceptions::resolved_at.is_not_null()),
    };
    if let Some(kind) = kind {
        q = q.filter(exceptions::kind.eq(kind.to_owned()));
    }
    if let Some(id) = before_id {
        q = q.filter(exceptions::id.lt(id));
    }
    Ok(records(q.load(conn)?))
}

/// Every kind recorded so far, for the filter.
pub fn kinds(conn: &mut AnyConnection) -> DbResult<Vec<String>> {
    Ok(exceptions::table.select(exceptions::kind).distinct().order(exceptions::kind.asc()).load(conn)?)
}

pub fn count_open(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(exceptions::table.filter(exceptions::resolved_at.is_null()).count().get_result(conn)?)
}
