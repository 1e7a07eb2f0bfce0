//! Background jobs that settle payments by themselves: the poller (orderquery on a schedule), the
//! expirer (query, then closeorder), refund sync (refundquery), the daily reconciler (the T+1
//! bill), merchant webhooks, and hourly retention (purging what is past its window). They start
//! with the server, stop cleanly on shutdown, and each can be run once from the command line
//! (`wechat-checkout jobs <name>`).
//!
//! Several instances may run them against one PostgreSQL database. Work is shared out with row
//! leases: a job claims a row with one guarded UPDATE (`SET lease_owner = me, lease_until =
//! now + lease WHERE key = ? AND (lease_until IS NULL OR lease_until < now)`); one row changed
//! means this instance owns the row until the lease ends, zero means another one does. We chose
//! leases over `FOR UPDATE SKIP LOCKED` or advisory locks because they work the same on SQLite
//! and PostgreSQL through Diesel's MultiConnection, hold no transaction open while WeChat is
//! called over the network, and survive a crashed instance (its leases simply run out).

pub mod alerts;
pub mod expirer;
pub mod poller;
pub mod reconcile;
pub mod refund_sync;
pub mod retention;
pub mod signature;
pub mod webhooks;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::JobsSettings;
use crate::error::AppError;
use crate::payments::Payments;

pub use crate::payments::LEASE;

/// What every job needs.
#[derive(Clone)]
pub struct JobContext {
    pub payments: Payments,
    pub settings: Arc<JobsSettings>,
}

impl JobContext {
    pub fn new(payments: Payments) -> JobContext {
        let settings = Arc::new(payments.config.jobs.clone());
        JobContext { payments, settings }
    }

    /// This instance's name in leases.
    pub fn owner(&self) -> &str {
        &self.settings.instance_id
    }
}

/// What one run of a job did, for logs and the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobReport {
    /// Rows worked on (claimed and handled).
    pub handled: usize,
    /// Rows whose handling failed (they are retried later; each failure is logged).
    pub failed: usize,
    pub note: String,
}

impl std::fmt::Display for JobReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "handled {}, failed {}", self.handled, self.failed)?;
        if !self.note.is_empty() {
            write!(f, "; {}", self.note)?;
        }
        Ok(())
    }
}

/// Handles the claimed-one-by-one rows of a pass, at most `JOB_CONCURRENCY` at once. A database
/// error on one row is logged and yields `None`; the row's lease (if taken) runs out by itself and
/// the row is picked up again then, so one bad row never stops the others.
pub(crate) async fn each_due<T, F, Fut>(
    ctx: &JobContext,
    job: &'static str,
    due: Vec<String>,
    handle: F,
) -> Vec<Option<T>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, AppError>>,
{
    futures_util::stream::iter(due)
        .map(|key| {
            let work = handle(key.clone());
            async move {
                work.await.map_err(|e| tracing::error!(job, key = %key, error = %e, "job: database error")).ok()
            }
        })
        .buffer_unordered(ctx.settings.concurrency.max(1))
        .collect()
        .await
}

/// The jobs by name, as the command line and the scheduler know them.
pub const NAMES: &[&str] = &["poll", "expire", "refund-sync", "reconcile", "webhooks", "retention", "alerts"];

/// Runs one pass of the named job.
pub async fn run_once(ctx: &JobContext, name: &str) -> Result<JobReport, AppError> {
    match name {
        "poll" => poller::run_once(ctx).await,
        "expire" => expirer::run_once(ctx).await,
        "refund-sync" => refund_sync::run_once(ctx).await,
        "reconcile" => reconcile::run_due(ctx).await,
        "webhooks" => webhooks::run_once(ctx).await,
        "retention" => retention::run_now(ctx).await,
        "alerts" => alerts::run_once(ctx).await,
        other => Err(AppError::invalid("job", format!("unknown job {other:?}; jobs: {}", NAMES.join(", ")))),
    }
}

/// One scheduled pass: as [`run_once`], except that retention runs only when it is due.
async fn scheduled_pass(ctx: &JobContext, name: &str) -> Result<JobReport, AppError> {
    match name {
        "retention" => retention::run_due(ctx).await,
        _ => run_once(ctx, name).await,
    }
}

/// How long one pass of a job may take before `/readyz` calls it stuck. A pass is bounded by its
/// leases (60 s, each WeChat call with its retries) and its batch; the reconciler of a large day
/// and retention's purge of a long backlog work longer, but not for an hour.
fn stuck_after(name: &str) -> Duration {
    match name {
        "reconcile" | "retention" => Duration::from_secs(3600),
        _ => Duration::from_secs(600),
    }
}

/// Logs a pass that did something or failed, and counts every pass in the metrics.
fn record_pass(job: &'static str, result: &Result<JobReport, AppError>, took: Duration) {
    let outcome = match result {
        Ok(report) if report.failed > 0 => "partial",
        Ok(_) => "ok",
        Err(_) => "error",
    };
    match result {
        Ok(report) if report.handled + report.failed > 0 => tracing::info!(job, %report, "job pass"),
        Ok(_) => {}
        Err(e) => tracing::error!(job, error = %e, "job pass failed"),
    }
    metrics::counter!("wechat_checkout_job_passes_total", "job" => job, "result" => outcome).increment(1);
    metrics::histogram!("wechat_checkout_job_pass_duration_seconds", "job" => job).record(took.as_secs_f64());
    if let Ok(report) = result {
        let rows = [("handled", report.handled), ("failed", report.failed)];
        for (outcome, count) in rows.into_iter().filter(|(_, n)| *n > 0) {
            metrics::counter!("wechat_checkout_job_rows_total", "job" => job, "outcome" => outcome)
                .increment(count as u64);
        }
    }
}

/// The running jobs of this process.
pub struct JobsHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts every job in its own task: each runs a pass, then sleeps a tick, until stopped.
pub fn start(ctx: JobContext) -> JobsHandle {
    let (stop, stopped) = watch::channel(false);
    let tasks = NAMES
        .iter()
        .map(|name| {
            let (ctx, mut stopped) = (ctx.clone(), stopped.clone());
            // The reconciler has work once a day and retention once an hour; checking each
            // minute is plenty.
            let tick = match *name {
                "reconcile" | "retention" => ctx.settings.tick.max(Duration::from_secs(60)),
                _ => ctx.settings.tick,
            };
            let heartbeat = ctx.payments.liveness.register(format!("job:{name}"), stuck_after(name));
            tokio::spawn(async move {
                loop {
                    let busy = heartbeat.busy();
                    let started = std::time::Instant::now();
                    let result = scheduled_pass(&ctx, name).await;
                    drop(busy);
                    record_pass(name, &result, started.elapsed());
                    tokio::select! {
                        _ = stopped.changed() => break,
                        _ = tokio::time::sleep(tick) => {}
                    }
                    if *stopped.borrow() {
                        break;
                    }
                }
            })
        })
        .collect();
    JobsHandle { stop, tasks }
}

impl JobsHandle {
    /// Asks every job to stop after its current pass and waits for them (at most `grace`).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("jobs did not stop within {grace:?}; abandoning them (their leases will expire)");
        }
    }
}

/// The jobs of a running server, kept in Rocket state so shutdown can stop them.
#[derive(Default)]
pub struct RunningJobs(pub Mutex<Option<JobsHandle>>);
