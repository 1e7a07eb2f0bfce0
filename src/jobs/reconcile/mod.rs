//! The daily reconciliation against WeChat's T+1 bill.
//!
//! For one Beijing date a run: claims the date's run row with a lease (one guarded UPDATE, as
//! every job does, kept alive by a heartbeat while the run lasts); downloads the ALL bill as GZIP
//! into `bill_dir/YYYYMMDD-all.csv.gz` (kept as evidence); parses it into compact tables and
//! streams the day's local paid orders and refunds past them ([`compare`]); records each
//! difference as a finding and an exception ([`findings`]); asks WeChat (orderquery, through the
//! shared transition) about payments it has and we do not; and stores the figures. "No Bill
//! Exist" is an empty day (still compared: our payments of a day WeChat has no bill for are
//! findings); "Bill Creating" waits and retries; other failures are retried with back-off. No
//! transaction is held while WeChat is called, and running a date again records nothing twice.

pub mod bill_side;
pub mod compare;
pub mod findings;
pub mod progress;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::StreamExt;
use serde_json::json;

use self::bill_side::{BillFigures, BillSide};
use self::compare::{CompareError, Compared, ToQuery, Window};
use self::findings::{FindingKind, FindingSink};
use self::progress::{Phase, Progress};
use super::{JobContext, JobReport, LEASE};
use crate::db::reconciliation::{self, RunFigures, RunRow, RunState};
use crate::db::{Db, DbError};
use crate::domain::OrderState;
use crate::error::AppError;
use crate::payments::refund::Actor;
use crate::wxpay::WxError;
use crate::wxpay::bill::BillError;
use crate::wxpay::download_bill::{BillDownload, DownloadBill};
use crate::wxpay::time::beijing;
use crate::wxpay::types::BillType;

/// How long to wait when WeChat says "Bill Creating".
const WAIT_FOR_BILL: chrono::Duration = chrono::Duration::minutes(30);
/// First retry delay after a failure; doubled per attempt up to [`RETRY_MAX`].
const RETRY_BASE: chrono::Duration = chrono::Duration::minutes(30);
const RETRY_MAX: chrono::Duration = chrono::Duration::hours(6);
/// WeChat keeps bills for three months; older dates are not retried by the scheduler.
const KEEP_DAYS: i64 = 92;
/// Dates one scheduler pass takes on (each may take a while).
const DUE_PER_PASS: i64 = 3;
/// What a finding fixed through orderquery says.
pub const APPLIED_VIA_ORDERQUERY: &str = "applied via orderquery";

/// How a run is asked for.
#[derive(Clone)]
pub struct RunOptions {
    /// Run whatever the date's state (command line, console); otherwise only a due, unfinished date.
    pub any_state: bool,
    pub progress: Arc<dyn Progress>,
    /// Staff who asked: audited in the transaction that claims the date.
    pub requested_by: Option<Actor>,
}

impl RunOptions {
    /// Now, whatever the state (still never while another instance holds the date).
    pub fn now() -> RunOptions {
        RunOptions { any_state: true, progress: progress::silent(), requested_by: None }
    }

    /// As the scheduler does: only if not finished and due.
    pub fn due() -> RunOptions {
        RunOptions { any_state: false, ..RunOptions::now() }
    }
}

/// What a completed comparison found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunResult {
    pub bill_date: NaiveDate,
    /// DONE or NO_BILL.
    pub state: RunState,
    pub figures: RunFigures,
    /// Differences seen by this run (recorded before or now).
    pub differences: u64,
    /// Findings recorded for the first time by this run.
    pub new_findings: u64,
    /// Payments WeChat had and we did not, now applied through orderquery.
    pub applied: u64,
    /// orderquery calls that failed (retried by the next run of the date).
    pub query_errors: u64,
    pub bill_file: Option<PathBuf>,
    pub elapsed: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Finished(RunResult),
    /// "Bill Creating": retried at the time given.
    Waiting {
        bill_date: NaiveDate,
        next_attempt_at: DateTime<Utc>,
    },
    /// The download or the bill failed; retried at the time given.
    Failed {
        bill_date: NaiveDate,
        error: String,
        next_attempt_at: DateTime<Utc>,
    },
    /// Not taken: another instance holds the date, or (scheduler) it is finished or not due.
    NotClaimed {
        bill_date: NaiveDate,
        state: Option<RunState>,
        lease_owner: Option<String>,
    },
}

impl RunOutcome {
    /// One line, for logs and the job report.
    pub fn headline(&self) -> String {
        match self {
            RunOutcome::Finished(r) => format!(
                "{} {}: {} bill rows, {} matched, {} differences ({} new), {} applied via orderquery",
                r.bill_date,
                r.state.as_str(),
                r.figures.bill_rows,
                r.figures.matched,
                r.differences,
                r.new_findings,
                r.applied
            ),
            RunOutcome::Waiting { bill_date, next_attempt_at } => {
                format!(
                    "{bill_date} WAITING: the bill is still being generated; retry at {}",
                    beijing_text(*next_attempt_at)
                )
            }
            RunOutcome::Failed { bill_date, error, next_attempt_at } => {
                format!("{bill_date} FAILED: {error}; retry at {}", beijing_text(*next_attempt_at))
            }
            RunOutcome::NotClaimed { bill_date, state, lease_owner } => match lease_owner {
                Some(owner) => format!("{bill_date}: being reconciled by {owner}"),
                None => format!("{bill_date}: not due ({})", state.map_or("no run", |s| s.as_str())),
            },
        }
    }
}

impl std::fmt::Display for RunOutcome {
    /// The command line's report: the headline, then the figures of a finished run.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.headline())?;
        if let RunOutcome::Finished(r) = self {
            let g = &r.figures;
            let yuan = |fen: i64| crate::domain::Fen::new(fen).to_yuan_string();
            writeln!(
                f,
                "  bill:      {} rows; {} payments ¥{}; {} refunds ¥{}",
                g.bill_rows,
                g.bill_paid_count,
                yuan(g.bill_paid_fen),
                g.bill_refund_count,
                yuan(g.bill_refund_fen)
            )?;
            writeln!(f, "  local:     {} paid orders ¥{}", g.local_paid_count, yuan(g.local_paid_fen))?;
            writeln!(f, "  matched:   {}", g.matched)?;
            writeln!(f, "  findings:  {} for this date ({} new in this run)", g.findings, r.new_findings)?;
            if r.query_errors > 0 {
                writeln!(f, "  orderquery failed for {} payments; run the date again later", r.query_errors)?;
            }
            if let Some(path) = &r.bill_file {
                writeln!(f, "  bill file: {}", path.display())?;
            }
            write!(f, "  took {:.2} s", r.elapsed.as_secs_f64())?;
        }
        Ok(())
    }
}

fn beijing_text(t: DateTime<Utc>) -> String {
    t.with_timezone(&beijing()).format("%Y-%m-%d %H:%M").to_string()
}

/// The run-row key of a date.
pub fn date_key(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// Where a date's bill is kept.
pub fn bill_path(dir: &Path, date: NaiveDate, gzip: bool) -> PathBuf {
    dir.join(format!("{}-all.csv{}", date.format("%Y%m%d"), if gzip { ".gz" } else { "" }))
}

/// Reconciles every day that is due and not done yet: yesterday once `reconcile_at` (Beijing)
/// has passed, and dates waiting for a retry whose time has come.
pub async fn run_due(ctx: &JobContext) -> Result<JobReport, AppError> {
    let now = Utc::now();
    let local = now.with_timezone(&beijing());
    let today = local.date_naive();
    if local.time() >= ctx.settings.reconcile_at
        && let Some(yesterday) = today.pred_opt()
    {
        let key = date_key(yesterday);
        ctx.payments.db.write(move |c| reconciliation::ensure_run(c, &key)).await?;
    }
    let oldest = date_key(today - chrono::Duration::days(KEEP_DAYS));
    let dates =
        ctx.payments.db.read(move |c| reconciliation::due_dates(c, now.naive_utc(), &oldest, DUE_PER_PASS)).await?;
    let mut report = JobReport::default();
    let mut notes = Vec::new();
    for key in dates {
        let Ok(date) = NaiveDate::parse_from_str(&key, "%Y-%m-%d") else {
            tracing::error!(bill_date = key, "reconciliation run with an unreadable date");
            continue;
        };
        match reconcile_date(ctx, date, RunOptions::due()).await {
            Ok(RunOutcome::NotClaimed { .. }) => {}
            Ok(outcome @ RunOutcome::Failed { .. }) => {
                report.failed += 1;
                notes.push(outcome.headline());
            }
            Ok(outcome) => {
                report.handled += 1;
                notes.push(outcome.headline());
            }
            Err(e) => {
                report.failed += 1;
                tracing::error!(bill_date = key, error = %e, "reconciliation failed");
                notes.push(format!("{key}: {e}"));
            }
        }
    }
    report.note = notes.join("; ");
    Ok(report)
}

/// `wechat-checkout reconcile --date`: reconciles one day now, whatever its state.
pub async fn run_date_cli(ctx: &JobContext, date: NaiveDate) -> Result<JobReport, AppError> {
    let outcome = reconcile_date(ctx, date, RunOptions::now()).await?;
    let (handled, failed) = match &outcome {
        RunOutcome::Finished(_) | RunOutcome::Waiting { .. } => (1, 0),
        RunOutcome::Failed { .. } => (0, 1),
        RunOutcome::NotClaimed { .. } => (0, 0),
    };
    Ok(JobReport { handled, failed, note: outcome.headline() })
}

/// Keeps our lease alive while the run lasts; stopped (aborted) when dropped.
struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

impl Heartbeat {
    fn start(db: Db, key: String, owner: String) -> Heartbeat {
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let task = tokio::spawn(async move {
            let every = (LEASE / 3).to_std().unwrap_or(Duration::from_secs(20));
            loop {
                tokio::time::sleep(every).await;
                let (k, o) = (key.clone(), owner.clone());
                let until = crate::db::now() + LEASE;
                match db.write(move |c| reconciliation::renew_lease(c, &k, &o, until)).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(bill_date = key, "reconciliation lease lost");
                        flag.store(true, Ordering::Relaxed);
                        return;
                    }
                    // A passing database hiccup: the lease has two more beats before it ends.
                    Err(e) => tracing::warn!(bill_date = key, error = %e, "reconciliation lease renewal failed"),
                }
            }
        });
        Heartbeat { task, lost }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a claimed run did not reach the comparison's end.
enum Stop {
    /// Retry later in this state (WAITING or FAILED).
    Defer(RunState, String),
    Db(DbError),
}

/// Reconciles one Beijing date: claim, download, compare, confirm, store.
pub async fn reconcile_date(ctx: &JobContext, date: NaiveDate, opts: RunOptions) -> Result<RunOutcome, AppError> {
    let started = Instant::now();
    let key = date_key(date);
    let owner = ctx.owner().to_owned();
    let db = ctx.payments.db.clone();

    let (k, o, actor, any_state) = (key.clone(), owner.clone(), opts.requested_by.clone(), opts.any_state);
    let claimed = db
        .write(move |c| -> Result<(bool, Option<RunRow>), DbError> {
            reconciliation::ensure_run(c, &k)?;
            let now = crate::db::now();
            let claimed = reconciliation::claim_run(c, &k, &o, now, now + LEASE, any_state)?;
            let run = reconciliation::find_run(c, &k)?;
            if let Some(actor) = actor {
                let detail = json!({ "bill_date": k, "started": claimed });
                actor.record(c, "reconciliation_run", None, Some(&format!("reconciliation:{k}")), detail)?;
            }
            Ok((claimed, run))
        })
        .await?;
    let attempts = match claimed {
        (true, run) => run.map_or(1, |r| r.attempts),
        (false, run) => {
            return Ok(RunOutcome::NotClaimed {
                bill_date: date,
                state: run.as_ref().map(|r| r.state),
                lease_owner: run
                    .and_then(|r| r.lease_owner.filter(|_| r.lease_until.is_some_and(|u| u >= crate::db::now()))),
            });
        }
    };
    tracing::info!(bill_date = key, attempt = attempts, "reconciliation started");
    let heartbeat = Heartbeat::start(db.clone(), key.clone(), owner.clone());

    let result = run_claimed(ctx, date, &key, &opts, &heartbeat.lost).await;
    drop(heartbeat);
    let now = crate::db::now();
    let stop = match result {
        Ok(mut r) => {
            r.elapsed = started.elapsed();
            let (k, o, state, figures) = (key.clone(), owner.clone(), r.state, r.figures);
            let ours = db.write(move |c| reconciliation::finish_run(c, &k, &o, state, &figures, now)).await?;
            if !ours {
                tracing::warn!(bill_date = key, "reconciliation finished after its lease was taken over");
            }
            tracing::info!(
                bill_date = key,
                outcome = RunOutcome::Finished(r.clone()).headline(),
                "reconciliation done"
            );
            return Ok(RunOutcome::Finished(r));
        }
        Err(stop) => stop,
    };
    let (state, error, next) = match stop {
        Stop::Defer(RunState::Waiting, why) => (RunState::Waiting, why, now + WAIT_FOR_BILL),
        Stop::Defer(state, why) => (state, why, now + backoff(attempts)),
        Stop::Db(e) => (RunState::Failed, e.to_string(), now + backoff(attempts)),
    };
    let (k, o, e) = (key.clone(), owner, error.clone());
    let stored = db.write(move |c| reconciliation::defer_run(c, &k, &o, state, next, Some(&e), now)).await;
    if let Err(e) = stored {
        // The lease runs out by itself and the date is retried; nothing else to do.
        tracing::error!(bill_date = key, error = %e, "could not record the reconciliation's failure");
    }
    let next_attempt_at = next.and_utc();
    Ok(match state {
        RunState::Waiting => {
            tracing::info!(bill_date = key, "bill not ready yet; waiting");
            RunOutcome::Waiting { bill_date: date, next_attempt_at }
        }
        _ => {
            tracing::warn!(bill_date = key, error, "reconciliation failed; will retry");
            RunOutcome::Failed { bill_date: date, error, next_attempt_at }
        }
    })
}

/// Retry delay after the `attempts`th attempt failed: 30 min, 1 h, 2 h, … at most 6 h.
fn backoff(attempts: i32) -> chrono::Duration {
    let doublings = attempts.clamp(1, 8) - 1;
    (RETRY_BASE * 2i32.pow(doublings as u32)).min(RETRY_MAX)
}

/// A file name part made from the instance name (which may hold anything).
fn file_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(64).collect()
}

/// Downloads the bill: `Some((path, gzip))`, or `None` for "No Bill Exist".
async fn download(ctx: &JobContext, date: NaiveDate, progress: &dyn Progress) -> Result<Option<(PathBuf, bool)>, Stop> {
    let dir = ctx.settings.bill_dir.clone();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| Stop::Defer(RunState::Failed, format!("cannot create {}: {e}", dir.display())))?;
    // Written under a temporary name and renamed when complete, so a failed download never
    // replaces the evidence of an earlier one.
    let part = dir.join(format!(".{}-all.{}.part", date.format("%Y%m%d"), file_safe(ctx.owner())));
    let req = DownloadBill { bill_date: date, bill_type: BillType::All, gzip: true, device_info: None };
    progress.begin(Phase::Download, None);
    let downloaded = ctx.payments.gateway.download_bill(&req, &part).await;
    progress.end();
    match downloaded {
        Ok(BillDownload::Written { gzip, .. }) => {
            let path = bill_path(&dir, date, gzip);
            tokio::fs::rename(&part, &path).await.map_err(|e| {
                Stop::Defer(RunState::Failed, format!("cannot store the bill as {}: {e}", path.display()))
            })?;
            Ok(Some((path, gzip)))
        }
        Ok(BillDownload::NoBill) => {
            let _ = tokio::fs::remove_file(&part).await;
            Ok(None)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            Err(match e {
                WxError::BillCreating => Stop::Defer(RunState::Waiting, e.to_string()),
                other => Stop::Defer(RunState::Failed, format!("downloadbill: {other}")),
            })
        }
    }
}

/// What the blocking part of a run returns.
struct BlockingResult {
    bill: BillFigures,
    compared: Compared,
    seen: u64,
    new: u64,
}

enum BlockingError {
    Bill(BillError),
    Compare(CompareError),
}

/// The work of a claimed run, up to the figures (the caller stores them).
async fn run_claimed(
    ctx: &JobContext,
    date: NaiveDate,
    key: &str,
    opts: &RunOptions,
    lease_lost: &Arc<AtomicBool>,
) -> Result<RunResult, Stop> {
    let bill = download(ctx, date, &*opts.progress).await?;
    let db = ctx.payments.db.clone();
    let (progress, lost, bill_file) = (opts.progress.clone(), lease_lost.clone(), bill.clone());
    let sink = FindingSink::new(db.clone(), key);
    let blocking = crate::db::run_blocking(move || -> Result<BlockingResult, BlockingError> {
        let mut side = match &bill_file {
            Some((path, gzip)) => BillSide::read_file(path, *gzip, &*progress).map_err(BlockingError::Bill)?,
            None => BillSide::default(),
        };
        let mut sink = sink;
        let compared = compare::compare(&db, &mut side, Window::beijing_day(date), &mut sink, &*progress, &lost)
            .map_err(BlockingError::Compare)?;
        Ok(BlockingResult { bill: side.figures, compared, seen: sink.seen, new: sink.new })
    })
    .await;
    let done = match blocking {
        Ok(done) => done,
        Err(BlockingError::Bill(e)) => {
            return Err(Stop::Defer(RunState::Failed, format!("the bill is unreadable: {e}")));
        }
        Err(BlockingError::Compare(CompareError::Db(e))) => return Err(Stop::Db(e)),
        Err(BlockingError::Compare(e @ CompareError::LeaseLost)) => {
            return Err(Stop::Defer(RunState::Failed, e.to_string()));
        }
    };
    let (applied, query_errors) = confirm_by_orderquery(ctx, key, &done.compared.to_query, &*opts.progress).await;
    let k = key.to_owned();
    let findings = ctx.payments.db.read(move |c| reconciliation::count_findings(c, &k)).await.map_err(Stop::Db)?;
    let c = &done.compared;
    Ok(RunResult {
        bill_date: date,
        state: if bill.is_some() { RunState::Done } else { RunState::NoBill },
        figures: RunFigures {
            bill_rows: done.bill.rows,
            bill_paid_count: done.bill.paid_count,
            bill_paid_fen: done.bill.paid_fen,
            bill_refund_count: done.bill.refund_count,
            bill_refund_fen: done.bill.refund_fen,
            local_paid_count: c.local_paid_count,
            local_paid_fen: c.local_paid_fen,
            matched: c.matched,
            findings,
        },
        differences: done.seen,
        new_findings: done.new,
        applied,
        query_errors,
        bill_file: bill.map(|(path, _)| path),
        elapsed: Duration::ZERO,
    })
}

/// Asks WeChat about each payment it billed that we have not recorded; a confirmed payment is
/// applied by `refresh_from_wechat` through the shared transition (never by this module). Returns
/// (applied, failed calls). Calls run a few at a time, never inside a transaction.
async fn confirm_by_orderquery(
    ctx: &JobContext,
    key: &str,
    to_query: &[ToQuery],
    progress: &dyn Progress,
) -> (u64, u64) {
    if to_query.is_empty() {
        return (0, 0);
    }
    progress.begin(Phase::Queries, Some(to_query.len() as u64));
    let results: Vec<(String, Result<OrderState, AppError>)> = futures_util::stream::iter(to_query.iter().cloned())
        .map(|q| async move {
            let result = ctx.payments.refresh_from_wechat(&q.out_trade_no, true).await.map(|o| o.state);
            (q.out_trade_no, result)
        })
        .buffer_unordered(ctx.settings.concurrency.max(1))
        .collect()
        .await;
    progress.advance(to_query.len() as u64, to_query.len() as u64);
    progress.end();
    let (mut applied, mut failed) = (0, 0);
    let mut resolutions = Vec::new();
    for (no, result) in results {
        match result {
            Ok(OrderState::Paid) => {
                applied += 1;
                resolutions.push((no, APPLIED_VIA_ORDERQUERY.to_owned()));
            }
            // `state` is our order's state after the query, not WeChat's: WeChat may well say
            // SUCCESS (e.g. with another amount, which the transition refuses and raises as an
            // exception), so the note must not claim what WeChat said; the timeline has that.
            Ok(state) => resolutions.push((no, format!("orderquery: not applied; the order is still {state} here"))),
            Err(e) => {
                failed += 1;
                tracing::warn!(out_trade_no = no, error = %e, "orderquery during reconciliation failed");
            }
        }
    }
    let k = key.to_owned();
    let stored = ctx
        .payments
        .db
        .write(move |c| -> Result<(), DbError> {
            for (no, resolution) in &resolutions {
                reconciliation::set_resolution(c, &k, FindingKind::PaidNotLocal.code(), no, resolution)?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = stored {
        tracing::error!(bill_date = key, error = %e, "could not record orderquery resolutions");
    }
    (applied, failed)
}
