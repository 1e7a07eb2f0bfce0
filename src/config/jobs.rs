//! The background jobs' settings (see `jobs/`): whether they run, their schedules and limits,
//! where bills are kept, where webhooks go, and how long the retention job keeps what.

use std::time::Duration;

use super::urls::{webhook_host_refusal, webhook_url_problem};
use super::{ConfigError, RawSettings, Secret, invalid};
use crate::domain::address::AddressPolicy;

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
    /// Which addresses webhooks may go to: public ones, and internal networks too with
    /// `WEBHOOK_ALLOW_PRIVATE=on`.
    pub webhook_addresses: AddressPolicy,
    pub webhook_secret: Option<Secret>,
    /// Delays between webhook delivery attempts.
    pub webhook_schedule: Vec<Duration>,
    /// Names this instance in row leases.
    pub instance_id: String,
    /// How long the retention job keeps each kind of row.
    pub retention: Retention,
}

/// How long rows are kept before the retention job deletes them; `None` keeps them for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Refused (unverified) notify deliveries.
    pub refused_notifies: Option<Duration>,
    /// Used OAuth `state` nonces (a state itself is good for minutes).
    pub oauth_states: Option<Duration>,
    /// Staff sign-in attempts.
    pub signin_attempts: Option<Duration>,
    /// Attempts of webhook deliveries that are over (delivered or failed).
    pub webhook_attempts: Option<Duration>,
    /// Verified notify deliveries: evidence of payments, kept for good by default.
    pub verified_notifies: Option<Duration>,
    /// The audit log of staff actions, kept for good by default.
    pub audit: Option<Duration>,
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

impl Retention {
    /// Each window from its variable: `0` (or `forever`) keeps for good; otherwise a humantime
    /// duration like `30d`, at least the shortest window that rows of its kind are still needed
    /// for (an OAuth state must outlive its 10 minutes, or a replay would pass once purged) and
    /// at most 100 years.
    fn from_raw(raw: &RawSettings) -> Result<Retention, ConfigError> {
        Ok(Retention {
            refused_notifies: window("RETENTION_REFUSED_NOTIFIES", &raw.retention_refused_notifies, DAY)?,
            oauth_states: window("RETENTION_OAUTH_STATES", &raw.retention_oauth_states, HOUR)?,
            signin_attempts: window("RETENTION_SIGNIN_ATTEMPTS", &raw.retention_signin_attempts, DAY)?,
            webhook_attempts: window("RETENTION_WEBHOOK_ATTEMPTS", &raw.retention_webhook_attempts, DAY)?,
            verified_notifies: window("RETENTION_VERIFIED_NOTIFIES", &raw.retention_verified_notifies, 365 * DAY)?,
            audit: window("RETENTION_AUDIT", &raw.retention_audit, 365 * DAY)?,
        })
    }
}

fn window(var: &'static str, value: &str, min: Duration) -> Result<Option<Duration>, ConfigError> {
    let value = value.trim();
    if matches!(value.to_ascii_lowercase().as_str(), "0" | "forever") {
        return Ok(None);
    }
    let shortest = humantime::format_duration(min);
    match humantime::parse_duration(value) {
        Ok(d) if d >= min && d <= 36_500 * DAY => Ok(Some(d)),
        Ok(_) => Err(invalid(var, format!("{value:?} is outside {shortest} to 100 years (0 keeps for good)"))),
        Err(_) => Err(invalid(var, format!("{value:?} is not a duration like 30d, or 0 to keep for good"))),
    }
}

impl JobsSettings {
    /// The jobs' settings, checked in the order of their fields; out-of-range numbers are
    /// clamped rather than refused.
    pub(super) fn from_raw(raw: &RawSettings) -> Result<JobsSettings, ConfigError> {
        let webhook_addresses = AddressPolicy { allow_private: allow_private(raw.webhook_allow_private.as_deref())? };
        Ok(JobsSettings {
            enabled: jobs_enabled(raw.jobs.as_deref())?,
            poll_schedule: parse_schedule("POLL_SCHEDULE", &raw.poll_schedule)?,
            tick: Duration::from_millis(raw.job_tick_ms.clamp(10, 3_600_000)),
            concurrency: raw.job_concurrency.clamp(1, 64),
            reconcile_at: chrono::NaiveTime::parse_from_str(&raw.reconcile_at, "%H:%M")
                .map_err(|_| invalid("RECONCILE_AT", "must be HH:MM (Beijing time), e.g. 10:30"))?,
            bill_dir: raw.bill_dir.clone().into(),
            webhook_url: global_webhook_url(raw.webhook_url.as_deref(), webhook_addresses)?,
            webhook_addresses,
            webhook_secret: raw.webhook_secret.clone().filter(|s| !s.expose().is_empty()),
            webhook_schedule: parse_schedule("WEBHOOK_SCHEDULE", &raw.webhook_schedule)?,
            instance_id: raw
                .instance_id
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| format!("{}-{}", std::process::id(), crate::wxpay::nonce::random_alphanumeric(8))),
            retention: Retention::from_raw(raw)?,
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

/// `WEBHOOK_ALLOW_PRIVATE`: off unless switched on.
fn allow_private(value: Option<&str>) -> Result<bool, ConfigError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "off" | "false" | "0" | "no") => Ok(false),
        Some("on" | "true" | "1" | "yes") => Ok(true),
        Some(other) => Err(invalid("WEBHOOK_ALLOW_PRIVATE", format!("must be on or off, not {other:?}"))),
    }
}

/// `WEBHOOK_URL`, where empty means none, under the same rule as an order's own webhook URL. Its
/// host is judged as written (an IP literal, `localhost`): a name is not looked up at start-up,
/// and delivery checks every address it resolves to anyway.
fn global_webhook_url(value: Option<&str>, addresses: AddressPolicy) -> Result<Option<String>, ConfigError> {
    let Some(url) = value.filter(|u| !u.is_empty()) else { return Ok(None) };
    if let Some(problem) = webhook_url_problem(url) {
        return Err(invalid("WEBHOOK_URL", problem));
    }
    if let Some(refusal) = webhook_host_refusal(url, addresses) {
        let hint = if refusal.class.is_internal_network() {
            " (WEBHOOK_ALLOW_PRIVATE=on allows private ones, for local testing)"
        } else {
            ""
        };
        return Err(invalid("WEBHOOK_URL", format!("{refusal}: webhooks go only to public addresses{hint}")));
    }
    Ok(Some(url.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::super::AppConfig;
    use super::*;

    fn with(url: &str, allow: Option<&str>) -> Result<AppConfig, ConfigError> {
        AppConfig::validate(RawSettings {
            webhook_url: Some(url.into()),
            webhook_allow_private: allow.map(str::to_owned),
            ..RawSettings::default()
        })
    }

    #[test]
    fn a_global_webhook_url_to_an_internal_address_is_refused_at_start_up() {
        for url in [
            "http://127.0.0.1:9000/hooks",
            "http://2130706433/hooks",
            "http://10.0.0.7/hooks",
            "https://[::ffff:192.168.0.1]/hooks",
            "http://localhost:3000/hooks",
            "http://[fd00::1]/hooks",
        ] {
            let e = with(url, None).unwrap_err().to_string();
            assert!(e.starts_with("WEBHOOK_URL: ") && e.contains("WEBHOOK_ALLOW_PRIVATE=on"), "{url}: {e}");
            let c = with(url, Some("on")).unwrap_or_else(|e| panic!("{url} with WEBHOOK_ALLOW_PRIVATE=on: {e}"));
            assert_eq!(c.jobs.webhook_url.as_deref(), Some(url));
            assert!(c.jobs.webhook_addresses.allow_private);
        }
        let e = with("http://10.0.0.7/hooks", None).unwrap_err().to_string();
        assert!(e.contains("address 10.0.0.7 is private"), "{e}");
        // The metadata service stays refused; a name is not looked up at start-up.
        let e = with("http://169.254.169.254/latest", Some("on")).unwrap_err().to_string();
        assert_eq!(
            e,
            "WEBHOOK_URL: address 169.254.169.254 is a cloud metadata service: webhooks go only to public addresses"
        );
        assert!(with("http://metadata.google.internal/", Some("on")).is_err());
        let c = with("https://hooks.merchant.example/wechat", None).unwrap();
        assert!(!c.jobs.webhook_addresses.allow_private, "off by default");
    }

    #[test]
    fn webhook_allow_private_reads_like_the_other_switches() {
        for (value, expected) in
            [("on", true), ("TRUE", true), ("1", true), ("off", false), ("false", false), ("0", false), ("", false)]
        {
            assert_eq!(allow_private(Some(value)).unwrap(), expected, "{value}");
        }
        assert!(!allow_private(None).unwrap());
        let e = with("https://hooks.merchant.example/", Some("maybe")).unwrap_err().to_string();
        assert!(e.starts_with("WEBHOOK_ALLOW_PRIVATE"), "{e}");
    }

    fn with_retention(var: &str, value: &str) -> RawSettings {
        let mut raw = RawSettings::default();
        let field = match var {
            "refused" => &mut raw.retention_refused_notifies,
            "oauth" => &mut raw.retention_oauth_states,
            "verified" => &mut raw.retention_verified_notifies,
            _ => &mut raw.retention_audit,
        };
        *field = value.into();
        raw
    }

    #[test]
    fn retention_defaults_keep_evidence_for_good() {
        let r = Retention::from_raw(&RawSettings::default()).unwrap();
        assert_eq!(r.refused_notifies, Some(30 * DAY));
        assert_eq!(r.oauth_states, Some(DAY));
        assert_eq!((r.signin_attempts, r.webhook_attempts), (Some(90 * DAY), Some(90 * DAY)));
        assert_eq!((r.verified_notifies, r.audit), (None, None));
    }

    #[test]
    fn retention_windows_are_checked() {
        let r = Retention::from_raw(&with_retention("refused", "7d")).unwrap();
        assert_eq!(r.refused_notifies, Some(7 * DAY));
        assert_eq!(
            Retention::from_raw(&with_retention("verified", "6years"))
                .unwrap()
                .verified_notifies
                .map(|d| d > 5 * 365 * DAY),
            Some(true)
        );
        assert_eq!(Retention::from_raw(&with_retention("refused", "forever")).unwrap().refused_notifies, None);
        for (var, value, named) in [
            ("refused", "soon", "RETENTION_REFUSED_NOTIFIES"),
            ("refused", "1h", "RETENTION_REFUSED_NOTIFIES"),
            ("oauth", "5m", "RETENTION_OAUTH_STATES"),
            ("verified", "30d", "RETENTION_VERIFIED_NOTIFIES"),
            ("audit", "-1d", "RETENTION_AUDIT"),
            ("audit", "1000years", "RETENTION_AUDIT"),
        ] {
            let e = Retention::from_raw(&with_retention(var, value)).unwrap_err().to_string();
            assert!(e.starts_with(named), "{value}: {e}");
        }
    }
}
