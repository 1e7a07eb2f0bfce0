//! The notify log: every delivery WeChat made to us, accepted or not, with our reply.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::notify_log;
use super::{AnyConnection, DbResult};

#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = notify_log)]
pub struct NewNotifyLog {
    pub kind: &'static str,
    pub received_at: NaiveDateTime,
    pub remote_addr: Option<String>,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub verdict: &'static str,
    pub reason: String,
    pub raw_body: String,
    pub reply: String,
}

#[derive(Queryable, Selectable, Clone, Debug, serde::Serialize)]
#[diesel(table_name = notify_log)]
pub struct NotifyLogRow {
    pub id: i64,
    pub kind: String,
    pub received_at: NaiveDateTime,
    pub remote_addr: Option<String>,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub verdict: String,
    pub reason: String,
    pub raw_body: String,
    pub reply: String,
}

pub fn insert(conn: &mut AnyConnection, row: &NewNotifyLog) -> DbResult<()> {
    diesel::insert_into(notify_log::table).values(row).execute(conn)?;
    Ok(())
}

pub fn for_order(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Vec<NotifyLogRow>> {
    Ok(notify_log::table
        .filter(notify_log::out_trade_no.eq(out_trade_no))
        .order(notify_log::id.asc())
        .select(NotifyLogRow::as_select())
        .load(conn)?)
}

pub fn count(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(notify_log::table.count().get_result(conn)?)
}

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<NotifyLogRow>> {
    Ok(notify_log::table.filter(notify_log::id.eq(id)).select(NotifyLogRow::as_select()).first(conn).optional()?)
}

/// Newest first, `limit` deliveries older than `before_id` (keyset paging), optionally of one
/// verdict and one kind.
pub fn page(
    conn: &mut AnyConnection,
    verdict: Option<&str>,
    kind: Option<&str>,
    before_id: Option<i64>,
    limit: i64,
) -> DbResult<Vec<NotifyLogRow>> {
    let mut q =
        notify_log::table.order(notify_log::id.desc()).limit(limit).select(NotifyLogRow::as_select()).into_boxed();
    if let Some(v) = verdict {
        q = q.filter(notify_log::verdict.eq(v.to_owned()));
    }
    if let Some(k) = kind {
        q = q.filter(notify_log::kind.eq(k.to_owned()));
    }
    if let Some(id) = before_id {
        q = q.filter(notify_log::id.lt(id));
    }
    Ok(q.load(conn)?)
}

/// Every verdict recorded so far, for the filter.
pub fn verdicts(conn: &mut AnyConnection) -> DbResult<Vec<String>> {
    Ok(notify_log::table.select(notify_log::verdict).distinct().order(notify_log::verdict.asc()).load(conn)?)
}
