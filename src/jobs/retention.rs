//! Retention: once an hour ([`EVERY`]) one instance deletes what is past its window
//! (`RETENTION_*`, see `config::Retention`): refused notify deliveries, used OAuth states,
//! staff sign-in attempts, the attempts of webhook deliveries that are over, the merchant API's
//! idempotency keys after their 24 hours, and, only when
//! configured, verified notifies and the audit log (both kept for good by default). Orders,
//! refunds, their timelines, exceptions, webhook events and reconciliation runs are never purged.
//!
//! The job takes the `job_runs` row named `retention` with a lease, as other jobs take rows: a
//! scheduled pass only when the last one finished [`EVERY`] ago, `wechat-checkout jobs
//! retention` at once (unless another instance is in the middle of a pass). Rows go in chunks
//! of [`CHUNK`], each in its own short write transaction that also renews the lease, so a first
//! pass over a big table never holds SQLite's write lock for long, and stops when the lease is
//! lost.

use std::time::Duration;

use chrono::NaiveDateTime;

use super::{JobContext, JobReport, LEASE};
use crate::config::Retention;
use crate::db::{self, AnyConnection, DbResult, idempotency, job_runs, retention};
use crate::error::AppError;

/// How often a scheduled pass runs, across all instances.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Rows deleted per statement.
pub const CHUNK: i64 = 1000;
const NAME: &str = "retention";

type Purge = fn(&mut AnyConnection, NaiveDateTime, i64) -> DbResult<usize>;
type Window = fn(&Retention) -> Option<Duration>;

/// What is purged: its name in logs, its window, and the chunked delete.
const KINDS: [(&str, Window, Purge); 7] = [
    ("refused notifies", |r| r.refused_notifies, retention::purge_refused_notifies),
    ("oauth states", |r| r.oauth_states, retention::purge_oauth_states),
    ("sign-in attempts", |r| r.signin_attempts, retention::purge_signin_attempts),
    ("webhook attempts", |r| r.webhook_attempts, retention::purge_webhook_attempts),
    ("verified notifies", |r| r.verified_notifies, retention::purge_verified_notifies),
    ("audit entries", |r| r.audit, retention::purge_audit),
    // A key's stored answer is promised for 24 hours, not configurable.
    ("idempotency keys", |_| Some(idempotency::KEY_LIFETIME), idempotency::purge),
];

/// The scheduled pass: runs when the last pass (of any instance) finished [`EVERY`] ago.
pub async fn run_due(ctx: &JobContext) -> Result<JobReport, AppError> {
    run(ctx, true).await
}

/// `wechat-checkout jobs retention`: a pass now, unless another instance is running one.
pub async fn run_now(ctx: &JobContext) -> Result<JobReport, AppError> {
    run(ctx, false).await
}

fn owner(ctx: &JobContext) -> String {
    format!("{}/{NAME}", ctx.owner())
}

async fn run(ctx: &JobContext, only_when_due: bool) -> Result<JobReport, AppError> {
    let me = owner(ctx);
    let o = me.clone();
    let claimed = ctx
        .payments
        .db
        .write(move |c| {
            let now = db::now();
            let due_before = only_when_due.then(|| now - chrono::Duration::from_std(EVERY).unwrap_or(LEASE));
            job_runs::claim(c, NAME, &o, now, now + LEASE, due_before)
        })
        .await?;
    if !claimed {
        let note = if only_when_due { "" } else { "another instance is running a pass" };
        return Ok(JobReport { note: note.into(), ..JobReport::default() });
    }
    let now = db::now();
    let mut report = JobReport::default();
    let mut notes = Vec::new();
    for (what, window, purge) in KINDS {
        let Some(keep) = window(&ctx.settings.retention) else { continue };
        let cutoff =
            now - chrono::Duration::from_std(keep).map_err(|e| AppError::invalid("retention", e.to_string()))?;
        let Some(deleted) = purge_all(ctx, &me, cutoff, purge).await? else {
            tracing::warn!(job = NAME, "retention: the lease was lost; another instance goes on");
            return Ok(report);
        };
        tracing::info!(job = NAME, what, deleted, older_than = %cutoff, "retention: purged");
        report.handled += deleted;
        notes.push(format!("{what} {deleted}"));
    }
    let o = me.clone();
    ctx.payments.db.write(move |c| job_runs::finish(c, NAME, &o, db::now())).await?;
    report.note = format!("deleted: {}", notes.join(", "));
    Ok(report)
}

/// Deletes every row `purge` finds before `cutoff`, a chunk per transaction, each renewing the
/// lease; `None` when the lease was lost.
async fn purge_all(ctx: &JobContext, me: &str, cutoff: NaiveDateTime, purge: Purge) -> Result<Option<usize>, AppError> {
    let mut total = 0;
    loop {
        let o = me.to_owned();
        let chunk = ctx
            .payments
            .db
            .write(move |c| -> DbResult<Option<usize>> {
                if !job_runs::renew(c, NAME, &o, db::now() + LEASE)? {
                    return Ok(None);
                }
                purge(c, cutoff, CHUNK).map(Some)
            })
            .await?;
        let Some(n) = chunk else { return Ok(None) };
        total += n;
        if (n as i64) < CHUNK {
            return Ok(Some(total));
        }
    }
}
