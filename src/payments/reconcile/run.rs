//! The work of one reconciliation run: claim the date (audited when staff asked), keep the lease
//! alive, download the bill, compare in the blocking pool, confirm what WeChat billed and we lack
//! by orderquery, and store the figures, or defer the date with a back-off.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use futures_util::StreamExt;
use serde_json::json;

use super::bill_side::{BillFigures, BillSide};
use super::compare::{self, CompareError, Compared, ToQuery, Window};
use super::findings::{FindingKind, FindingSink};
use super::progress::{Phase, Progress};
use super::{
    APPLIED_VIA_ORDERQUERY, RETRY_BASE, RETRY_MAX, RunOptions, RunOutcome, RunResult, WAIT_FOR_BILL, bill_path,
    date_key,
};
use crate::db::{Db, DbError, audit, reconciliation};
use crate::domain::reconciliation::{ReconciliationRun, RunFigures, RunState};
use crate::domain::{AuditAction, OrderState};
use crate::error::AppError;
use crate::payments::{LEASE, Payments};
use crate::wxpay::WxError;
use crate::wxpay::bill::BillError;
use crate::wxpay::download_bill::{BillDownload, DownloadBill};
use crate::wxpay::types::BillType;

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

impl Payments {
    /// Reconciles one Beijing date: claim, download, compare, confirm, store.
    pub async fn reconcile_date(&self, date: NaiveDate, opts: RunOptions) -> Result<RunOutcome, AppError> {
        let started = Instant::now();
        let key = date_key(date);
        let owner = self.config.jobs.instance_id.clone();
        let db = self.db.clone();

        let (k, o, actor, any_state) = (key.clone(), owner.clone(), opts.requested_by.clone(), opts.any_state);
        let claimed = db
            .write(move |c| -> Result<(bool, Option<ReconciliationRun>), DbError> {
                reconciliation::ensure_run(c, &k)?;
                let now = crate::db::now();
                let claimed = reconciliation::claim_run(c, &k, &o, now, now + LEASE, any_state)?;
                let run = reconciliation::find_run(c, &k)?;
                if let Some(actor) = actor {
                    let detail = json!({ "bill_date": k, "started": claimed });
                    let target = format!("reconciliation:{k}");
                    audit::record(c, &actor, AuditAction::ReconciliationRun, None, Some(&target), detail)?;
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

        let result = run_claimed(self, date, &key, &opts, &heartbeat.lost).await;
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
                count_run(state);
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
        count_run(state);
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
}

/// Counts a run that ended, by the state it left the date in (`done`, `no_bill`, `waiting`,
/// `failed`), for `/metrics`.
fn count_run(state: RunState) {
    let result = state.as_str().to_ascii_lowercase();
    metrics::counter!("wechat_checkout_reconciliation_runs_total", "result" => result).increment(1);
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
async fn download(p: &Payments, date: NaiveDate, progress: &dyn Progress) -> Result<Option<(PathBuf, bool)>, Stop> {
    let dir = p.config.jobs.bill_dir.clone();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| Stop::Defer(RunState::Failed, format!("cannot create {}: {e}", dir.display())))?;
    // Written under a temporary name and renamed when complete, so a failed download never
    // replaces the evidence of an earlier one.
    let part = dir.join(format!(".{}-all.{}.part", date.format("%Y%m%d"), file_safe(&p.config.jobs.instance_id)));
    let req = DownloadBill { bill_date: date, bill_type: BillType::All, gzip: true, device_info: None };
    progress.begin(Phase::Download, None);
    let downloaded = p.gateway.download_bill(&req, &part).await;
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
    p: &Payments,
    date: NaiveDate,
    key: &str,
    opts: &RunOptions,
    lease_lost: &Arc<AtomicBool>,
) -> Result<RunResult, Stop> {
    let bill = download(p, date, &*opts.progress).await?;
    let db = p.db.clone();
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
    let (applied, query_errors) = confirm_by_orderquery(p, key, &done.compared.to_query, &*opts.progress).await;
    let k = key.to_owned();
    let findings = p.db.read(move |c| reconciliation::count_findings(c, &k)).await.map_err(Stop::Db)?;
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
async fn confirm_by_orderquery(p: &Payments, key: &str, to_query: &[ToQuery], progress: &dyn Progress) -> (u64, u64) {
    if to_query.is_empty() {
        return (0, 0);
    }
    progress.begin(Phase::Queries, Some(to_query.len() as u64));
    let results: Vec<(String, Result<OrderState, AppError>)> = futures_util::stream::iter(to_query.iter().cloned())
        .map(|q| async move {
            let result = p.refresh_from_wechat(&q.out_trade_no, true).await.map(|r| r.order.state);
            (q.out_trade_no, result)
        })
        .buffer_unordered(p.config.jobs.concurrency.max(1))
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
    let stored =
        p.db.write(move |c| -> Result<(), DbError> {
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
