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
