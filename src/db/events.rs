//! The order timeline: one row per thing that happened to an order, newest last.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::order_events;
use super::{AnyConnection, DbResult};

#[derive(Insertable, Debug)]
#[diesel(table_name = order_events)]
pub struct NewEvent<'a> {
    pub out_trade_no: &'a str,
    pub kind: &'a str,
    pub from_state: Option<&'a str>,
    pub to_state: Option<&'a str>,
    pub source: &'a str,
    /// JSON.
    pub detail: String,
    pub created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Clone, Debug, serde::Serialize)]
#[diesel(table_name = order_events)]
pub struct EventRow {
    pub id: i64,
    pub out_trade_no: String,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub source: String,
    pub detail: String,
    pub created_at: NaiveDateTime,
}

impl EventRow {
    pub fn at(&self) -> DateTime<Utc> {
        self.created_at.and_utc()
    }
}

pub fn insert(conn: &mut AnyConnection, event: &NewEvent<'_>) -> DbResult<()> {
    diesel::insert_into(order_events::table).values(event).execute(conn)?;
    Ok(())
}

pub fn for_order(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Vec<EventRow>> {
    Ok(order_events::table
        .filter(order_events::out_trade_no.eq(out_trade_no))
        .order(order_events::id.asc())
        .select(EventRow::as_select())
        .load(conn)?)
}

/// The newest event of one kind for an order (e.g. the result of the last query).
pub fn latest_of_kind(conn: &mut AnyConnection, out_trade_no: &str, kind: &str) -> DbResult<Option<EventRow>> {
    Ok(order_events::table
        .filter(order_events::out_trade_no.eq(out_trade_no))
        .filter(order_events::kind.eq(kind))
        .order(order_events::id.desc())
        .select(EventRow::as_select())
        .first(conn)
        .optional()?)
}
