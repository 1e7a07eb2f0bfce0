//! The day's side of a reconciliation: the local payments and refunds of one Beijing day, read by
//! keyset in index order, and look-ups of the numbers the bill names that the day's walk did not
//! meet. Read-only.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{orders, refunds};
use crate::db::{AnyConnection, DbResult};

/// A local payment as the day's keyset walk reads it (all from the covering index
/// `orders_paid_key`).
#[derive(Queryable, Clone, Debug, PartialEq, Eq)]
pub struct PaidKey {
    pub paid_at: Option<NaiveDateTime>,
    pub out_trade_no: String,
    pub paid_fen: Option<i64>,
}

/// Orders paid in `[from, to)`, in (paid_at, out_trade_no) order, after `after` (keyset).
///
/// The extra lower bound `paid_at >= after.paid_at` is what keeps each batch an index range
/// starting where the last one ended; the OR alone would make both backends rescan the day.
pub fn paid_between(
    conn: &mut AnyConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
    after: Option<(NaiveDateTime, &str)>,
    limit: i64,
) -> DbResult<Vec<PaidKey>> {
    let mut q = orders::table
        .filter(orders::paid_at.lt(to))
        .order((orders::paid_at.asc(), orders::out_trade_no.asc()))
        .limit(limit)
        .select((orders::paid_at, orders::out_trade_no, orders::paid_fen))
        .into_boxed();
    match after {
        None => q = q.filter(orders::paid_at.ge(from)),
        Some((at, no)) => {
            q = q
                .filter(orders::paid_at.ge(at.max(from)))
                .filter(orders::paid_at.gt(at).or(orders::out_trade_no.gt(no.to_owned()).nullable()));
        }
    }
    Ok(q.load(conn)?)
}

/// What the comparison needs to know about one order.
#[derive(Queryable, Clone, Debug, PartialEq, Eq)]
pub struct OrderFacts {
    pub out_trade_no: String,
    pub state: String,
    pub amount_fen: i64,
    pub paid_fen: Option<i64>,
    pub paid_at: Option<NaiveDateTime>,
    pub transaction_id: Option<String>,
}

/// The orders among `numbers` that exist.
pub fn orders_by_numbers(conn: &mut AnyConnection, numbers: &[String]) -> DbResult<Vec<OrderFacts>> {
    Ok(orders::table
        .filter(orders::out_trade_no.eq_any(numbers))
        .select((
            orders::out_trade_no,
            orders::state,
            orders::amount_fen,
            orders::paid_fen,
            orders::paid_at,
            orders::transaction_id,
        ))
        .load(conn)?)
}

/// What the comparison needs to know about one refund.
#[derive(Queryable, Clone, Debug, PartialEq, Eq)]
pub struct RefundFacts {
    pub created_at: NaiveDateTime,
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub amount_fen: i64,
    pub state: String,
}

/// Refunds created in `[from, to)`, in (created_at, out_refund_no) order, after `after` (keyset,
/// with the same extra lower bound as [`paid_between`]).
pub fn refunds_between(
    conn: &mut AnyConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
    after: Option<(NaiveDateTime, &str)>,
    limit: i64,
) -> DbResult<Vec<RefundFacts>> {
    let mut q = refunds::table
        .filter(refunds::created_at.lt(to))
        .order((refunds::created_at.asc(), refunds::out_refund_no.asc()))
        .limit(limit)
        .select((
            refunds::created_at,
            refunds::out_refund_no,
            refunds::out_trade_no,
            refunds::amount_fen,
            refunds::state,
        ))
        .into_boxed();
    match after {
        None => q = q.filter(refunds::created_at.ge(from)),
        Some((at, no)) => {
            q = q
                .filter(refunds::created_at.ge(at.max(from)))
                .filter(refunds::created_at.gt(at).or(refunds::out_refund_no.gt(no.to_owned())));
        }
    }
    Ok(q.load(conn)?)
}

/// The refunds among `numbers` that exist.
pub fn refunds_by_numbers(conn: &mut AnyConnection, numbers: &[String]) -> DbResult<Vec<RefundFacts>> {
    Ok(refunds::table
        .filter(refunds::out_refund_no.eq_any(numbers))
        .select((
            refunds::created_at,
            refunds::out_refund_no,
            refunds::out_trade_no,
            refunds::amount_fen,
            refunds::state,
        ))
        .load(conn)?)
}
