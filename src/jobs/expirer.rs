//! The expirer: an order still payable (CREATED, PAYING, PAYERROR) past its `expires_at` is
//! settled for good. One that reached WeChat is first queried (a payment made at the last second
//! takes the paid path, through the shared transition), then closed with `closeorder` through
//! `close_order`, which turns ORDERPAID into the paid path and ORDERNOTEXIST into a local close.
//! One that never reached WeChat closes locally.
//!
//! WeChat refuses `closeorder` in the first 5 minutes after `unifiedorder`
//! ([`CLOSE_MIN_AGE`]); such orders are not even picked until they are old enough, so no pass
//! wastes a query on them. Orders are leased one by one like the poller's (under this job's own
//! lease name). A close that fails (WeChat unreachable, SYSTEMERROR) keeps its lease for
//! [`RETRY_AFTER`], which is the back-off: no other pass on any instance retries it sooner.

use super::{JobContext, JobReport, LEASE, each_due};
use crate::db::{self, orders};
use crate::domain::OrderState;
use crate::domain::order::CLOSE_MIN_AGE;
use crate::error::AppError;
use crate::payments::close::CloseOutcome;

/// Orders taken per pass; the rest wait for the next tick.
pub const BATCH: i64 = 100;
/// How long an order whose query or close failed is left alone.
pub const RETRY_AFTER: chrono::Duration = chrono::Duration::minutes(1);

enum Expired {
    Skipped,
    /// Settled by this pass; the order is now in this state (PAID or CLOSED).
    Settled(OrderState),
    /// Still open (logged); retried after [`RETRY_AFTER`].
    Failed,
}

/// One pass: settle every expired payable order (up to [`BATCH`]).
pub async fn run_once(ctx: &JobContext) -> Result<JobReport, AppError> {
    let now = db::now();
    let closable_before = now - CLOSE_MIN_AGE;
    let due = ctx.payments.db.read(move |c| orders::list_expired(c, now, closable_before, BATCH)).await?;
    if due.is_empty() {
        return Ok(JobReport::default());
    }
    let results = each_due(ctx, "expire", due, |no| async move { try_expire_one(ctx, &no).await }).await;
    let (mut report, mut paid, mut closed) = (JobReport::default(), 0, 0);
    for r in results {
        match r.unwrap_or(Expired::Failed) {
            Expired::Skipped => {}
            Expired::Settled(state) => {
                report.handled += 1;
                match state {
                    OrderState::Paid => paid += 1,
                    _ => closed += 1,
                }
            }
            Expired::Failed => report.failed += 1,
        }
    }
    if report.handled > 0 {
        report.note = format!("{closed} closed, {paid} found paid");
    }
    Ok(report)
}

fn owner(ctx: &JobContext) -> String {
    format!("{}/expire", ctx.owner())
}

async fn try_expire_one(ctx: &JobContext, no: &str) -> Result<Expired, AppError> {
    let payments = &ctx.payments;
    let me = owner(ctx);
    let (n, o) = (no.to_owned(), me.clone());
    let claimed = payments
        .db
        .write(move |c| {
            let now = db::now();
            orders::claim_for_expiry(c, &n, &o, now, now - CLOSE_MIN_AGE, now + LEASE)
        })
        .await?;
    if !claimed {
        return Ok(Expired::Skipped);
    }
    let order = payments.load(no).await?;
    if !order.state.is_payable() {
        release(ctx, no, &me).await?;
        return Ok(Expired::Skipped);
    }

    // Query before closing (WeChat's own advice): a payment that landed at the last second is
    // recorded as paid, not closed over.
    if order.prepay_id.is_some() {
        match payments.refresh_from_wechat(no, true).await {
            Ok(refreshed) if !refreshed.order.state.is_payable() => {
                let order = refreshed.order;
                tracing::info!(out_trade_no = %no, state = %order.state, "expirer: order settled by query");
                release(ctx, no, &me).await?;
                return Ok(Expired::Settled(order.state));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(out_trade_no = %no, error = %e.staff_message(), "expirer: orderquery failed; retrying later");
                hold(ctx, no, &me).await?;
                return Ok(Expired::Failed);
            }
        }
    }

    let outcome = match payments.close_order(no, None).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(out_trade_no = %no, error = %e.staff_message(), "expirer: close failed; retrying later");
            hold(ctx, no, &me).await?;
            return Ok(Expired::Failed);
        }
    };
    let result = match outcome {
        CloseOutcome::Closed { order, at_wechat } => {
            tracing::info!(out_trade_no = %no, at_wechat, "expirer: expired order closed");
            Expired::Settled(order.state)
        }
        CloseOutcome::AlreadyClosed(order) | CloseOutcome::Paid(order) => {
            tracing::info!(out_trade_no = %no, state = %order.state, "expirer: order already settled");
            Expired::Settled(order.state)
        }
        CloseOutcome::TooEarly { wait, .. } => {
            // Only when our clock moved between the pick and the check; a later pass takes it.
            tracing::debug!(out_trade_no = %no, wait_s = wait.num_seconds(), "expirer: too early to close");
            Expired::Skipped
        }
        CloseOutcome::Failed { why, .. } => {
            tracing::warn!(out_trade_no = %no, ?why, "expirer: closeorder failed; retrying later");
            hold(ctx, no, &me).await?;
            return Ok(Expired::Failed);
        }
    };
    release(ctx, no, &me).await?;
    Ok(result)
}

async fn release(ctx: &JobContext, no: &str, owner: &str) -> Result<(), AppError> {
    let (n, o) = (no.to_owned(), owner.to_owned());
    ctx.payments.db.write(move |c| orders::release_lease(c, &n, &o)).await?;
    Ok(())
}

/// Keeps the lease for [`RETRY_AFTER`]: the back-off after a failure.
async fn hold(ctx: &JobContext, no: &str, owner: &str) -> Result<(), AppError> {
    let (n, o) = (no.to_owned(), owner.to_owned());
    ctx.payments.db.write(move |c| orders::hold_lease(c, &n, &o, db::now() + RETRY_AFTER)).await?;
    Ok(())
}
