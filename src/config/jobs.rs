//! The background jobs' settings (see `jobs/`): whether they run, their schedules and limits,
//! where bills are kept and where webhooks go.

use std::time::Duration;

use super::urls::webhook_url_problem;
use super::{ConfigError, RawSettings, Secret, invalid};

/// Settings of the background jobs (see `jobs/`).
#[derive(Debug, Clone)]
pub struct JobsSettings {
    /// Whether `serve` runs the jobs (each instance may; leases share the work out).
    pub enabled: bool,
    /// When PAYING orders are queried, counted from their prepay.
    pub poll_schedule: Vec<Duration>,
    /// How often each job looks for due work.
    pub tick: Duration,
    /// WeChat calls in flight at once per job.
    pub concurrency: usize,
    /// Beijing wall-clock time after which yesterday's bill is reconciled.
    pub reconcile_at: chrono::NaiveTime,
    /// Where downloaded bills are kept (they are evidence).
    pub bill_dir: std::path::PathBuf,
    /// Where paid/refunded events go when an order names no URL of its own.
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<Secret>,
    /// Delays between webhook delivery attempts.
    pub webhook_schedule: Vec<Duration>,
    /// Names this instance in row leases.
    pub instance_id: String,
}

impl JobsSettings {
    /// The jobs' settings, checked in the order of their fields; out-of-range numbers are
    /// clamped rather than refused.
    pub(super) fn from_raw(raw: &RawSettings) -> Result<JobsSettings, ConfigError> {
        Ok(JobsSettings {
            enabled: jobs_enabled(raw.jobs.as_deref())?,
            poll_schedule: parse_schedule("POLL_SCHEDULE", &raw.poll_schedule)?,
            tick: Duration::from_millis(raw.job_tick_ms.clamp(10, 3_600_000)),
            concurrency: raw.job_concurrency.clamp(1, 64),
            reconcile_at: chrono::NaiveTime::parse_from_str(&raw.reconcile_at, "%H:%M")
                .map_err(|_| invalid("RECONCILE_AT", "must be HH:MM (Beijing time), e.g. 10:30"))?,
            bill_dir: raw.bill_dir.clone().into(),
            webhook_url: global_webhook_url(raw.webhook_url.as_deref())?,
            webhook_secret: raw.webhook_secret.clone().filter(|s| !s.expose().is_empty()),
            webhook_schedule: parse_schedule("WEBHOOK_SCHEDULE", &raw.webhook_schedule)?,
            instance_id: raw
                .instance_id
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| format!("{}-{}", std::process::id(), crate::wxpay::nonce::random_alphanumeric(8))),
        })
    }
}

/// `JOBS`: on unless switched off.
fn jobs_enabled(value: Option<&str>) -> Result<bool, ConfigError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "on" | "true" | "1" | "yes") => Ok(true),
        Some("off" | "false" | "0" | "no") => Ok(false),
        Some(other) => Err(invalid("JOBS", format!("must be on or off, not {other:?}"))),
    }
}

/// `WEBHOOK_URL`, where empty means none, under the same rule as an order's own webhook URL.
fn global_webhook_url(value: Option<&str>) -> Result<Option<String>, ConfigError> {
    match value.filter(|u| !u.is_empty()) {
        Some(u) => match webhook_url_problem(u) {
            Some(problem) => Err(invalid("WEBHOOK_URL", problem)),
            None => Ok(Some(u.to_owned())),
        },
        None => Ok(None),
    }
}

/// `5s,30s,1m` → durations (each 1 ms to 7 days).
fn parse_schedule(var: &'static str, value: &str) -> Result<Vec<Duration>, ConfigError> {
    let steps: Result<Vec<Duration>, _> = value.split(',').map(|s| humantime::parse_duration(s.trim())).collect();
    match steps {
        Ok(v)
            if !v.is_empty()
                && v.iter().all(|d| *d >= Duration::from_millis(1) && *d <= Duration::from_secs(7 * 86400)) =>
        {
            Ok(v)
        }
        _ => Err(invalid(var, format!("{value:?} is not a list like 5s,30s,1m"))),
    }
}
