//! The daily reconciliation's schedule: every pass takes the dates that are due (yesterday after
//! `RECONCILE_AT`, and dates waiting for a retry) and reconciles each through the use case
//! (`payments::reconcile`); `wechat-checkout reconcile --date` runs one date now.

use chrono::NaiveDate;

use super::{JobContext, JobReport};
use crate::error::AppError;
use crate::payments::reconcile::{RunOptions, RunOutcome};

/// Reconciles every day that is due and not done yet: yesterday once `reconcile_at` (Beijing)
/// has passed, and dates waiting for a retry whose time has come.
pub async fn run_due(ctx: &JobContext) -> Result<JobReport, AppError> {
    let mut report = JobReport::default();
    let mut notes = Vec::new();
    for date in ctx.payments.due_reconciliations().await? {
        match ctx.payments.reconcile_date(date, RunOptions::due()).await {
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
                tracing::error!(bill_date = %date, error = %e, "reconciliation failed");
                notes.push(format!("{date}: {e}"));
            }
        }
    }
    report.note = notes.join("; ");
    Ok(report)
}

/// `wechat-checkout reconcile --date`: reconciles one day now, whatever its state.
pub async fn run_date_cli(ctx: &JobContext, date: NaiveDate) -> Result<JobReport, AppError> {
    let outcome = ctx.payments.reconcile_date(date, RunOptions::now()).await?;
    let (handled, failed) = match &outcome {
        RunOutcome::Finished(_) | RunOutcome::Waiting { .. } => (1, 0),
        RunOutcome::Failed { .. } => (0, 1),
        RunOutcome::NotClaimed { .. } => (0, 0),
    };
    Ok(JobReport { handled, failed, note: outcome.headline() })
}
