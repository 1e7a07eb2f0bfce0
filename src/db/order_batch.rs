//! Many orders in one statement, for the notify writer's batches: read (and on PostgreSQL lock)
//! every order of a batch at once, and mark a batch's payments PAID with one guarded UPDATE.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamp};

use super::orders::{self, OrderChanges, OrderRow};
use super::schema::orders as table;
use super::{AnyConnection, DbError, DbResult};
use crate::domain::{Order, OrderState};

/// The orders named, by `out_trade_no`. On PostgreSQL their rows are locked until the end of the
/// transaction, taken in `out_trade_no` order (so that two batches never wait on each other in a
/// circle); SQLite's one writer holds the whole database already.
pub fn find_many_locked(conn: &mut AnyConnection, nos: &[String]) -> DbResult<HashMap<String, Order>> {
    // The same query for each backend: `eq_any` binds differently on each.
    macro_rules! query {
        () => {
            table::table
                .filter(table::out_trade_no.eq_any(nos))
                .order(table::out_trade_no)
                .select(OrderRow::as_select())
        };
    }
    let rows: Vec<OrderRow> = match conn {
        AnyConnection::Postgresql(c) => query!().for_update().load(c)?,
        AnyConnection::Sqlite(c) => query!().load(c)?,
    };
    rows.into_iter().map(|r| Order::try_from(r).map(|o| (o.out_trade_no.clone(), o))).collect()
}

/// One payment to record: the order, the state it must still be in, and the columns a payment
/// sets (as `payments::apply` computes them for a single one).
pub struct PaidChange<'a> {
    pub out_trade_no: &'a str,
    pub from: OrderState,
    pub changes: &'a OrderChanges,
}

/// Applies payments guarded by their states. Fails unless every one of them applied: the caller
/// holds the rows' locks, so a miss means something is wrong and the batch must not commit.
pub fn mark_paid_many(conn: &mut AnyConnection, paid: &[PaidChange<'_>]) -> DbResult<()> {
    let applied = match conn {
        AnyConnection::Postgresql(c) => mark_paid_postgres(c, paid)?,
        AnyConnection::Sqlite(_) => {
            let mut n = 0;
            for p in paid {
                n += usize::from(orders::update_if_state(conn, p.out_trade_no, p.from, p.changes)?);
            }
            n
        }
    };
    if applied == paid.len() {
        Ok(())
    } else {
        Err(DbError::Corrupt(format!("{applied} of {} payments applied under lock", paid.len())))
    }
}

/// One UPDATE for the whole batch, each row guarded by its own expected state.
fn mark_paid_postgres(conn: &mut PgConnection, paid: &[PaidChange<'_>]) -> DbResult<usize> {
    let mut columns = PaidColumns::default();
    for p in paid {
        let c = p.changes;
        let (Some(state), Some(tid), Some(fen), Some(at), Some(after_close), Some(updated), Some(None)) =
            (&c.state, &c.transaction_id, c.paid_fen, c.paid_at, c.paid_after_close, c.updated_at, c.next_query_at)
        else {
            return Err(DbError::Corrupt(format!("not a payment's changes for {}: {c:?}", p.out_trade_no)));
        };
        columns.nos.push(p.out_trade_no.to_owned());
        columns.from.push(p.from.as_str().to_owned());
        columns.to.push(state.clone());
        columns.transaction_ids.push(tid.clone());
        columns.paid_fen.push(fen);
        columns.paid_at.push(at);
        columns.after_close.push(i64::from(after_close));
        columns.updated_at.push(updated);
    }
    let n = diesel::sql_query(
        "UPDATE orders SET state = v.to_state, transaction_id = v.transaction_id, paid_fen = v.paid_fen, \
         paid_at = v.paid_at, paid_after_close = v.after_close::integer, updated_at = v.updated_at, \
         next_query_at = NULL \
         FROM unnest($1, $2, $3, $4, $5, $6, $7, $8) \
           AS v(out_trade_no, from_state, to_state, transaction_id, paid_fen, paid_at, after_close, updated_at) \
         WHERE orders.out_trade_no = v.out_trade_no AND orders.state = v.from_state",
    )
    .bind::<Array<Text>, _>(&columns.nos)
    .bind::<Array<Text>, _>(&columns.from)
    .bind::<Array<Text>, _>(&columns.to)
    .bind::<Array<Text>, _>(&columns.transaction_ids)
    .bind::<Array<BigInt>, _>(&columns.paid_fen)
    .bind::<Array<Timestamp>, _>(&columns.paid_at)
    .bind::<Array<BigInt>, _>(&columns.after_close)
    .bind::<Array<Timestamp>, _>(&columns.updated_at)
    .execute(conn)?;
    Ok(n)
}

#[derive(Default)]
struct PaidColumns {
    nos: Vec<String>,
    from: Vec<String>,
    to: Vec<String>,
    transaction_ids: Vec<String>,
    paid_fen: Vec<i64>,
    paid_at: Vec<NaiveDateTime>,
    after_close: Vec<i64>,
    updated_at: Vec<NaiveDateTime>,
}
