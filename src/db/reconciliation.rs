//! Reconciliation storage: one run row per Beijing bill date (claimed with a row lease, as every
//! job does), the findings of each date (unique per date, kind and item, so running a date again
//! records nothing twice), and the read-only queries that stream a day's local paid orders and
//! refunds by keyset for the comparison.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{orders, reconciliation_findings, reconciliation_runs, refunds};
use super::{AnyConnection, DbError, DbResult};

/// Where the reconciliation of one date stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Known (due, or asked for) but not started.
    Pending,
    /// An instance holds the lease and is working on it (or crashed; the lease then runs out).
    Running,
    /// WeChat is still generating the bill ("Bill Creating"); retried at `next_attempt_at`.
    Waiting,
    /// The download or the bill failed; retried at `next_attempt_at`.
    Failed,
    /// "No Bill Exist": no trade at WeChat that day; local payments of the day were still checked.
    NoBill,
    /// Compared; the figures and findings are final.
    Done,
}

impl RunState {
    pub const ALL: [RunState; 6] =
        [RunState::Pending, RunState::Running, RunState::Waiting, RunState::Failed, RunState::NoBill, RunState::Done];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "PENDING",
            RunState::Running => "RUNNING",
            RunState::Waiting => "WAITING",
            RunState::Failed => "FAILED",
            RunState::NoBill => "NO_BILL",
            RunState::Done => "DONE",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A finished date: the scheduler does not take it up again (staff still may).
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Done | RunState::NoBill)
    }
}

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

/// The counts and totals a run stores (money in fen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunFigures {
    pub bill_rows: i64,
    pub bill_paid_count: i64,
    pub bill_paid_fen: i64,
    pub bill_refund_count: i64,
    pub bill_refund_fen: i64,
    pub local_paid_count: i64,
    pub local_paid_fen: i64,
    /// Payments and refunds found on both sides with the same amount.
    pub matched: i64,
    /// Finding rows of the date.
    pub findings: i64,
}

/// A run as the rest of the program sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRow {
    /// `YYYY-MM-DD`, Beijing.
    pub bill_date: String,
    pub state: RunState,
    pub attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub figures: RunFigures,
    pub error: Option<String>,
}

impl TryFrom<RunDbRow> for RunRow {
    type Error = DbError;

    fn try_from(r: RunDbRow) -> DbResult<RunRow> {
        let state = RunState::parse(&r.state).ok_or_else(|| {
            DbError::Corrupt(format!("reconciliation {} has unknown state {:?}", r.bill_date, r.state))
        })?;
        Ok(RunRow {
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

pub fn find_run(conn: &mut AnyConnection, bill_date: &str) -> DbResult<Option<RunRow>> {
    reconciliation_runs::table
        .filter(reconciliation_runs::bill_date.eq(bill_date))
        .select(RunDbRow::as_select())
        .first(conn)
        .optional()?
        .map(RunRow::try_from)
        .transpose()
}

/// Runs newest date first, those before `before` when given (keyset paging).
pub fn list_runs(conn: &mut AnyConnection, before: Option<&str>, limit: i64) -> DbResult<Vec<RunRow>> {
    let mut q = reconciliation_runs::table
        .order(reconciliation_runs::bill_date.desc())
        .limit(limit)
        .select(RunDbRow::as_select())
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(reconciliation_runs::bill_date.lt(b.to_owned()));
    }
    q.load(conn)?.into_iter().map(RunRow::try_from).collect()
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

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = reconciliation_findings)]
pub struct FindingRow {
    pub id: i64,
    pub bill_date: String,
    pub kind: String,
    pub item_key: String,
    pub out_trade_no: Option<String>,
    pub detail: String,
    pub resolution: Option<String>,
    pub created_at: NaiveDateTime,
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
) -> DbResult<Vec<FindingRow>> {
    let mut q = reconciliation_findings::table
        .filter(reconciliation_findings::bill_date.eq(bill_date))
        .order(reconciliation_findings::id.asc())
        .limit(limit)
        .select(FindingRow::as_select())
        .into_boxed();
    if let Some(id) = after_id {
        q = q.filter(reconciliation_findings::id.gt(id));
    }
    Ok(q.load(conn)?)
}

pub fn count_findings(conn: &mut AnyConnection, bill_date: &str) -> DbResult<i64> {
    Ok(reconciliation_findings::table
        .filter(reconciliation_findings::bill_date.eq(bill_date))
        .count()
        .get_result(conn)?)
}

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
