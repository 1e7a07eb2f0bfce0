//! The refunds table: one row per `out_refund_no`, created before WeChat is asked, and moved
//! between states only by guarded UPDATEs (`… WHERE state IN (expected)`), so a notify, a query
//! and a staff retry racing each other change a refund once.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::refunds;
use super::{AnyConnection, DbError, DbResult};
use crate::domain::{Fen, Refund, RefundState};

#[derive(Insertable, Debug)]
#[diesel(table_name = refunds)]
pub struct NewRefund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub amount_fen: i64,
    pub reason: String,
    pub state: String,
    pub requested_by: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = refunds)]
struct RefundDbRow {
    out_refund_no: String,
    out_trade_no: String,
    amount_fen: i64,
    reason: String,
    state: String,
    refund_id: Option<String>,
    requested_by: String,
    last_error: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    succeeded_at: Option<NaiveDateTime>,
}

impl TryFrom<RefundDbRow> for Refund {
    type Error = DbError;

    fn try_from(r: RefundDbRow) -> DbResult<Refund> {
        let state = RefundState::parse(&r.state)
            .ok_or_else(|| DbError::Corrupt(format!("refund {} has unknown state {:?}", r.out_refund_no, r.state)))?;
        Ok(Refund {
            out_refund_no: r.out_refund_no,
            out_trade_no: r.out_trade_no,
            amount: Fen::new(r.amount_fen),
            reason: r.reason,
            state,
            refund_id: r.refund_id,
            requested_by: r.requested_by,
            last_error: r.last_error,
            created_at: r.created_at.and_utc(),
            updated_at: r.updated_at.and_utc(),
            succeeded_at: r.succeeded_at.map(|t| t.and_utc()),
        })
    }
}

/// Inserts a refund. An existing `out_refund_no` is a unique violation: the caller re-reads.
pub fn insert(conn: &mut AnyConnection, refund: &NewRefund) -> DbResult<()> {
    diesel::insert_into(refunds::table).values(refund).execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut AnyConnection, out_refund_no: &str) -> DbResult<Option<Refund>> {
    refunds::table
        .filter(refunds::out_refund_no.eq(out_refund_no))
        .select(RefundDbRow::as_select())
        .first(conn)
        .optional()?
        .map(Refund::try_from)
        .transpose()
}

/// An order's refunds, oldest first.
pub fn for_order(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Vec<Refund>> {
    refunds::table
        .filter(refunds::out_trade_no.eq(out_trade_no))
        .order((refunds::created_at.asc(), refunds::out_refund_no.asc()))
        .select(RefundDbRow::as_select())
        .load(conn)?
        .into_iter()
        .map(Refund::try_from)
        .collect()
}

/// Refunds still waiting for an outcome (PENDING or PROCESSING), least recently touched first:
/// what a re-query or the refund-sync job asks WeChat about.
pub fn unsettled(conn: &mut AnyConnection, out_trade_no: Option<&str>, limit: i64) -> DbResult<Vec<Refund>> {
    let states = [RefundState::Pending.as_str(), RefundState::Processing.as_str()];
    let mut q = refunds::table
        .filter(refunds::state.eq_any(states))
        .order(refunds::updated_at.asc())
        .limit(limit)
        .select(RefundDbRow::as_select())
        .into_boxed();
    if let Some(no) = out_trade_no {
        q = q.filter(refunds::out_trade_no.eq(no.to_owned()));
    }
    q.load(conn)?.into_iter().map(Refund::try_from).collect()
}

/// Columns a guarded refund update may set besides `state`; `None` leaves a column as it is.
#[derive(AsChangeset, Default, Debug)]
#[diesel(table_name = refunds)]
pub struct RefundChanges {
    pub refund_id: Option<String>,
    /// `Some(None)` clears the error.
    pub last_error: Option<Option<String>>,
    pub succeeded_at: Option<NaiveDateTime>,
    /// When refund sync next asks WeChat; `Some(None)` clears it (the refund is settled).
    pub next_check_at: Option<Option<NaiveDateTime>>,
    pub check_attempts: Option<i32>,
}

/// The compare-and-set every refund state change goes through: moves the refund to `to` only
/// while it is in one of `from`. `true` means this call made the change.
pub fn update_if_state(
    conn: &mut AnyConnection,
    out_refund_no: &str,
    from: &[RefundState],
    to: RefundState,
    changes: &RefundChanges,
) -> DbResult<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let n = diesel::update(refunds::table)
        .filter(refunds::out_refund_no.eq(out_refund_no))
        .filter(refunds::state.eq_any(from))
        .set((refunds::state.eq(to.as_str()), refunds::updated_at.eq(super::now()), changes))
        .execute(conn)?;
    Ok(n == 1)
}

/// Records why the last attempt to send a PENDING refund failed (it stays PENDING, retryable).
pub fn note_error_if_pending(conn: &mut AnyConnection, out_refund_no: &str, error: &str) -> DbResult<bool> {
    let n = diesel::update(refunds::table)
        .filter(refunds::out_refund_no.eq(out_refund_no))
        .filter(refunds::state.eq(RefundState::Pending.as_str()))
        .set((refunds::last_error.eq(Some(error)), refunds::updated_at.eq(super::now())))
        .execute(conn)?;
    Ok(n == 1)
}

/// Claims the right to (re-)send a PENDING refund: only one caller wins, and only when the last
/// attempt failed or has been silent since `stale_before` (its process presumably died). The
/// claim clears the error and touches `updated_at`, which marks the refund as in flight again.
pub fn claim_send(conn: &mut AnyConnection, out_refund_no: &str, stale_before: NaiveDateTime) -> DbResult<bool> {
    let n = diesel::update(refunds::table)
        .filter(refunds::out_refund_no.eq(out_refund_no))
        .filter(refunds::state.eq(RefundState::Pending.as_str()))
        .filter(refunds::last_error.is_not_null().or(refunds::updated_at.lt(stale_before)))
        .set((refunds::last_error.eq(None::<String>), refunds::updated_at.eq(super::now())))
        .execute(conn)?;
    Ok(n == 1)
}

// Refund sync. Like the order jobs: candidates by a plain SELECT, then a lease per row by one
// guarded UPDATE that re-checks the candidate conditions (see `jobs/`).

/// Refunds whose next check is due: PROCESSING ones, and PENDING ones whose send failed or went
/// silent before `stale_before` (WeChat may have accepted them; a query finds out, nothing is
/// sent again). A refund never scheduled (`next_check_at` NULL) is due.
macro_rules! due_for_check {
    ($now:expr, $stale_before:expr) => {
        refunds::next_check_at.is_null().or(refunds::next_check_at.le($now)).and(
            refunds::state.eq(RefundState::Processing.as_str()).or(refunds::state
                .eq(RefundState::Pending.as_str())
                .and(refunds::last_error.is_not_null().or(refunds::updated_at.lt($stale_before)))),
        )
    };
}

macro_rules! refund_lease_free {
    ($now:expr) => {
        refunds::lease_until.is_null().or(refunds::lease_until.lt($now))
    };
}

/// Unsettled refunds due for a check that nobody holds, oldest first.
pub fn list_due_for_check(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    stale_before: NaiveDateTime,
    limit: i64,
) -> DbResult<Vec<String>> {
    Ok(refunds::table
        .filter(due_for_check!(now, stale_before))
        .filter(refund_lease_free!(now))
        .order((refunds::created_at.asc(), refunds::out_refund_no.asc()))
        .limit(limit)
        .select(refunds::out_refund_no)
        .load(conn)?)
}

/// Leases a refund due for a check (the same conditions as [`list_due_for_check`]).
pub fn claim_for_check(
    conn: &mut AnyConnection,
    out_refund_no: &str,
    owner: &str,
    now: NaiveDateTime,
    stale_before: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(refunds::table)
        .filter(refunds::out_refund_no.eq(out_refund_no))
        .filter(due_for_check!(now, stale_before))
        .filter(refund_lease_free!(now))
        .set((refunds::lease_owner.eq(owner), refunds::lease_until.eq(lease_until)))
        .execute(conn)?;
    Ok(n == 1)
}

/// How many checks a refund has had (`None`: no such refund).
pub fn check_attempts(conn: &mut AnyConnection, out_refund_no: &str) -> DbResult<Option<i32>> {
    Ok(refunds::table
        .filter(refunds::out_refund_no.eq(out_refund_no))
        .select(refunds::check_attempts)
        .first(conn)
        .optional()?)
}

/// Sets the next check and releases the lease, only while the refund is still in `state` and
/// ours: an outcome applied meanwhile wrote its own schedule, which must win. `false` means
/// nothing was changed; release the lease separately.
pub fn reschedule_check(
    conn: &mut AnyConnection,
    out_refund_no: &str,
    owner: &str,
    state: RefundState,
    check_attempts: i32,
    next_check_at: NaiveDateTime,
) -> DbResult<bool> {
    // `updated_at` is left alone: for a PENDING refund it marks when its send was last tried.
    let n = diesel::update(refunds::table)
        .filter(refunds::out_refund_no.eq(out_refund_no))
        .filter(refunds::state.eq(state.as_str()))
        .filter(refunds::lease_owner.eq(owner))
        .set((
            refunds::check_attempts.eq(check_attempts),
            refunds::next_check_at.eq(Some(next_check_at)),
            refunds::lease_owner.eq(None::<String>),
            refunds::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Gives a refund's lease back, if it is still ours.
pub fn release_lease(conn: &mut AnyConnection, out_refund_no: &str, owner: &str) -> DbResult<bool> {
    let n = diesel::update(refunds::table)
        .filter(refunds::out_refund_no.eq(out_refund_no))
        .filter(refunds::lease_owner.eq(owner))
        .set((refunds::lease_owner.eq(None::<String>), refunds::lease_until.eq(None::<NaiveDateTime>)))
        .execute(conn)?;
    Ok(n == 1)
}
