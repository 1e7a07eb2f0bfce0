//! The order timeline (`order_events`): one row per thing that happened to an order, newest last.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::order_events;
use super::{AnyConnection, DbResult};
use crate::domain::records::TimelineEntry;
use crate::domain::{OrderState, TimelineKind, TimelineSource};

#[derive(Insertable, Debug)]
#[diesel(table_name = order_events)]
// NULL for None, so that many rows go in one statement.
#[diesel(treat_none_as_default_value = false)]
struct NewEvent<'a> {
    out_trade_no: &'a str,
    kind: &'a str,
    from_state: Option<&'a str>,
    to_state: Option<&'a str>,
    source: &'a str,
    detail: String,
    created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = order_events)]
struct EventDbRow {
    id: i64,
    out_trade_no: String,
    kind: String,
    from_state: Option<String>,
    to_state: Option<String>,
    source: String,
    detail: String,
    created_at: NaiveDateTime,
}

impl From<EventDbRow> for TimelineEntry {
    fn from(r: EventDbRow) -> TimelineEntry {
        TimelineEntry {
            id: r.id,
            out_trade_no: r.out_trade_no,
            kind: r.kind,
            from_state: r.from_state,
            to_state: r.to_state,
            source: r.source,
            detail: r.detail,
            created_at: r.created_at,
        }
    }
}

/// The order states an entry records: none, the first one (creation), or a change.
pub type States = (Option<OrderState>, Option<OrderState>);

/// Writes a timeline entry now.
pub fn insert(
    conn: &mut AnyConnection,
    out_trade_no: &str,
    kind: TimelineKind,
    source: TimelineSource,
    (from, to): States,
    detail: &serde_json::Value,
) -> DbResult<()> {
    let event = NewEvent {
        out_trade_no,
        kind: kind.as_str(),
        from_state: from.map(OrderState::as_str),
        to_state: to.map(OrderState::as_str),
        source: source.as_str(),
        detail: detail.to_string(),
        created_at: super::now(),
    };
    diesel::insert_into(order_events::table).values(&event).execute(conn)?;
    Ok(())
}

/// One timeline entry of many written together.
pub struct Entry<'a> {
    pub out_trade_no: &'a str,
    pub kind: TimelineKind,
    pub source: TimelineSource,
    pub states: States,
    pub detail: &'a serde_json::Value,
}

/// Writes many timeline entries in one statement.
pub fn insert_many(conn: &mut AnyConnection, entries: &[Entry<'_>]) -> DbResult<()> {
    let now = super::now();
    let rows: Vec<NewEvent<'_>> = entries
        .iter()
        .map(|e| NewEvent {
            out_trade_no: e.out_trade_no,
            kind: e.kind.as_str(),
            from_state: e.states.0.map(OrderState::as_str),
            to_state: e.states.1.map(OrderState::as_str),
            source: e.source.as_str(),
            detail: e.detail.to_string(),
            created_at: now,
        })
        .collect();
    // 7 bind parameters a row; SQLite allows 32,766 in a statement. Many rows in one statement
    // are backend-specific in Diesel, hence the match.
    for chunk in rows.chunks(1000) {
        let insert = diesel::insert_into(order_events::table).values(chunk);
        match conn {
            AnyConnection::Postgresql(c) => insert.execute(c)?,
            AnyConnection::Sqlite(c) => insert.execute(c)?,
        };
    }
    Ok(())
}

/// The id of the order's newest entry of `kind`, if any. Called in the transaction that just
/// wrote one, it is that entry's: a state change's entry is written under the order's guarded
/// UPDATE, so no other writer can add a later one of the same change before this one commits.
pub fn latest_id(conn: &mut AnyConnection, out_trade_no: &str, kind: TimelineKind) -> DbResult<Option<i64>> {
    Ok(order_events::table
        .filter(order_events::out_trade_no.eq(out_trade_no))
        .filter(order_events::kind.eq(kind.as_str()))
        .select(diesel::dsl::max(order_events::id))
        .first(conn)?)
}

pub fn for_order(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Vec<TimelineEntry>> {
    Ok(order_events::table
        .filter(order_events::out_trade_no.eq(out_trade_no))
        .order(order_events::id.asc())
        .select(EventDbRow::as_select())
        .load(conn)?
        .into_iter()
        .map(TimelineEntry::from)
        .collect())
}
