//! The notify log: every delivery WeChat made to `/wechat/notify` and `/wechat/refund-notify`,
//! as received, with the verdict and our exact reply. Refused (unverified) deliveries are kept
//! too, with the start of their body and no order: what they claim is not to be believed.

use std::borrow::Cow;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::notify_log;
use super::{AnyConnection, DbResult};
use crate::domain::records::NotifyRecord;
use crate::domain::{NotifyKind, NotifyVerdict};

/// A delivery to log; the verdict, reason and reply are filled in as it is handled.
#[derive(Debug, Clone)]
pub struct NewNotifyLog {
    pub kind: NotifyKind,
    pub received_at: NaiveDateTime,
    pub remote_addr: Option<String>,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub verdict: NotifyVerdict,
    pub reason: String,
    pub raw_body: String,
    pub reply: String,
}

impl NewNotifyLog {
    /// A delivery of `kind` received now, not yet judged.
    pub fn received(kind: NotifyKind, raw_body: String, remote_addr: Option<String>) -> NewNotifyLog {
        NewNotifyLog {
            kind,
            received_at: super::now(),
            remote_addr,
            out_trade_no: None,
            transaction_id: None,
            verdict: NotifyVerdict::Pending,
            reason: String::new(),
            raw_body,
            reply: String::new(),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = notify_log)]
// NULL for None (every such column is nullable without a default), so that rows go in together.
#[diesel(treat_none_as_default_value = false)]
struct NotifyInsert<'a> {
    kind: &'a str,
    received_at: NaiveDateTime,
    remote_addr: Option<&'a str>,
    out_trade_no: Option<&'a str>,
    transaction_id: Option<&'a str>,
    verdict: &'a str,
    reason: &'a str,
    raw_body: &'a str,
    reply: &'a str,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = notify_log)]
struct NotifyDbRow {
    id: i64,
    kind: String,
    received_at: NaiveDateTime,
    remote_addr: Option<String>,
    out_trade_no: Option<String>,
    transaction_id: Option<String>,
    verdict: String,
    reason: String,
    raw_body: String,
    reply: String,
}

impl From<NotifyDbRow> for NotifyRecord {
    fn from(r: NotifyDbRow) -> NotifyRecord {
        NotifyRecord {
            id: r.id,
            kind: r.kind,
            received_at: r.received_at,
            remote_addr: r.remote_addr,
            out_trade_no: r.out_trade_no,
            transaction_id: r.transaction_id,
            verdict: r.verdict,
            reason: r.reason,
            raw_body: r.raw_body,
            reply: r.reply,
        }
    }
}

fn records(rows: Vec<NotifyDbRow>) -> Vec<NotifyRecord> {
    rows.into_iter().map(NotifyRecord::from).collect()
}

/// PostgreSQL refuses NUL in text, and a hostile delivery may carry one: it is kept as U+FFFD,
/// as `from_utf8_lossy` keeps the bytes that are not UTF-8. (Failing here would fail the whole
/// group commit, genuine notifies included.)
fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') { Cow::Owned(text.replace('\0', "\u{fffd}")) } else { Cow::Borrowed(text) }
}

pub fn insert(conn: &mut AnyConnection, row: &NewNotifyLog) -> DbResult<()> {
    insert_many(conn, std::slice::from_ref(row))
}

/// Logs deliveries in one statement.
pub fn insert_many(conn: &mut AnyConnection, rows: &[NewNotifyLog]) -> DbResult<()> {
    let texts: Vec<_> = rows
        .iter()
        .map(|row| {
            let ids = (row.out_trade_no.as_deref().map(storable), row.transaction_id.as_deref().map(storable));
            (ids, storable(&row.reason), storable(&row.raw_body))
        })
        .collect();
    let inserts: Vec<NotifyInsert<'_>> = rows
        .iter()
        .zip(&texts)
        .map(|(row, ((out_trade_no, transaction_id), reason, raw_body))| NotifyInsert {
            kind: row.kind.as_str(),
            received_at: row.received_at,
            remote_addr: row.remote_addr.as_deref(),
            out_trade_no: out_trade_no.as_deref(),
            transaction_id: transaction_id.as_deref(),
            verdict: row.verdict.as_str(),
            reason,
            raw_body,
            reply: &row.reply,
        })
        .collect();
    // A statement's bind parameters are limited (SQLite: 32,766); 9 per row. Many rows in one
    // statement are backend-specific in Diesel, hence the match.
    for chunk in inserts.chunks(1000) {
        let insert = diesel::insert_into(notify_log::table).values(chunk);
        match conn {
            AnyConnection::Postgresql(c) => insert.execute(c)?,
            AnyConnection::Sqlite(c) => insert.execute(c)?,
        };
    }
    Ok(())
}

/// The verified deliveries about one order. Refused ones are stored without an order, and
/// those logged by older builds with the order they claimed are left out by their verdict.
pub fn for_order(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Vec<NotifyRecord>> {
    Ok(records(
        notify_log::table
            .filter(notify_log::out_trade_no.eq(out_trade_no))
            .filter(notify_log::verdict.ne_all(NotifyVerdict::UNVERIFIED.map(NotifyVerdict::as_str)))
            .order(notify_log::id.asc())
            .select(NotifyDbRow::as_select())
            .load(conn)?,
    ))
}

pub fn count(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(notify_log::table.count().get_result(conn)?)
}

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<NotifyRecord>> {
    Ok(notify_log::table
        .filter(notify_log::id.eq(id))
        .select(NotifyDbRow::as_select())
        .first(conn)
        .optional()?
        .map(NotifyRecord::from))
}

/// Newest first, `limit` rows (of one verdict and kind) older than `before_id` (keyset paging).
pub fn page(
    conn: &mut AnyConnection,
    verdict: Option<&str>,
    kind: Option<&str>,
    before_id: Option<i64>,
    limit: i64,
) -> DbResult<Vec<NotifyRecord>> {
    let mut q =
        notify_log::table.order(notify_log::id.desc()).limit(limit).select(NotifyDbRow::as_select()).into_boxed();
    if let Some(v) = verdict {
        q = q.filter(notify_log::verdict.eq(v.to_owned()));
    }
    if let Some(k) = kind {
        q = q.filter(notify_log::kind.eq(k.to_owned()));
    }
    if let Some(id) = before_id {
        q = q.filter(notify_log::id.lt(id));
    }
    Ok(records(q.load(conn)?))
}

/// Every verdict recorded so far, for the filter.
pub fn verdicts(conn: &mut AnyConnection) -> DbResult<Vec<String>> {
    Ok(notify_log::table.select(notify_log::verdict).distinct().order(notify_log::verdict.asc()).load(conn)?)
}
