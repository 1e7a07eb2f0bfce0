//! The admin order list: filtered reads of `orders`, newest first, paged by keyset on
//! `(created_at DESC, out_trade_no DESC)` so a deep page costs what the first one does (no OFFSET).
//! The list page and the streamed CSV export both read through here.
//!
//! Every query is shaped to walk one of the keyset indexes, `orders (created_at, out_trade_no)` or
//! `orders (state, created_at, out_trade_no)`, backwards from the cursor and stop after `limit` rows;
//! a search first resolves the box's text to at most a handful of order numbers through unique
//! indexes, then lists only those.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{orders, refunds};
use super::{AnyConnection, DbError, DbResult};
use crate::domain::listing::{Key, ListFilter, ListPage, ListedOrder, Seek};
use crate::domain::{Fen, OrderState};

#[derive(Queryable, Selectable, Debug)]
#[diesel(table_name = orders)]
struct ListRow {
    out_trade_no: String,
    merchant_order_id: String,
    description: String,
    amount_fen: i64,
    state: String,
    paid_fen: Option<i64>,
    paid_at: Option<NaiveDateTime>,
    transaction_id: Option<String>,
    refunded_fen: i64,
    created_at: NaiveDateTime,
}

impl TryFrom<ListRow> for ListedOrder {
    type Error = DbError;

    fn try_from(r: ListRow) -> DbResult<ListedOrder> {
        let state = OrderState::parse(&r.state)
            .ok_or_else(|| DbError::Corrupt(format!("order {} has unknown state {:?}", r.out_trade_no, r.state)))?;
        Ok(ListedOrder {
            out_trade_no: r.out_trade_no,
            merchant_order_id: r.merchant_order_id,
            description: r.description,
            amount: Fen::new(r.amount_fen),
            state,
            paid: r.paid_fen.map(Fen::new),
            paid_at: r.paid_at.map(|t| t.and_utc()),
            transaction_id: r.transaction_id,
            refunded: Fen::new(r.refunded_fen),
            created_at: r.created_at.and_utc(),
        })
    }
}

/// A page of at most `limit` rows starting at `seek`.
pub fn page(conn: &mut AnyConnection, filter: &ListFilter, seek: &Seek, limit: usize) -> DbResult<ListPage> {
    let targets = match search_targets(conn, filter)? {
        Targets::Nothing => return Ok(ListPage::default()),
        Targets::Every => None,
        Targets::Only(ids) => Some(ids),
    };
    // One row more than shown tells whether the list goes on in that direction.
    let mut rows = fetch(conn, filter, targets.as_deref(), seek, limit + 1)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok(match seek {
        Seek::First => ListPage { rows, has_newer: false, has_older: more },
        // We came from a page of newer rows, so there is one to go back to.
        Seek::After(_) => ListPage { rows, has_newer: true, has_older: more },
        Seek::Before(_) => {
            // Fetched oldest-first next to the key; shown newest first like every page.
            rows.reverse();
            ListPage { rows, has_newer: more, has_older: true }
        }
    })
}

/// The next `limit` rows after `after` (from the newest when `None`): the export's batches.
pub fn batch(
    conn: &mut AnyConnection,
    filter: &ListFilter,
    after: Option<&Key>,
    limit: usize,
) -> DbResult<Vec<ListedOrder>> {
    let targets = match search_targets(conn, filter)? {
        Targets::Nothing => return Ok(Vec::new()),
        Targets::Every => None,
        Targets::Only(ids) => Some(ids),
    };
    let seek = after.map_or(Seek::First, |k| Seek::After(k.clone()));
    fetch(conn, filter, targets.as_deref(), &seek, limit)
}

/// Which orders a search leaves in the list.
enum Targets {
    /// No search: every order (subject to the other filters).
    Every,
    /// The orders the search names.
    Only(Vec<String>),
    /// The search names no order: the list is empty.
    Nothing,
}

/// The order numbers a search (and the API's merchant_order_id filter) names. Each look-up is a
/// point read on a unique index (out_trade_no, transaction_id, merchant_order_id, refunds'
/// out_refund_no), so a search costs the same on a million orders as on ten, whatever the other
/// filters are.
fn search_targets(conn: &mut AnyConnection, filter: &ListFilter) -> DbResult<Targets> {
    let by_merchant_id = match filter.merchant_order_id.as_deref() {
        None => None,
        Some(id) => {
            let found: Option<String> = orders::table
                .filter(orders::merchant_order_id.eq(id))
                .select(orders::out_trade_no)
                .first(conn)
                .optional()?;
            match found {
                None => return Ok(Targets::Nothing),
                Some(no) => Some(no),
            }
        }
    };
    let Some(q) = filter.search.as_deref() else {
        return Ok(by_merchant_id.map_or(Targets::Every, |no| Targets::Only(vec![no])));
    };
    let mut found: Vec<String> = Vec::new();
    let mut add = |id: Option<String>| {
        if let Some(id) = id
            && !found.contains(&id)
        {
            found.push(id);
        }
    };
    add(orders::table.filter(orders::out_trade_no.eq(q)).select(orders::out_trade_no).first(conn).optional()?);
    add(orders::table.filter(orders::transaction_id.eq(q)).select(orders::out_trade_no).first(conn).optional()?);
    add(orders::table.filter(orders::merchant_order_id.eq(q)).select(orders::out_trade_no).first(conn).optional()?);
    add(refunds::table.filter(refunds::out_refund_no.eq(q)).select(refunds::out_trade_no).first(conn).optional()?);
    if let Some(no) = by_merchant_id {
        found.retain(|f| *f == no);
    }
    Ok(if found.is_empty() { Targets::Nothing } else { Targets::Only(found) })
}

fn fetch(
    conn: &mut AnyConnection,
    filter: &ListFilter,
    targets: Option<&[String]>,
    seek: &Seek,
    limit: usize,
) -> DbResult<Vec<ListedOrder>> {
    let mut q = orders::table.select(ListRow::as_select()).into_boxed();
    if let Some(ids) = targets {
        q = q.filter(orders::out_trade_no.eq_any(ids.to_vec()));
    }
    if let Some(state) = filter.state {
        q = q.filter(orders::state.eq(state.as_str()));
    }
    if let Some(from) = filter.created_from {
        q = q.filter(orders::created_at.ge(from));
    }
    if let Some(before) = filter.created_before {
        q = q.filter(orders::created_at.lt(before));
    }
    if let Some(min) = filter.min_fen {
        q = q.filter(orders::amount_fen.ge(min));
    }
    if let Some(max) = filter.max_fen {
        q = q.filter(orders::amount_fen.le(max));
    }
    if let Some(from) = filter.paid_from {
        q = q.filter(orders::paid_at.ge(from));
    }
    if let Some(before) = filter.paid_before {
        q = q.filter(orders::paid_at.lt(before));
    }
    // The keyset condition is written as `created_at <= c AND (created_at < c OR out_trade_no < o)`
    // rather than the OR alone: the first conjunct is a plain range both planners turn into an
    // index seek, the second only sorts out rows sharing the cursor's timestamp.
    q = match seek {
        Seek::First => q.order((orders::created_at.desc(), orders::out_trade_no.desc())),
        Seek::After(k) => q
            .filter(orders::created_at.le(k.created_at))
            .filter(orders::created_at.lt(k.created_at).or(orders::out_trade_no.lt(k.out_trade_no.clone())))
            .order((orders::created_at.desc(), orders::out_trade_no.desc())),
        Seek::Before(k) => q
            .filter(orders::created_at.ge(k.created_at))
            .filter(orders::created_at.gt(k.created_at).or(orders::out_trade_no.gt(k.out_trade_no.clone())))
            .order((orders::created_at.asc(), orders::out_trade_no.asc())),
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    q.limit(limit).load::<ListRow>(conn)?.into_iter().map(ListedOrder::try_from).collect()
}
