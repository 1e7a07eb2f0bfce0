//! Placeholder until written: the daily reconciliation against the T+1 bill.

pub mod bill_side;

use super::{JobContext, JobReport};
use crate::error::AppError;

/// Reconciles every day that is due and not done yet.
pub async fn run_due(_ctx: &JobContext) -> Result<JobReport, AppError> {
    Ok(JobReport::default())
}

/// `wechat-checkout reconcile --date`: reconciles one day now, whatever its state.
pub async fn run_date_cli(_ctx: &JobContext, _date: chrono::NaiveDate) -> Result<JobReport, AppError> {
    Ok(JobReport::default())
}
