//! The poller: PAYING orders are asked about (`orderquery`) on a schedule counted from their
//! prepay (`poll_schedule`, by default 5s, 30s, 1m, 3m, 5m, 10m, 30m), because WeChat's notify may
//! never come. Answers go through `refresh_from_wechat`, the same transition as a notify.
//!
//! Each pass takes up to [`BATCH`] due orders, leases them one by one (`orders::claim_for_query`)
//! and queries at most `concurrency` at once. `query_attempts` counts the queries made; the next
//! one is the first schedule step after now that has not been used yet, so a poller that was
//! down does not fire a burst of catch-up queries. When the schedule is exhausted,
//! `next_query_at` becomes NULL and the expirer takes the order over at its expiry.
//!
//! When WeChat cannot be reached the attempt is not counted and the order is retried after a
//! back-off that doubles with every failure: the wait is how late the order already is against
//! the schedule step that fell due (at least one tick, at most [`MAX_BACKOFF`]). That needs no
//! failure counter in the database: the lateness is the counter.

use std::time::Duration as StdDuration;

use chrono::{Duration, NaiveDateTime};

use super::{JobContext, JobReport, LEASE, each_due};
use crate::db::{self, orders};
use crate::domain::OrderState;
use crate::error::AppError;

/// Orders taken per pass; the rest wait for the next tick.
pub const BATCH: i64 = 100;
/// The longest wait before an order that failed to be queried is tried again.
pub const MAX_BACKOFF: Duration = Duration::minutes(5);

/// What became of one candidate.
enum Polled {
    /// Another instance (or a payment) got there first.
    Skipped,
    /// Queried; the order is now in this state.
    Queried(OrderState),
    /// The query (or, counted here too, its bookkeeping) failed; logged and retried later.
    Failed,
}

/// One pass: query every due PAYING order (up to [`BATCH`]).
pub async fn run_once(ctx: &JobContext) -> Result<JobReport, AppError> {
    let now = db::now();
    let due = ctx.payments.db.read(move |c| orders::list_due_for_query(c, now, BATCH)).await?;
    if due.is_empty() {
        return Ok(JobReport::default());
    }
    let results = each_due(ctx, "poll", due, |no| async move { try_poll_one(ctx, &no).await }).await;
    let mut report = JobReport::default();
    let mut paid = 0;
    for r in results {
        match r.unwrap_or(Polled::Failed) {
            Polled::Skipped => {}
            Polled::Queried(state) => {
                report.handled += 1;
                if state == OrderState::Paid {
                    paid += 1;
                }
            }
            Polled::Failed => report.failed += 1,
        }
    }
    if paid > 0 {
        report.note = format!("{paid} found paid");
    }
    Ok(report)
}

/// The lease name of this job on this instance: the expirer leases the same rows under its own
/// name, so neither can release the other's lease.
fn owner(ctx: &JobContext) -> String {
    format!("{}/poll", ctx.owner())
}

async fn try_poll_one(ctx: &JobContext, no: &str) -> Result<Polled, AppError> {
    let db = &ctx.payments.db;
    let me = owner(ctx);
    let (n, o) = (no.to_owned(), me.clone());
    let claimed = db
        .write(move |c| {
            let now = db::now();
            orders::claim_for_query(c, &n, &o, now, now + LEASE)
        })
        .await?;
    if !claimed {
        return Ok(Polled::Skipped);
    }
    let n = no.to_owned();
    let plan = db.read(move |c| orders::query_schedule(c, &n)).await?;
    let Some((plan, due)) = plan.and_then(|p| p.next_query_at.map(|due| (p, due))) else {
        // Changed between the claim and the read (a payment cleared the schedule): nothing to do.
        release(ctx, no, &me).await?;
        return Ok(Polled::Skipped);
    };

    let result = ctx.payments.refresh_from_wechat(no, true).await.map(|r| r.order);
    let now = db::now();
    let schedule = &ctx.settings.poll_schedule;
    let (polled, next) = match result {
        Ok(order) if order.state == OrderState::Paying => {
            let attempts = plan.query_attempts.saturating_add(1);
            let next = plan.prepay_created_at.and_then(|p| next_step(p, schedule, attempts, now));
            tracing::debug!(out_trade_no = %no, attempts, ?next, "poller: still paying");
            (Polled::Queried(OrderState::Paying), Some((attempts, next)))
        }
        Ok(order) => {
            tracing::info!(out_trade_no = %no, state = %order.state, "poller: order settled by query");
            (Polled::Queried(order.state), None)
        }
        Err(e) => {
            let wait = error_backoff(plan.prepay_created_at, schedule, plan.query_attempts, now, ctx.settings.tick);
            tracing::warn!(
                out_trade_no = %no,
                error = %e,
                retry_in_ms = wait.num_milliseconds(),
                "poller: orderquery failed; retrying after a back-off"
            );
            (Polled::Failed, Some((plan.query_attempts, Some(now + wait))))
        }
    };
    let (n, o) = (no.to_owned(), me);
    db.write(move |c| {
        let rescheduled = match next {
            Some((attempts, next)) => orders::reschedule_query(c, &n, &o, due, attempts, next)?,
            None => false,
        };
        if !rescheduled {
            orders::release_lease(c, &n, &o)?;
        }
        Ok::<_, AppError>(())
    })
    .await?;
    Ok(polled)
}

async fn release(ctx: &JobContext, no: &str, owner: &str) -> Result<(), AppError> {
    let (n, o) = (no.to_owned(), owner.to_owned());
    ctx.payments.db.write(move |c| orders::release_lease(c, &n, &o)).await?;
    Ok(())
}

fn step(d: StdDuration) -> Duration {
    // Schedule steps are validated to at most 7 days, so this never saturates in practice.
    Duration::from_std(d).unwrap_or(Duration::days(7))
}

/// The next query time: the first schedule step not used yet (index `attempts` or later) that
/// is still ahead of `now`. Steps already passed are merged into the query just made. `None`
/// when the schedule is exhausted.
pub fn next_step(
    prepay_created_at: NaiveDateTime,
    schedule: &[StdDuration],
    attempts: i32,
    now: NaiveDateTime,
) -> Option<NaiveDateTime> {
    let from = usize::try_from(attempts).unwrap_or(0);
    schedule.iter().skip(from).map(|d| prepay_created_at + step(*d)).find(|t| *t > now)
}

/// How long to wait after a failed query: as long as the order is already late against the
/// latest schedule step that fell due, within one tick and [`MAX_BACKOFF`]. Each failure thus
/// roughly doubles the wait (tick, tick, 2 ticks, 4 ticks…).
pub fn error_backoff(
    prepay_created_at: Option<NaiveDateTime>,
    schedule: &[StdDuration],
    attempts: i32,
    now: NaiveDateTime,
    tick: StdDuration,
) -> Duration {
    let tick = step(tick);
    let from = usize::try_from(attempts).unwrap_or(0);
    let fell_due =
        prepay_created_at.and_then(|p| schedule.iter().skip(from).map(|d| p + step(*d)).filter(|t| *t <= now).max());
    let late = fell_due.map_or(tick, |t| now - t);
    late.clamp(tick, MAX_BACKOFF.max(tick))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap().naive_utc()
    }

    fn schedule() -> Vec<StdDuration> {
        [5, 30, 60, 180].map(StdDuration::from_secs).to_vec()
    }

    #[test]
    fn next_step_follows_the_schedule_from_the_prepay() {
        assert_eq!(next_step(at(0), &schedule(), 0, at(1)), Some(at(5)));
        assert_eq!(next_step(at(0), &schedule(), 1, at(5)), Some(at(30)));
        assert_eq!(next_step(at(0), &schedule(), 3, at(61)), Some(at(180)));
        assert_eq!(next_step(at(0), &schedule(), 4, at(181)), None, "exhausted");
    }

    #[test]
    fn missed_steps_are_merged_not_replayed() {
        // The poller was down until 100 s: the 30 s and 60 s steps are not queried in a burst.
        assert_eq!(next_step(at(0), &schedule(), 1, at(100)), Some(at(180)));
        assert_eq!(next_step(at(0), &schedule(), 1, at(200)), None);
    }

    #[test]
    fn error_backoff_doubles_and_is_bounded() {
        let tick = StdDuration::from_secs(1);
        let s = schedule();
        // First failure right at the 5 s step: one tick.
        assert_eq!(error_backoff(Some(at(0)), &s, 0, at(5), tick), Duration::seconds(1));
        // Then the wait grows with the lateness: 1, 2, 4…
        assert_eq!(error_backoff(Some(at(0)), &s, 0, at(7), tick), Duration::seconds(2));
        assert_eq!(error_backoff(Some(at(0)), &s, 0, at(9), tick), Duration::seconds(4));
        // Bounded by MAX_BACKOFF.
        assert_eq!(error_backoff(Some(at(0)), &s, 3, at(5000), tick), MAX_BACKOFF);
        // No prepay time: one tick.
        assert_eq!(error_backoff(None, &s, 0, at(5), tick), Duration::seconds(1));
    }
}
