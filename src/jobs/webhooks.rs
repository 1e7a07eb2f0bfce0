//! Placeholder until written.

use super::{JobContext, JobReport};
use crate::error::AppError;

pub async fn run_once(_ctx: &JobContext) -> Result<JobReport, AppError> {
    Ok(JobReport::default())
}
