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
mod run;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::db::{DbError, reconciliation};
use crate::domain::Actor;
use crate::domain::reconciliation::{FindingRecord, ReconciliationRun, RunFigures, RunState};
use crate::error::AppError;
use crate::payments::Payments;
use crate::wxpay::time::beijing;

use self::progress::Progress;

/// How long to wait when WeChat says "Bill Creating".
pub(crate) const WAIT_FOR_BILL: chrono::Duration = chrono::Duration::minutes(30);
/// First retry delay after a failure; doubled per attempt up to [`RETRY_MAX`].
pub(crate) const RETRY_BASE: chrono::Duration = chrono::Duration::minutes(30);
pub(crate) const RETRY_MAX: chrono::Duration = chrono::Duration::hours(6);
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

impl Payments {
    /// Up to `limit` runs, newest date first, before the date `before` (`YYYY-MM-DD`).
    pub async fn reconciliation_runs(
        &self,
        before: Option<String>,
        limit: i64,
    ) -> Result<Vec<ReconciliationRun>, DbError> {
        self.db.read(move |c| reconciliation::list_runs(c, before.as_deref(), limit)).await
    }

    /// The run of `date`, if any, and up to `limit` of its findings after finding `after`.
    pub async fn reconciliation_of(
        &self,
        date: NaiveDate,
        after: Option<i64>,
        limit: i64,
    ) -> Result<(Option<ReconciliationRun>, Vec<FindingRecord>), DbError> {
        let key = date_key(date);
        self.db
            .read(move |c| {
                Ok((reconciliation::find_run(c, &key)?, reconciliation::findings_of(c, &key, after, limit)?))
            })
            .await
    }

    /// The dates due for a reconciliation now, oldest first: yesterday once `reconcile_at`
    /// (Beijing) has passed, and dates waiting for a retry whose time has come.
    pub async fn due_reconciliations(&self) -> Result<Vec<NaiveDate>, AppError> {
        let now = Utc::now();
        let local = now.with_timezone(&beijing());
        let today = local.date_naive();
        if local.time() >= self.config.jobs.reconcile_at
            && let Some(yesterday) = today.pred_opt()
        {
            let key = date_key(yesterday);
            self.db.write(move |c| reconciliation::ensure_run(c, &key)).await?;
        }
        let oldest = date_key(today - chrono::Duration::days(KEEP_DAYS));
        let keys = self.db.read(move |c| reconciliation::due_dates(c, now.naive_utc(), &oldest, DUE_PER_PASS)).await?;
        Ok(keys
            .into_iter()
            .filter_map(|key| match NaiveDate::parse_from_str(&key, "%Y-%m-%d") {
                Ok(date) => Some(date),
                Err(_) => {
                    tracing::error!(bill_date = key, "reconciliation run with an unreadable date");
                    None
                }
            })
            .collect())
    }
}
