//! Refund sync: refunds WeChat accepted (PROCESSING) are asked about with `refundquery` until they
//! settle, because the refund notify may never come. The answer goes through
//! `apply_refund_outcome`, like a notify: SUCCESS counts the money as refunded, CHANGE (the money
//! went back to the merchant, e.g. a cancelled card) raises an exception for staff, REFUNDCLOSE
//! releases the reservation.
//!
//! A refund is first checked [`FIRST_CHECK_AFTER`] after it was accepted, then after each check
//! that finds it still open it waits longer ([`BACKOFF`]: 30s, 1m, 5m, 30m, 1h, then every 6h),
//! since a refund to a bank card can take days. PENDING refunds whose send failed or went silent
//! (what `refund.rs` considers stale) are queried too: WeChat may have accepted them, and the
//! query then moves them to PROCESSING. They are never sent again here: re-sending moves money
//! and stays a staff decision (the order page's retry, with the same `out_refund_no`).
//!
//! Refunds are leased one by one like orders (see `jobs/`). A failed query (WeChat unreachable)
//! is retried after [`RETRY_AFTER_ERROR`] without counting as a check.
//!
//! [`FIRST_CHECK_AFTER`]: crate::payments::refund::FIRST_CHECK_AFTER

use chrono::Duration;

use super::{JobContext, JobReport, LEASE, each_due};
use crate::db::{self, refunds};
use crate::domain::refund::SEND_STALE_AFTER;
use crate::error::AppError;

/// Refunds taken per pass; the rest wait for the next tick.
pub const BATCH: i64 = 100;
/// Waits after the 1st, 2nd… check that found a refund still open; the last one repeats.
pub const BACKOFF: [Duration; 6] = [
    Duration::seconds(30),
    Duration::minutes(1),
    Duration::minutes(5),
    Duration::minutes(30),
    Duration::hours(1),
    Duration::hours(6),
];
/// The wait after a query that failed.
pub const RETRY_AFTER_ERROR: Duration = Duration::minutes(1);

enum Synced {
    Skipped,
    Checked,
    Failed,
}

/// One pass: check every due unsettled refund (up to [`BATCH`]).
pub async fn run_once(ctx: &JobContext) -> Result<JobReport, AppError> {
    let now = db::now();
    let stale_before = now - SEND_STALE_AFTER;
    let due = ctx.payments.db.read(move |c| refunds::list_due_for_check(c, now, stale_before, BATCH)).await?;
    if due.is_empty() {
        return Ok(JobReport::default());
    }
    let results = each_due(ctx, "refund-sync", due, |no| async move { try_sync_one(ctx, &no).await }).await;
    let mut report = JobReport::default();
    for r in results {
        match r.unwrap_or(Synced::Failed) {
            Synced::Skipped => {}
            Synced::Checked => report.handled += 1,
            Synced::Failed => report.failed += 1,
        }
    }
    Ok(report)
}

/// The wait after the `attempts`-th check found the refund still open.
pub fn backoff(attempts: i32) -> Duration {
    let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(0);
    BACKOFF[i.min(BACKOFF.len() - 1)]
}

fn owner(ctx: &JobContext) -> String {
    format!("{}/refund-sync", ctx.owner())
}

async fn try_sync_one(ctx: &JobContext, no: &str) -> Result<Synced, AppError> {
    let db = &ctx.payments.db;
    let me = owner(ctx);
    let (n, o) = (no.to_owned(), me.clone());
    let claimed = db
        .write(move |c| {
            let now = db::now();
            refunds::claim_for_check(c, &n, &o, now, now - SEND_STALE_AFTER, now + LEASE)
        })
        .await?;
    if !claimed {
        return Ok(Synced::Skipped);
    }
    let n = no.to_owned();
    let found = db
        .read(move |c| -> Result<_, AppError> {
            let refund = refunds::find(c, &n)?;
            let attempts = refunds::check_attempts(c, &n)?;
            Ok(refund.zip(attempts))
        })
        .await?;
    let Some((refund, attempts)) = found else {
        release(ctx, no, &me).await?;
        return Ok(Synced::Skipped);
    };

    let (synced, attempts, wait) = match ctx.payments.sync_refund(&refund).await {
        Ok(result) => {
            tracing::info!(out_refund_no = %no, out_trade_no = %refund.out_trade_no, ?result, "refund sync: checked");
            let attempts = attempts.saturating_add(1);
            (Synced::Checked, attempts, backoff(attempts))
        }
        Err(e) => {
            tracing::warn!(
                out_refund_no = %no,
                out_trade_no = %refund.out_trade_no,
                error = %e.staff_message(),
                "refund sync: refundquery failed; retrying later"
            );
            (Synced::Failed, attempts, RETRY_AFTER_ERROR)
        }
    };
    // Only while the refund is still in the state we checked: a settled refund (or one just
    // accepted, with its own first check) keeps what its outcome wrote.
    let (n, o, state) = (no.to_owned(), me, refund.state);
    db.write(move |c| {
        if !refunds::reschedule_check(c, &n, &o, state, attempts, db::now() + wait)? {
            refunds::release_lease(c, &n, &o)?;
        }
        Ok::<_, AppError>(())
    })
    .await?;
    Ok(synced)
}

async fn release(ctx: &JobContext, no: &str, owner: &str) -> Result<(), AppError> {
    let (n, o) = (no.to_owned(), owner.to_owned());
    ctx.payments.db.write(move |c| refunds::release_lease(c, &n, &o)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_back_off_and_settle_on_the_longest_wait() {
        assert_eq!(backoff(1), Duration::seconds(30));
        assert_eq!(backoff(2), Duration::minutes(1));
        assert_eq!(backoff(6), Duration::hours(6));
        assert_eq!(backoff(60), Duration::hours(6));
        assert_eq!(backoff(0), Duration::seconds(30));
    }
}
