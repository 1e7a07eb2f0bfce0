//! Reconciliation storage: one run row per Beijing bill date (claimed with a row lease, as every
//! job does), the findings of each date (unique per date, kind and item, so running a date again
//! records nothing twice), and the read-only queries that stream a day's local paid orders and
//! refunds by keyset for the comparison.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{reconciliation_findings, reconciliation_runs};
use super::{AnyConnection, DbError, DbResult};
use crate::domain::reconciliation::{FindingRecord, ReconciliationRun, RunFigures, RunState};

mod day;
pub use day::{OrderFacts, PaidKey, RefundFacts, orders_by_numbers, paid_between, refunds_between, refunds_by_numbers};

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = reconciliation_runs)]
struct RunDbRow {
    bill_date: String,
    state: String,
    attempts: i32,
    lease_owner: Option<String>,
    lease_until: Option<NaiveDateTime>,
    started_at: Option<NaiveDateTime>,
    finished_at: Option<NaiveDateTime>,
    next_attempt_at: Option<NaiveDateTime>,
    bill_rows: i64,
    bill_paid_count: i64,
    bill_paid_fen: i64,
    bill_refund_count: i64,
    bill_refund_fen: i64,
    local_paid_count: i64,
    local_paid_fen: i64,
    matched: i64,
    findings: i64,
    error: Option<String>,
}

impl TryFrom<RunDbRow> for ReconciliationRun {
    type Error = DbError;

    fn try_from(r: RunDbRow) -> DbResult<ReconciliationRun> {
        let state = RunState::parse(&r.state).ok_or_else(|| {
            DbError::Corrupt(format!("reconciliation {} has unknown state {:?}", r.bill_date, r.state))
        })?;
        Ok(ReconciliationRun {
            bill_date: r.bill_date,
            state,
            attempts: r.attempts,
            lease_owner: r.lease_owner,
            lease_until: r.lease_until,
            started_at: r.started_at,
            finished_at: r.finished_at,
            next_attempt_at: r.next_attempt_at,
            figures: RunFigures {
                bill_rows: r.bill_rows,
                bill_paid_count: r.bill_paid_count,
                bill_paid_fen: r.bill_paid_fen,
                bill_refund_count: r.bill_refund_count,
                bill_refund_fen: r.bill_refund_fen,
                local_paid_count: r.local_paid_count,
                local_paid_fen: r.local_paid_fen,
                matched: r.matched,
                findings: r.findings,
            },
            error: r.error,
        })
    }
}

/// Creates the run row of a date (PENDING) unless it exists. Runs in a savepoint so that the
/// duplicate of a concurrent creator does not abort the caller's transaction on PostgreSQL.
pub fn ensure_run(conn: &mut AnyConnection, bill_date: &str) -> DbResult<()> {
    let inserted = conn.transaction::<_, DbError, _>(|c| {
        diesel::insert_into(reconciliation_runs::table)
            .values((
                reconciliation_runs::bill_date.eq(bill_date),
                reconciliation_runs::state.eq(RunState::Pending.as_str()),
            ))
            .execute(c)?;
        Ok(())
    });
    match inserted {
        Err(e) if !e.is_unique_violation() => Err(e),
        _ => Ok(()),
    }
}

pub fn find_run(conn: &mut AnyConnection, bill_date: &str) -> DbResult<Option<ReconciliationRun>> {
    reconciliation_runs::table
        .filter(reconciliation_runs::bill_date.eq(bill_date))
        .select(RunDbRow::as_select())
        .first(conn)
        .optional()?
        .map(ReconciliationRun::try_from)
        .transpose()
}

/// Runs newest date first, those before `before` when given (keyset paging).
pub fn list_runs(conn: &mut AnyConnection, before: Option<&str>, limit: i64) -> DbResult<Vec<ReconciliationRun>> {
    let mut q = reconciliation_runs::table
        .order(reconciliation_runs::bill_date.desc())
        .limit(limit)
        .select(RunDbRow::as_select())
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(reconciliation_runs::bill_date.lt(b.to_owned()));
    }
    q.load(conn)?.into_iter().map(ReconciliationRun::try_from).collect()
}

/// Claims a date for `owner` until `lease_until`: one guarded UPDATE, so of two instances only
/// one gets it. A date under another live lease is never taken. Unless `any_state`, only a date
/// the scheduler should work on is taken: not finished, and its retry time reached.
pub fn claim_run(
    conn: &mut AnyConnection,
    bill_date: &str,
    owner: &str,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    any_state: bool,
) -> DbResult<bool> {
    let mut q = diesel::update(reconciliation_runs::table)
        .filter(reconciliation_runs::bill_date.eq(bill_date))
        .filter(reconciliation_runs::lease_until.is_null().or(reconciliation_runs::lease_until.lt(now)))
        .into_boxed();
    if !any_state {
        q = q
            .filter(reconciliation_runs::state.ne_all([RunState::Done.as_str(), RunState::NoBill.as_str()]))
            .filter(reconciliation_runs::next_attempt_at.is_null().or(reconciliation_runs::next_attempt_at.le(now)));
    }
    let n = q
        .set((
            reconciliation_runs::state.eq(RunState::Running.as_str()),
            reconciliation_runs::lease_owner.eq(Some(owner)),
            reconciliation_runs::lease_until.eq(Some(lease_until)),
            reconciliation_runs::attempts.eq(reconciliation_runs::attempts + 1),
            reconciliation_runs::started_at.eq(Some(now)),
            reconciliation_runs::finished_at.eq(None::<NaiveDateTime>),
            reconciliation_runs::next_attempt_at.eq(None::<NaiveDateTime>),
            reconciliation_runs::error.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Extends our lease; `false` means it is no longer ours (it ran out and another instance took it).
pub fn renew_lease(
    conn: &mut AnyConnection,
    bill_date: &str,
    owner: &str,
    lease_until: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(reconciliation_runs::table)
        .filter(reconciliation_runs::bill_date.eq(bill_date))
        .filter(reconciliation_runs::lease_owner.eq(owner))
        .filter(reconciliation_runs::state.eq(RunState::Running.as_str()))
        .set(reconciliation_runs::lease_until.eq(Some(lease_until)))
        .execute(conn)?;
    Ok(n == 1)
}

/// Stores the result of a comparison (DONE or NO_BILL) and releases the lease, if still ours.
pub fn finish_run(
    conn: &mut AnyConnection,
    bill_date: &str,
    owner: &str,
    state: RunState,
    f: &RunFigures,
    now: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(reconciliation_runs::table)
        .filter(reconciliation_runs::bill_date.eq(bill_date))
        .filter(reconciliation_runs::lease_owner.eq(owner))
        .set((
            reconciliation_runs::state.eq(state.as_str()),
            reconciliation_runs::lease_owner.eq(None::<String>),
            reconciliation_runs::lease_until.eq(None::<NaiveDateTime>),
            reconciliation_runs::finished_at.eq(Some(now)),
            reconciliation_runs::next_attempt_at.eq(None::<NaiveDateTime>),
            reconciliation_runs::error.eq(None::<String>),
            reconciliation_runs::bill_rows.eq(f.bill_rows),
            reconciliation_runs::bill_paid_count.eq(f.bill_paid_count),
            reconciliation_runs::bill_paid_fen.eq(f.bill_paid_fen),
            reconciliation_runs::bill_refund_count.eq(f.bill_refund_count),
            reconciliation_runs::bill_refund_fen.eq(f.bill_refund_fen),
            reconciliation_runs::local_paid_count.eq(f.local_paid_count),
            reconciliation_runs::local_paid_fen.eq(f.local_paid_fen),
            reconciliation_runs::matched.eq(f.matched),
            reconciliation_runs::findings.eq(f.findings),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Puts a run we hold back to wait (WAITING or FAILED) until `next_attempt_at`, releasing the lease.
pub fn defer_run(
    conn: &mut AnyConnection,
    bill_date: &str,
    owner: &str,
    state: RunState,
    next_attempt_at: NaiveDateTime,
    error: Option<&str>,
    now: NaiveDateTime,
) -> DbResult<bool> {
    let n = diesel::update(reconciliation_runs::table)
        .filter(reconciliation_runs::bill_date.eq(bill_date))
        .filter(reconciliation_runs::lease_owner.eq(owner))
        .set((
            reconciliation_runs::state.eq(state.as_str()),
            reconciliation_runs::lease_owner.eq(None::<String>),
            reconciliation_runs::lease_until.eq(None::<NaiveDateTime>),
            reconciliation_runs::finished_at.eq(Some(now)),
            reconciliation_runs::next_attempt_at.eq(Some(next_attempt_at)),
            reconciliation_runs::error.eq(error),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Dates the scheduler should work on now, oldest first: not finished, retry time reached, no live
/// lease, and not older than `oldest` (WeChat keeps bills for three months only).
pub fn due_dates(conn: &mut AnyConnection, now: NaiveDateTime, oldest: &str, limit: i64) -> DbResult<Vec<String>> {
    Ok(reconciliation_runs::table
        .filter(reconciliation_runs::state.ne_all([RunState::Done.as_str(), RunState::NoBill.as_str()]))
        .filter(reconciliation_runs::next_attempt_at.is_null().or(reconciliation_runs::next_attempt_at.le(now)))
        .filter(reconciliation_runs::lease_until.is_null().or(reconciliation_runs::lease_until.lt(now)))
        .filter(reconciliation_runs::bill_date.ge(oldest))
        .order(reconciliation_runs::bill_date.asc())
        .limit(limit)
        .select(reconciliation_runs::bill_date)
        .load(conn)?)
}

#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = reconciliation_findings)]
pub struct NewFinding {
    pub bill_date: String,
    pub kind: &'static str,
    /// The order number for payment findings, the refund number for refund findings.
    pub item_key: String,
    pub out_trade_no: Option<String>,
    /// JSON.
    pub detail: String,
    pub created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = reconciliation_findings)]
struct FindingDbRow {
    id: i64,
    bill_date: String,
    kind: String,
    item_key: String,
    out_trade_no: Option<String>,
    detail: String,
    resolution: Option<String>,
    created_at: NaiveDateTime,
}

impl From<FindingDbRow> for FindingRecord {
    fn from(r: FindingDbRow) -> FindingRecord {
        FindingRecord {
            id: r.id,
            bill_date: r.bill_date,
            kind: r.kind,
            item_key: r.item_key,
            out_trade_no: r.out_trade_no,
            detail: r.detail,
            resolution: r.resolution,
            created_at: r.created_at,
        }
    }
}

/// Records a finding unless the same (date, kind, item) is already recorded: `true` means new.
/// Runs in a savepoint so a duplicate does not abort the caller's transaction.
pub fn record_finding(conn: &mut AnyConnection, finding: &NewFinding) -> DbResult<bool> {
    let inserted = conn.transaction::<_, DbError, _>(|c| {
        diesel::insert_into(reconciliation_findings::table).values(finding).execute(c)?;
        Ok(())
    });
    match inserted {
        Ok(()) => Ok(true),
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Notes what became of a finding (e.g. "applied via orderquery").
pub fn set_resolution(
    conn: &mut AnyConnection,
    bill_date: &str,
    kind: &str,
    item_key: &str,
    resolution: &str,
) -> DbResult<bool> {
    let n = diesel::update(reconciliation_findings::table)
        .filter(reconciliation_findings::bill_date.eq(bill_date))
        .filter(reconciliation_findings::kind.eq(kind))
        .filter(reconciliation_findings::item_key.eq(item_key))
        .set(reconciliation_findings::resolution.eq(Some(resolution)))
        .execute(conn)?;
    Ok(n == 1)
}

/// A date's findings in the order they were found, after `after_id` (keyset paging).
pub fn findings_of(
    conn: &mut AnyConnection,
    bill_date: &str,
    after_id: Option<i64>,
    limit: i64,
) -> DbResult<Vec<FindingRecord>> {
    let mut q = reconciliation_findings::table
        .filter(reconciliation_findings::bill_date.eq(bill_date))
        .order(reconciliation_findings::id.asc())
        .limit(limit)
        .select(FindingDbRow::as_select())
        .into_boxed();
    if let Some(id) = after_id {
        q = q.filter(reconciliation_findings::id.gt(id));
    }
    Ok(q.load(conn)?.into_iter().map(FindingRecord::from).collect())
}

pub fn count_findings(conn: &mut AnyConnection, bill_date: &str) -> DbResult<i64> {
    Ok(reconciliation_findings::table
        .filter(reconciliation_findings::bill_date.eq(bill_date))
        .count()
        .get_result(conn)?)
}
