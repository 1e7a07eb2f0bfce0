//! The alerts job: each pass records alerts for new money problems, claims the due ones the
//! hourly limit leaves room for, and posts them to `ALERT_WEBHOOK_URL` (see `payments::alerts`).
//! Every attempt is a log line (key, outcome, status, error) and is counted on its row; an alert
//! given up after the retry schedule is logged at error level. Nothing happens while
//! `ALERT_WEBHOOK_URL` is unset.

use futures_util::StreamExt;

use super::{JobContext, JobReport};
use crate::config::AlertSettings;
use crate::db::alerts::{Alert, AlertOutcome};
use crate::error::AppError;
use crate::payments::alerts::{self, send};

pub async fn run_once(ctx: &JobContext) -> Result<JobReport, AppError> {
    let Some(settings) = ctx.payments.config.operations.alerts.clone() else {
        return Ok(JobReport { note: "ALERT_WEBHOOK_URL is not set: alerts are off".into(), ..JobReport::default() });
    };
    let db = &ctx.payments.db;
    let recorded = alerts::gather(db, crate::db::now()).await?;
    let claimed = alerts::claim_due(db, ctx.owner(), settings.max_per_hour, crate::db::now()).await?;
    let results: Vec<bool> = futures_util::stream::iter(claimed)
        .map(|alert| attempt(ctx, &settings, alert))
        .buffer_unordered(ctx.settings.concurrency.max(1))
        .collect()
        .await;
    let failed = results.iter().filter(|sent| !**sent).count();
    let note = if recorded > 0 { format!("{recorded} new") } else { String::new() };
    Ok(JobReport { handled: results.len(), failed, note })
}

/// One attempt at one claimed alert; `true` when it was delivered.
async fn attempt(ctx: &JobContext, settings: &AlertSettings, alert: Alert) -> bool {
    let base_url = &ctx.payments.config.public_base_url;
    let delivery = send::post(settings, base_url, &alert).await;
    let outcome = alerts::outcome(alert.attempts, &delivery, crate::db::now());
    let (key, attempt, status) = (alert.alert_key.as_str(), alert.attempts + 1, delivery.status);
    let format = settings.format.as_str();
    match &outcome {
        AlertOutcome::Sent { .. } => tracing::info!(alert_key = key, attempt, status, format, "alert sent"),
        AlertOutcome::RetryAt { at, error } => {
            tracing::warn!(alert_key = key, attempt, status, format, error = %error, retry_at = %at, "alert attempt failed")
        }
        AlertOutcome::GaveUp { error } => tracing::error!(
            alert_key = key, attempt, status, format, error = %error, title = %alert.title,
            "alert given up after its last attempt: staff were not told"
        ),
    }
    let sent = delivery.delivered();
    match alerts::record(&ctx.payments.db, alert.id, ctx.owner(), outcome).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(alert_key = key, "alert lease lost during the attempt; its outcome was only logged")
        }
        // The lease runs out and the alert is attempted again: at least once, never lost.
        Err(e) => tracing::error!(alert_key = key, error = %e, "alert attempt could not be recorded"),
    }
    sent
}
