//! The dashboard's figures: money received per Beijing day, conversion of the orders created in a
//! period, orders still paying, open exceptions. Money is summed by the database as integer fen
//! (never through floating point) and read back as BIGINT.

use chrono::{Days, NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};

use super::schema::{exceptions, orders};
use super::{AnyConnection, DbError, DbResult};
use crate::domain::figures::{Conversion, DayRevenue, Overview};
use crate::domain::{Fen, OrderState};
use crate::wxpay::time::beijing_day_start;

/// The dashboard for the Beijing day `today`, with `chart_days` days of revenue (at least 7, as
/// the week's figures are summed from them).
pub fn overview(conn: &mut AnyConnection, today: NaiveDate, chart_days: u64) -> DbResult<Overview> {
    let chart_days = chart_days.max(7);
    let first = day_minus(today, chart_days - 1)?;
    let days = paid_by_day(conn, first, today)?;
    let yesterday = day_minus(today, 1)?;
    let week_start = day_minus(today, 6)?;
    let tomorrow = today.checked_add_days(Days::new(1)).ok_or_else(|| out_of_range(today))?;
    Ok(Overview {
        days,
        today: conversion(conn, today, tomorrow)?,
        yesterday: conversion(conn, yesterday, today)?,
        week: conversion(conn, week_start, tomorrow)?,
        paying: paying_now(conn)?,
        open_exceptions: open_exceptions(conn)?,
    })
}

fn day_minus(day: NaiveDate, n: u64) -> DbResult<NaiveDate> {
    day.checked_sub_days(Days::new(n)).ok_or_else(|| out_of_range(day))
}

fn out_of_range(day: NaiveDate) -> DbError {
    DbError::Corrupt(format!("date {day} is out of range"))
}

fn start_of(day: NaiveDate) -> NaiveDateTime {
    beijing_day_start(day).naive_utc()
}

#[derive(QueryableByName, Debug)]
struct DayRow {
    #[diesel(sql_type = Text)]
    day: String,
    #[diesel(sql_type = BigInt)]
    paid_count: i64,
    #[diesel(sql_type = BigInt)]
    paid_fen: i64,
}

// Grouping by the Beijing day needs date arithmetic, which the two backends spell differently;
// one grouped scan beats a query per day. PostgreSQL's SUM(bigint) is NUMERIC, cast back to
// BIGINT (an overflow is an error, never a rounded figure); SQLite's SUM of integers is an
// integer and also errors on overflow.
const PAID_BY_DAY_SQLITE: &str = "SELECT date(paid_at, '+8 hours') AS day, COUNT(*) AS paid_count, \
     COALESCE(SUM(paid_fen), 0) AS paid_fen FROM orders WHERE paid_at >= ? AND paid_at < ? GROUP BY 1";
const PAID_BY_DAY_POSTGRES: &str = "SELECT TO_CHAR(paid_at + INTERVAL '8 hours', 'YYYY-MM-DD') AS day, \
     COUNT(*) AS paid_count, CAST(COALESCE(SUM(paid_fen), 0) AS BIGINT) AS paid_fen FROM orders \
     WHERE paid_at >= $1 AND paid_at < $2 GROUP BY 1";

/// Payments per Beijing day from `first` to `last` inclusive, oldest first, zero-filled.
pub fn paid_by_day(conn: &mut AnyConnection, first: NaiveDate, last: NaiveDate) -> DbResult<Vec<DayRevenue>> {
    let from = start_of(first);
    let before = start_of(last.checked_add_days(Days::new(1)).ok_or_else(|| out_of_range(last))?);
    let rows: Vec<DayRow> = match conn {
        AnyConnection::Sqlite(c) => {
            diesel::sql_query(PAID_BY_DAY_SQLITE).bind::<Timestamp, _>(from).bind::<Timestamp, _>(before).load(c)?
        }
        AnyConnection::Postgresql(c) => {
            diesel::sql_query(PAID_BY_DAY_POSTGRES).bind::<Timestamp, _>(from).bind::<Timestamp, _>(before).load(c)?
        }
    };
    let mut days: Vec<DayRevenue> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|day| DayRevenue { day, paid_count: 0, paid: Fen::ZERO })
        .collect();
    for row in rows {
        let day = NaiveDate::parse_from_str(&row.day, "%Y-%m-%d")
            .map_err(|_| DbError::Corrupt(format!("day {:?} from the database", row.day)))?;
        if let Some(slot) = days.iter_mut().find(|d| d.day == day) {
            slot.paid_count = row.paid_count;
            slot.paid = Fen::new(row.paid_fen);
        }
    }
    Ok(days)
}

/// Orders created on Beijing days `[first, before)` and how many of them are PAID. Both counts
/// are ranges over the keyset indexes (`created_at`, and `state, created_at`), read from the
/// index alone.
pub fn conversion(conn: &mut AnyConnection, first: NaiveDate, before: NaiveDate) -> DbResult<Conversion> {
    let (from, until) = (start_of(first), start_of(before));
    let created = orders::table
        .filter(orders::created_at.ge(from))
        .filter(orders::created_at.lt(until))
        .count()
        .get_result(conn)?;
    let paid = orders::table
        .filter(orders::state.eq(OrderState::Paid.as_str()))
        .filter(orders::created_at.ge(from))
        .filter(orders::created_at.lt(until))
        .count()
        .get_result(conn)?;
    Ok(Conversion { created, paid })
}

pub fn paying_now(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(orders::table.filter(orders::state.eq(OrderState::Paying.as_str())).count().get_result(conn)?)
}

pub fn open_exceptions(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(exceptions::table.filter(exceptions::resolved_at.is_null()).count().get_result(conn)?)
}

/// How many orders are in each state, as stored (a word from a newer build included). One
/// grouped scan of the `(state, …)` index, never of the table; `/metrics` caches the result.
pub fn orders_by_state(conn: &mut AnyConnection) -> DbResult<Vec<(String, i64)>> {
    Ok(orders::table
        .group_by(orders::state)
        .select((orders::state, diesel::dsl::count_star()))
        .load::<(String, i64)>(conn)?)
}

/// Open exceptions by kind: a range of the `(resolved_at, id)` index (open ones are few).
pub fn open_exceptions_by_kind(conn: &mut AnyConnection) -> DbResult<Vec<(String, i64)>> {
    Ok(exceptions::table
        .filter(exceptions::resolved_at.is_null())
        .group_by(exceptions::kind)
        .select((exceptions::kind, diesel::dsl::count_star()))
        .load::<(String, i64)>(conn)?)
}
