//! The orders table: typed rows, creation, look-ups, and the guarded UPDATE through which every
//! state change is applied.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::orders;
use super::{AnyConnection, DbError, DbResult};
use crate::domain::{Fen, Order, OrderState, PaymentApp};
use crate::wxpay::SignType;

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = orders)]
pub(super) struct OrderRow {
    out_trade_no: String,
    merchant_order_id: String,
    amount_fen: i64,
    description: String,
    attach: Option<String>,
    state: String,
    sign_type: String,
    openid: Option<String>,
    client_ip: Option<String>,
    prepay_id: Option<String>,
    prepay_created_at: Option<NaiveDateTime>,
    transaction_id: Option<String>,
    paid_fen: Option<i64>,
    paid_at: Option<NaiveDateTime>,
    paid_after_close: i32,
    refunded_fen: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    expires_at: NaiveDateTime,
    closed_at: Option<NaiveDateTime>,
    last_queried_at: Option<NaiveDateTime>,
    refund_reserved_fen: i64,
    webhook_url: Option<String>,
    return_url: Option<String>,
    prepay_app: Option<String>,
}

fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

impl TryFrom<OrderRow> for Order {
    type Error = DbError;

    fn try_from(r: OrderRow) -> DbResult<Order> {
        let state = OrderState::parse(&r.state)
            .ok_or_else(|| DbError::Corrupt(format!("order {} has unknown state {:?}", r.out_trade_no, r.state)))?;
        let sign_type = SignType::parse(&r.sign_type).ok_or_else(|| {
            DbError::Corrupt(format!("order {} has unknown sign type {:?}", r.out_trade_no, r.sign_type))
        })?;
        let unknown_app = |app: &str| DbError::Corrupt(format!("order {} has unknown app {app:?}", r.out_trade_no));
        let prepay_app =
            r.prepay_app.as_deref().map(|a| PaymentApp::parse(a).ok_or_else(|| unknown_app(a))).transpose()?;
        Ok(Order {
            out_trade_no: r.out_trade_no,
            merchant_order_id: r.merchant_order_id,
            amount: Fen::new(r.amount_fen),
            description: r.description,
            attach: r.attach,
            state,
            sign_type,
            openid: r.openid,
            client_ip: r.client_ip,
            prepay_id: r.prepay_id,
            prepay_created_at: r.prepay_created_at.map(utc),
            prepay_app,
            transaction_id: r.transaction_id,
            paid: r.paid_fen.map(Fen::new),
            paid_at: r.paid_at.map(utc),
            paid_after_close: r.paid_after_close != 0,
            refunded: Fen::new(r.refunded_fen),
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
            expires_at: utc(r.expires_at),
            closed_at: r.closed_at.map(utc),
            last_queried_at: r.last_queried_at.map(utc),
            refund_reserved: Fen::new(r.refund_reserved_fen),
            webhook_url: r.webhook_url,
            return_url: r.return_url,
        })
    }
}

#[derive(Insertable, Debug)]
#[diesel(table_name = orders)]
pub struct NewOrder {
    pub out_trade_no: String,
    pub merchant_order_id: String,
    pub amount_fen: i64,
    pub description: String,
    pub attach: Option<String>,
    pub state: String,
    pub sign_type: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub webhook_url: Option<String>,
    pub return_url: Option<String>,
}

/// Columns a guarded update may set; `None` leaves a column as it is.
#[derive(AsChangeset, Default, Debug)]
#[diesel(table_name = orders)]
pub struct OrderChanges {
    pub state: Option<String>,
    pub openid: Option<String>,
    pub client_ip: Option<String>,
    pub prepay_id: Option<String>,
    pub prepay_created_at: Option<NaiveDateTime>,
    pub prepay_app: Option<String>,
    pub transaction_id: Option<String>,
    pub paid_fen: Option<i64>,
    pub paid_at: Option<NaiveDateTime>,
    pub paid_after_close: Option<i32>,
    pub closed_at: Option<NaiveDateTime>,
    pub updated_at: Option<NaiveDateTime>,
    /// The poller's place in its schedule (reset when a prepay is issued).
    pub query_attempts: Option<i32>,
    /// `Some(None)` clears it: the order is no longer polled.
    pub next_query_at: Option<Option<NaiveDateTime>>,
}

impl OrderChanges {
    /// Takes every column `extra` sets (the prepay's, and the poller's schedule).
    pub fn merge(&mut self, extra: &OrderChanges) {
        macro_rules! take {
            ($($f:ident),*) => { $( if extra.$f.is_some() { self.$f = extra.$f.clone(); } )* };
        }
        take!(openid, client_ip, prepay_id, prepay_created_at, prepay_app, query_attempts, next_query_at);
    }
}

/// Inserts an order. A duplicate `merchant_order_id` or `out_trade_no` is a unique violation.
pub fn insert(conn: &mut AnyConnection, order: &NewOrder) -> DbResult<()> {
    diesel::insert_into(orders::table).values(order).execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Option<Order>> {
    orders::table
        .filter(orders::out_trade_no.eq(out_trade_no))
        .select(OrderRow::as_select())
        .first(conn)
        .optional()?
        .map(Order::try_from)
        .transpose()
}

/// The orders with these numbers, in the order the numbers are given (missing ones left out):
/// one statement on the primary key, for a page of the API's list.
pub fn find_many(conn: &mut AnyConnection, out_trade_nos: &[String]) -> DbResult<Vec<Order>> {
    let rows: Vec<OrderRow> =
        orders::table.filter(orders::out_trade_no.eq_any(out_trade_nos)).select(OrderRow::as_select()).load(conn)?;
    let mut by_no: std::collections::HashMap<String, OrderRow> =
        rows.into_iter().map(|r| (r.out_trade_no.clone(), r)).collect();
    out_trade_nos.iter().filter_map(|no| by_no.remove(no)).map(Order::try_from).collect()
}

pub fn find_by_merchant_order_id(conn: &mut AnyConnection, merchant_order_id: &str) -> DbResult<Option<Order>> {
    orders::table
        .filter(orders::merchant_order_id.eq(merchant_order_id))
        .select(OrderRow::as_select())
        .first(conn)
        .optional()?
        .map(Order::try_from)
        .transpose()
}

/// The compare-and-set every state change goes through: applies `changes` only while the order
/// is still in `from`. `true` means this call made the change; `false` means someone else got
/// there first (or the order is gone), and the caller re-reads and decides again.
pub fn update_if_state(
    conn: &mut AnyConnection,
    out_trade_no: &str,
    from: OrderState,
    changes: &OrderChanges,
) -> DbResult<bool> {
    let n = diesel::update(orders::table)
        .filter(orders::out_trade_no.eq(out_trade_no))
        .filter(orders::state.eq(from.as_str()))
        .set(changes)
        .execute(conn)?;
    Ok(n == 1)
}

/// Claims the right to query WeChat about this order now, at most once per `min_gap` across all
/// instances: the UPDATE succeeds for one caller only.
pub fn claim_query_slot(
    conn: &mut AnyConnection,
    out_trade_no: &str,
    now: NaiveDateTime,
    min_gap: chrono::Duration,
) -> DbResult<bool> {
    let threshold = now - min_gap;
    let n = diesel::update(orders::table)
        .filter(orders::out_trade_no.eq(out_trade_no))
        .filter(orders::last_queried_at.is_null().or(orders::last_queried_at.lt(threshold)))
        .set(orders::last_queried_at.eq(Some(now)))
        .execute(conn)?;
    Ok(n == 1)
}

/// Reserves `amount` of a paid order for a new refund, in the refund's own transaction. The one
/// guarded UPDATE is the whole check: it succeeds only while the order is PAID and the reserved
/// sum stays within what was paid, so concurrent refunds (on any number of instances) can never
/// add up to more than the payment.
pub fn reserve_refund(conn: &mut AnyConnection, out_trade_no: &str, amount: i64) -> DbResult<bool> {
    let n = diesel::update(orders::table)
        .filter(orders::out_trade_no.eq(out_trade_no))
        .filter(orders::state.eq(OrderState::Paid.as_str()))
        .filter(orders::paid_fen.ge((orders::refund_reserved_fen + amount).nullable()))
        .set((
            orders::refund_reserved_fen.eq(orders::refund_reserved_fen + amount),
            orders::updated_at.eq(super::now()),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Gives back the reservation of a refund that failed or was closed.
pub fn release_refund(conn: &mut AnyConnection, out_trade_no: &str, amount: i64) -> DbResult<bool> {
    let n = diesel::update(orders::table)
        .filter(orders::out_trade_no.eq(out_trade_no))
        .filter(orders::refund_reserved_fen.ge(amount))
        .set((
            orders::refund_reserved_fen.eq(orders::refund_reserved_fen - amount),
            orders::updated_at.eq(super::now()),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Counts a successful refund. Guarded by the reservation it was made under, so a refund can
/// only be counted if it was reserved first (refunded ≤ reserved ≤ paid).
pub fn add_refunded(conn: &mut AnyConnection, out_trade_no: &str, amount: i64) -> DbResult<bool> {
    let n = diesel::update(orders::table)
        .filter(orders::out_trade_no.eq(out_trade_no))
        .filter(orders::refund_reserved_fen.ge(orders::refunded_fen + amount))
        .set((orders::refunded_fen.eq(orders::refunded_fen + amount), orders::updated_at.eq(super::now())))
        .execute(conn)?;
    Ok(n == 1)
}

// Background jobs. A job picks candidates with a plain SELECT, then claims each with one guarded
// UPDATE that re-checks everything the SELECT assumed and that the row is not leased: one row
// changed means this instance owns the order until `lease_until` (see `jobs/`).

/// Nobody holds the row, or the holder's lease has run out.
macro_rules! lease_free {
    ($now:expr) => {
        orders::lease_until.is_null().or(orders::lease_until.lt($now))
    };
}

/// Where an order stands in the poller's schedule: columns `Order` does not carry.
#[derive(Queryable, Selectable, Clone, Debug, PartialEq, Eq)]
#[diesel(table_name = orders)]
pub struct QuerySchedule {
    pub out_trade_no: String,
    pub prepay_created_at: Option<NaiveDateTime>,
    pub query_attempts: i32,
    pub next_query_at: Option<NaiveDateTime>,
}

pub fn query_schedule(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Option<QuerySchedule>> {
    Ok(orders::table
        .filter(orders::out_trade_no.eq(out_trade_no))
        .select(QuerySchedule::as_select())
        .first(conn)
        .optional()?)
}

/// PAYING orders whose next query is due and that nobody holds, longest overdue first.
pub fn list_due_for_query(conn: &mut AnyConnection, now: NaiveDateTime, limit: i64) -> DbResult<Vec<String>> {
    Ok(orders::table
        .filter(orders::next_query_at.le(now))
        .filter(orders::state.eq(OrderState::Paying.as_str()))
        .filter(lease_free!(now))
        .order((orders::next_query_at.asc(), orders::out_trade_no.asc()))
        .limit(limit)
        .select(orders::out_trade_no)
        .load(conn)?)
}

/// Leases a PAYING order whose query is due. The due condition is part of the claim, so an
/// order another instance has just queried (and rescheduled) is not queried again.
pub fn claim_for_query(
    conn: &mut AnyConnection,
    out_trade_no: &str,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(orders::table)
        .filter(orders::out_trade_no.eq(out_trade_no))
        .filter(orders::state.eq(OrderState::Paying.as_str()))
        .filter(orders::next_query_at.le(now))
        .filter(lease_free!(now))
        .set((orders::lease_owner.eq(owner), orders::lease_until.eq(lease_until)))
        .execute(conn)?;
    Ok(n == 1)
}

/// Sets the poller's next step and releases the lease, only while the order is still PAYING,
/// still ours, and still due at `due` (a payment or a new prepay in the meantime wrote its own
/// schedule, which must win). `false` means nothing was changed; release the lease separately.
pub fn reschedule_query(
    conn: &mut AnyConnection,
    out_trade_no: &str,
    owner: &str,
    due: NaiveDateTime,
    query_attempts: i32,
    next_query_at: Option<NaiveDateTime>,
) -> DbResult<bool> {
    let n = diesel::update(orders::table)
        .filter(orders::out_trade_no.eq(out_trade_no))
        .filter(orders::state.eq(OrderState::Paying.as_str()))
        .filter(orders::lease_owner.eq(owner))
        .filter(orders::next_query_at.eq(due))
        .set((
            orders::query_attempts.eq(query_attempts),
            orders::next_query_at.eq(next_query_at),
            orders::lease_owner.eq(None::<String>),
            orders::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Payable orders past their expiry that nobody holds and that WeChat allows to be closed
/// (no prepay, or a prepay issued before `closable_before`), longest expired first.
pub fn list_expired(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    closable_before: NaiveDateTime,
    limit: i64,
) -> DbResult<Vec<String>> {
    Ok(orders::table
        .filter(orders::state.eq_any(payable_states()))
        .filter(orders::expires_at.le(now))
        .filter(orders::prepay_created_at.is_null().or(orders::prepay_created_at.le(closable_before)))
        .filter(lease_free!(now))
        .order((orders::expires_at.asc(), orders::out_trade_no.asc()))
        .limit(limit)
        .select(orders::out_trade_no)
        .load(conn)?)
}

/// Leases an expired payable order for the expirer (the same conditions as [`list_expired`]).
pub fn claim_for_expiry(
    conn: &mut AnyConnection,
    out_trade_no: &str,
    owner: &str,
    now: NaiveDateTime,
    closable_before: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(orders::table)
        .filter(orders::out_trade_no.eq(out_trade_no))
        .filter(orders::state.eq_any(payable_states()))
        .filter(orders::expires_at.le(now))
        .filter(orders::prepay_created_at.is_null().or(orders::prepay_created_at.le(closable_before)))
        .filter(lease_free!(now))
        .set((orders::lease_owner.eq(owner), orders::lease_until.eq(lease_until)))
        .execute(conn)?;
    Ok(n == 1)
}

fn payable_states() -> [&'static str; 3] {
    [OrderState::Created.as_str(), OrderState::Paying.as_str(), OrderState::PayError.as_str()]
}

/// Keeps an order leased until `until`: a job that must not retry sooner holds on to it.
pub fn hold_lease(conn: &mut AnyConnection, out_trade_no: &str, owner: &str, until: NaiveDateTime) -> DbResult<bool> {
    let n = diesel::update(orders::table)
        .filter(orders::out_trade_no.eq(out_trade_no))
        .filter(orders::lease_owner.eq(owner))
        .set(orders::lease_until.eq(until))
        .execute(conn)?;
    Ok(n == 1)
}

/// Gives an order's lease back, if it is still ours (after it ran out, another instance may
/// hold the order now, and its lease must stay).
pub fn release_lease(conn: &mut AnyConnection, out_trade_no: &str, owner: &str) -> DbResult<bool> {
    let n = diesel::update(orders::table)
        .filter(orders::out_trade_no.eq(out_trade_no))
        .filter(orders::lease_owner.eq(owner))
        .set((orders::lease_owner.eq(None::<String>), orders::lease_until.eq(None::<NaiveDateTime>)))
        .execute(conn)?;
    Ok(n == 1)
}
