//! Typed configuration from `Rocket.toml` profiles and the environment, validated at start-up.
//! Secrets may come from `NAME_FILE` paths, are held in [`Secret`], and are never printed.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rocket::figment::Figment;
use rocket::figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::simulator;
use crate::wxpay::{ApiKey, Fen, SignType};

/// A value that must never reach a log line.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{var}: {problem}")]
    Invalid { var: &'static str, problem: String },
    #[error("{var} is required when SIMULATOR=off")]
    Missing { var: &'static str },
    #[error("configuration: {0}")]
    Figment(String),
}

fn invalid(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { var, problem: problem.into() }
}

/// The raw settings as read; every field is documented in README.md and `.env.example`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RawSettings {
    pub database_url: String,
    pub public_base_url: String,
    pub merchant_name: String,
    pub wechat_appid: Option<String>,
    pub wechat_app_secret: Option<Secret>,
    pub wechat_mch_id: Option<String>,
    pub wechat_api_key: Option<Secret>,
    pub wechat_sign_type: String,
    pub wechat_api_base: Option<String>,
    pub wechat_api_backup_base: Option<String>,
    pub wechat_open_base: Option<String>,
    pub wechat_sns_base: Option<String>,
    pub wechat_cert_pem: Option<PathBuf>,
    pub wechat_key_pem: Option<PathBuf>,
    pub wechat_cert_p12: Option<PathBuf>,
    pub simulator: Option<String>,
    pub api_token: Option<Secret>,
    pub max_order_fen: i64,
    pub default_expires_in_seconds: i64,
    pub db_pool_size: u32,
    pub admin_username: Option<String>,
    pub admin_password: Option<Secret>,
    pub jobs: Option<String>,
    pub poll_schedule: String,
    pub job_tick_ms: u64,
    pub job_concurrency: usize,
    pub reconcile_at: String,
    pub bill_dir: String,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<Secret>,
    pub webhook_schedule: String,
    pub instance_id: Option<String>,
}

impl Default for RawSettings {
    fn default() -> Self {
        RawSettings {
            database_url: "data/wechat-checkout.sqlite".into(),
            public_base_url: "http://127.0.0.1:8000".into(),
            merchant_name: "演示商户".into(),
            wechat_appid: None,
            wechat_app_secret: None,
            wechat_mch_id: None,
            wechat_api_key: None,
            wechat_sign_type: "MD5".into(),
            wechat_api_base: None,
            wechat_api_backup_base: None,
            wechat_open_base: None,
            wechat_sns_base: None,
            wechat_cert_pem: None,
            wechat_key_pem: None,
            wechat_cert_p12: None,
            simulator: None,
            api_token: None,
            max_order_fen: 10_000_000,
            default_expires_in_seconds: 2 * 3600,
            db_pool_size: 16,
            admin_username: None,
            admin_password: None,
            jobs: None,
            poll_schedule: "5s,30s,1m,3m,5m,10m,30m".into(),
            job_tick_ms: 1000,
            job_concurrency: 8,
            reconcile_at: "10:30".into(),
            bill_dir: "data/bills".into(),
            webhook_url: None,
            webhook_secret: None,
            webhook_schedule: "10s,30s,2m,10m,30m,1h,3h,6h,12h,24h".into(),
            instance_id: None,
        }
    }
}

/// Environment variables we read (upper case of the [`RawSettings`] fields).
pub const ENV_KEYS: &[&str] = &[
    "DATABASE_URL",
    "PUBLIC_BASE_URL",
    "MERCHANT_NAME",
    "WECHAT_APPID",
    "WECHAT_APP_SECRET",
    "WECHAT_MCH_ID",
    "WECHAT_API_KEY",
    "WECHAT_SIGN_TYPE",
    "WECHAT_API_BASE",
    "WECHAT_API_BACKUP_BASE",
    "WECHAT_OPEN_BASE",
    "WECHAT_SNS_BASE",
    "WECHAT_CERT_PEM",
    "WECHAT_KEY_PEM",
    "WECHAT_CERT_P12",
    "SIMULATOR",
    "API_TOKEN",
    "MAX_ORDER_FEN",
    "DEFAULT_EXPIRES_IN_SECONDS",
    "DB_POOL_SIZE",
    "ADMIN_USERNAME",
    "ADMIN_PASSWORD",
    "JOBS",
    "POLL_SCHEDULE",
    "JOB_TICK_MS",
    "JOB_CONCURRENCY",
    "RECONCILE_AT",
    "BILL_DIR",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "WEBHOOK_SCHEDULE",
    "INSTANCE_ID",
];

/// Secrets that may instead be read from a file named by `<NAME>_FILE`.
const FILE_SECRETS: &[&str] =
    &["WECHAT_APP_SECRET", "WECHAT_API_KEY", "API_TOKEN", "DATABASE_URL", "ADMIN_PASSWORD", "WEBHOOK_SECRET"];

/// Settings that are numbers; every other variable is text.
const NUMERIC_KEYS: &[&str] =
    &["MAX_ORDER_FEN", "DEFAULT_EXPIRES_IN_SECONDS", "DB_POOL_SIZE", "JOB_TICK_MS", "JOB_CONCURRENCY"];

/// Figment's `Env` reads values as TOML-like literals, so a numeric `WECHAT_MCH_ID` (every real
/// one is), an all-digit password or token would arrive as a number and fail to load as text.
/// Text settings are therefore merged again exactly as written.
fn text_verbatim(mut fig: Figment, lookup: impl Fn(&str) -> Option<String>) -> Figment {
    for name in ENV_KEYS.iter().filter(|k| !NUMERIC_KEYS.contains(k)) {
        if let Some(value) = lookup(name) {
            fig = fig.merge(Serialized::global(&name.to_ascii_lowercase(), value));
        }
    }
    fig
}

/// The merchant credentials in force, real or the simulator's.
#[derive(Debug, Clone)]
pub struct WechatSettings {
    pub appid: String,
    pub app_secret: Secret,
    pub mch_id: String,
    pub api_key: ApiKey,
    pub sign_type: SignType,
    pub api_base: String,
    pub api_backup_base: Option<String>,
    pub open_base: String,
    pub sns_base: String,
    pub cert_pem: Option<PathBuf>,
    pub key_pem: Option<PathBuf>,
    pub cert_p12: Option<PathBuf>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub database_url: String,
    /// Origin without trailing slash; notify_url, OAuth redirects and checkout links derive from it.
    pub public_base_url: String,
    pub merchant_name: String,
    pub wechat: WechatSettings,
    /// The simulator is mounted at `/simulator` and stands in for WeChat.
    pub simulator: bool,
    pub api_token: Option<Secret>,
    pub max_order: Fen,
    pub default_expires_in: Duration,
    pub db_pool_size: u32,
    /// The first admin account, created at first start when there are no accounts.
    pub admin_username: Option<String>,
    pub admin_password: Option<Secret>,
    pub jobs: JobsSettings,
}

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

impl AppConfig {
    /// Reads `Rocket.toml` (the active profile) and the environment, then validates. The
    /// environment wins over the file, and `NAME_FILE` wins over `NAME`.
    pub fn load(figment: &Figment) -> Result<AppConfig, ConfigError> {
        let fig = figment.clone().merge(Env::raw().only(ENV_KEYS).global());
        let mut fig = text_verbatim(fig, |name| std::env::var(name).ok());
        for name in FILE_SECRETS {
            if let Some(value) = read_secret_file(name)? {
                fig = fig.merge(Serialized::global(&name.to_ascii_lowercase(), value));
            }
        }
        Self::from_figment(fig)
    }

    pub fn from_figment(figment: Figment) -> Result<AppConfig, ConfigError> {
        let raw: RawSettings = figment
            .join(Serialized::defaults(RawSettings::default()))
            .extract()
            .map_err(|e| ConfigError::Figment(e.to_string()))?;
        Self::validate(raw)
    }

    pub fn validate(raw: RawSettings) -> Result<AppConfig, ConfigError> {
        let public_base_url = validate_base("PUBLIC_BASE_URL", &raw.public_base_url)?;
        let credentials_given = raw.wechat_appid.is_some()
            || raw.wechat_mch_id.is_some()
            || raw.wechat_api_key.is_some()
            || raw.wechat_app_secret.is_some();
        let simulator = match raw.simulator.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("auto") => !credentials_given,
            Some("on" | "true" | "1" | "yes") => true,
            Some("off" | "false" | "0" | "no") => false,
            Some(other) => return Err(invalid("SIMULATOR", format!("must be on or off, not {other:?}"))),
        };
        let sign_type = SignType::parse(&raw.wechat_sign_type)
            .ok_or_else(|| invalid("WECHAT_SIGN_TYPE", "must be MD5 or HMAC-SHA256"))?;
        let wechat = if simulator {
            let sim_base = format!("{public_base_url}/simulator");
            WechatSettings {
                appid: raw.wechat_appid.unwrap_or_else(|| simulator::DEMO_APPID.into()),
                app_secret: raw.wechat_app_secret.unwrap_or_else(|| Secret::new(simulator::DEMO_APP_SECRET)),
                mch_id: raw.wechat_mch_id.unwrap_or_else(|| simulator::DEMO_MCH_ID.into()),
                api_key: ApiKey::new(raw.wechat_api_key.as_ref().map_or(simulator::DEMO_API_KEY, Secret::expose))
                    .map_err(|e| invalid("WECHAT_API_KEY", e.to_string()))?,
                sign_type,
                api_base: raw.wechat_api_base.unwrap_or_else(|| sim_base.clone()),
                api_backup_base: raw.wechat_api_backup_base,
                open_base: raw.wechat_open_base.unwrap_or_else(|| sim_base.clone()),
                sns_base: raw.wechat_sns_base.unwrap_or(sim_base),
                cert_pem: raw.wechat_cert_pem,
                key_pem: raw.wechat_key_pem,
                cert_p12: raw.wechat_cert_p12,
            }
        } else {
            let appid = raw.wechat_appid.ok_or(ConfigError::Missing { var: "WECHAT_APPID" })?;
            if !appid.starts_with("wx") || appid.len() != 18 || !appid.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(invalid("WECHAT_APPID", "must look like wx followed by 16 letters or digits"));
            }
            let mch_id = raw.wechat_mch_id.ok_or(ConfigError::Missing { var: "WECHAT_MCH_ID" })?;
            if mch_id.is_empty() || mch_id.len() > 32 || !mch_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("WECHAT_MCH_ID", "must be the numeric merchant id"));
            }
            let app_secret = raw.wechat_app_secret.ok_or(ConfigError::Missing { var: "WECHAT_APP_SECRET" })?;
            if app_secret.expose().len() != 32 || !app_secret.expose().bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(invalid("WECHAT_APP_SECRET", "must be the 32-character Official Account AppSecret"));
            }
            let api_key = raw.wechat_api_key.ok_or(ConfigError::Missing { var: "WECHAT_API_KEY" })?;
            let api_key = ApiKey::new(api_key.expose()).map_err(|e| invalid("WECHAT_API_KEY", e.to_string()))?;
            if api_key.expose() == app_secret.expose() {
                return Err(invalid(
                    "WECHAT_API_KEY",
                    "is the AppSecret; the APIv2 key is a different 32-character key",
                ));
            }
            let (api_base, backup) = match raw.wechat_api_base {
                Some(base) => (base, raw.wechat_api_backup_base),
                None => (
                    crate::wxpay::client::PRODUCTION_BASE.to_owned(),
                    raw.wechat_api_backup_base.or_else(|| Some(crate::wxpay::client::BACKUP_BASE.to_owned())),
                ),
            };
            WechatSettings {
                appid,
                app_secret,
                mch_id,
                api_key,
                sign_type,
                api_base,
                api_backup_base: backup,
                open_base: raw.wechat_open_base.unwrap_or_else(|| crate::wxpay::oauth::PRODUCTION_OPEN_BASE.into()),
                sns_base: raw.wechat_sns_base.unwrap_or_else(|| crate::wxpay::oauth::PRODUCTION_SNS_BASE.into()),
                cert_pem: raw.wechat_cert_pem,
                key_pem: raw.wechat_key_pem,
                cert_p12: raw.wechat_cert_p12,
            }
        };
        let wechat = WechatSettings {
            api_base: validate_base("WECHAT_API_BASE", &wechat.api_base)?,
            open_base: validate_base("WECHAT_OPEN_BASE", &wechat.open_base)?,
            sns_base: validate_base("WECHAT_SNS_BASE", &wechat.sns_base)?,
            api_backup_base: match wechat.api_backup_base {
                Some(b) => Some(validate_base("WECHAT_API_BACKUP_BASE", &b)?),
                None => None,
            },
            ..wechat
        };
        if wechat.cert_pem.is_some() != wechat.key_pem.is_some() {
            return Err(invalid("WECHAT_CERT_PEM", "WECHAT_CERT_PEM and WECHAT_KEY_PEM go together"));
        }
        if raw.merchant_name.trim().is_empty() || raw.merchant_name.chars().count() > 32 {
            return Err(invalid("MERCHANT_NAME", "must be 1 to 32 characters"));
        }
        if raw.max_order_fen <= 0 {
            return Err(invalid("MAX_ORDER_FEN", "must be positive"));
        }
        // WeChat wants time_expire at least a minute ahead; a prepay lives 2 hours but an order may wait longer.
        if !(60..=7 * 24 * 3600).contains(&raw.default_expires_in_seconds) {
            return Err(invalid("DEFAULT_EXPIRES_IN_SECONDS", "must be between 60 and 604800"));
        }
        if raw.database_url.trim().is_empty() {
            return Err(invalid("DATABASE_URL", "must not be empty"));
        }
        if let Some(token) = &raw.api_token
            && token.expose().len() < 24
        {
            return Err(invalid("API_TOKEN", "must be at least 24 characters"));
        }
        Ok(AppConfig {
            database_url: raw.database_url,
            public_base_url,
            merchant_name: raw.merchant_name,
            wechat,
            simulator,
            api_token: raw.api_token,
            max_order: Fen::new(raw.max_order_fen),
            default_expires_in: Duration::from_secs(raw.default_expires_in_seconds as u64),
            db_pool_size: raw.db_pool_size.clamp(2, 256),
            admin_username: raw.admin_username,
            admin_password: raw.admin_password,
            jobs: JobsSettings {
                enabled: match raw.jobs.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("" | "on" | "true" | "1" | "yes") => true,
                    Some("off" | "false" | "0" | "no") => false,
                    Some(other) => return Err(invalid("JOBS", format!("must be on or off, not {other:?}"))),
                },
                poll_schedule: parse_schedule("POLL_SCHEDULE", &raw.poll_schedule)?,
                tick: Duration::from_millis(raw.job_tick_ms.clamp(10, 3_600_000)),
                concurrency: raw.job_concurrency.clamp(1, 64),
                reconcile_at: chrono::NaiveTime::parse_from_str(&raw.reconcile_at, "%H:%M")
                    .map_err(|_| invalid("RECONCILE_AT", "must be HH:MM (Beijing time), e.g. 10:30"))?,
                bill_dir: raw.bill_dir.into(),
                webhook_url: match raw.webhook_url.filter(|u| !u.is_empty()) {
                    Some(u) => match webhook_url_problem(&u) {
                        Some(problem) => return Err(invalid("WEBHOOK_URL", problem)),
                        None => Some(u),
                    },
                    None => None,
                },
                webhook_secret: raw.webhook_secret.filter(|s| !s.expose().is_empty()),
                webhook_schedule: parse_schedule("WEBHOOK_SCHEDULE", &raw.webhook_schedule)?,
                instance_id: raw.instance_id.filter(|i| !i.is_empty()).unwrap_or_else(|| {
                    format!("{}-{}", std::process::id(), crate::wxpay::nonce::random_alphanumeric(8))
                }),
            },
        })
    }

    pub fn notify_url(&self) -> String {
        format!("{}/wechat/notify", self.public_base_url)
    }

    pub fn oauth_callback_url(&self) -> String {
        format!("{}/pay/oauth/callback", self.public_base_url)
    }

    pub fn checkout_url(&self, out_trade_no: &str) -> String {
        format!("{}/pay/{out_trade_no}", self.public_base_url)
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

fn validate_base(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none() => {
            Ok(trimmed.to_owned())
        }
        _ => Err(invalid(var, format!("{value:?} is not an absolute http(s) URL without a query"))),
    }
}

/// The longest webhook URL, in bytes.
pub const MAX_WEBHOOK_URL_BYTES: usize = 512;

/// What is wrong with a webhook URL, the global `WEBHOOK_URL` or an order's own, if anything: it
/// must be absolute http(s) with a host, with no credentials or fragment, at most
/// [`MAX_WEBHOOK_URL_BYTES`].
pub fn webhook_url_problem(url: &str) -> Option<String> {
    if url.len() > MAX_WEBHOOK_URL_BYTES {
        return Some(format!("must be at most {MAX_WEBHOOK_URL_BYTES} bytes"));
    }
    // The URL is stored and sent exactly as given, so it must not rely on the parser's clean-up
    // of surrounding spaces or control characters.
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain spaces or control characters".into());
    }
    match url::Url::parse(url) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) => {
            Some("must be an absolute http:// or https:// URL".into())
        }
        // Credentials would be stored and shown in the console; the signature authenticates.
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            Some("must not contain a user name or password".into())
        }
        Ok(u) if u.fragment().is_some() => Some("must not contain a #fragment".into()),
        Ok(_) => None,
        Err(e) => Some(format!("must be an absolute http:// or https:// URL ({e})")),
    }
}

fn read_secret_file(name: &'static str) -> Result<Option<String>, ConfigError> {
    let var = format!("{name}_FILE");
    let Ok(path) = std::env::var(&var) else { return Ok(None) };
    let content = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::Invalid { var: name, problem: format!("cannot read {var}={path}: {e}") })?;
    Ok(Some(content.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_looking_text_settings_load_as_written() {
        let env = |name: &str| -> Option<String> {
            match name {
                "WECHAT_MCH_ID" => Some("10000100".into()),
                "ADMIN_PASSWORD" => Some("0123456789012".into()),
                "RECONCILE_AT" => Some("09:05".into()),
                "JOB_TICK_MS" => Some("250".into()),
                _ => None,
            }
        };
        let parsed = Figment::new().merge(Serialized::global("wechat_mch_id", 10000100)).merge(("job_tick_ms", 250));
        let raw: RawSettings =
            text_verbatim(parsed, env).join(Serialized::defaults(RawSettings::default())).extract().unwrap();
        assert_eq!(raw.wechat_mch_id.as_deref(), Some("10000100"));
        assert_eq!(raw.admin_password.map(|p| p.expose().to_owned()).as_deref(), Some("0123456789012"));
        assert_eq!(raw.reconcile_at, "09:05");
        assert_eq!(raw.job_tick_ms, 250);
    }

    fn real() -> RawSettings {
        RawSettings {
            simulator: Some("off".into()),
            wechat_appid: Some("wx2421b1c4370ec43b".into()),
            wechat_mch_id: Some("10000100".into()),
            wechat_api_key: Some(Secret::new("192006250b4c09247ec02edce69f6a2d")),
            wechat_app_secret: Some(Secret::new("0123456789abcdef0123456789abcdef")),
            ..RawSettings::default()
        }
    }

    fn problem(raw: RawSettings) -> String {
        AppConfig::validate(raw).unwrap_err().to_string()
    }

    #[test]
    fn no_credentials_means_simulator_mode() {
        let c = AppConfig::validate(RawSettings::default()).unwrap();
        assert!(c.simulator);
        assert_eq!(c.wechat.api_base, "http://127.0.0.1:8000/simulator");
        assert_eq!(c.notify_url(), "http://127.0.0.1:8000/wechat/notify");
    }

    #[test]
    fn real_credentials_use_production_hosts() {
        let c = AppConfig::validate(real()).unwrap();
        assert!(!c.simulator);
        assert_eq!(c.wechat.api_base, "https://api.mch.weixin.qq.com");
        assert_eq!(c.wechat.api_backup_base.as_deref(), Some("https://api2.mch.weixin.qq.com"));
        assert!(!format!("{c:?}").contains("192006250b4c09247ec02edce69f6a2d"), "secrets never print");
    }

    #[test]
    fn webhook_url_follows_the_same_rule_as_an_orders_own() {
        let with = |url: &str| RawSettings { webhook_url: Some(url.into()), ..RawSettings::default() };
        let c = AppConfig::validate(with("https://merchant.example/hooks?shop=7")).unwrap();
        assert_eq!(c.jobs.webhook_url.as_deref(), Some("https://merchant.example/hooks?shop=7"));
        for bad in ["merchant.example/hooks", "https://user:pw@merchant.example/h", "https://merchant.example/h#x"] {
            assert!(problem(with(bad)).contains("WEBHOOK_URL"), "{bad}");
        }
    }

    #[test]
    fn each_missing_or_malformed_credential_is_named() {
        for (var, mutate) in [
            ("WECHAT_APPID", (|r: &mut RawSettings| r.wechat_appid = None) as fn(&mut RawSettings)),
            ("WECHAT_MCH_ID", |r| r.wechat_mch_id = None),
            ("WECHAT_API_KEY", |r| r.wechat_api_key = None),
            ("WECHAT_APP_SECRET", |r| r.wechat_app_secret = None),
            ("WECHAT_APPID", |r| r.wechat_appid = Some("not-an-appid".into())),
            ("WECHAT_MCH_ID", |r| r.wechat_mch_id = Some("12ab".into())),
            ("WECHAT_API_KEY", |r| r.wechat_api_key = Some(Secret::new("short"))),
            ("WECHAT_API_KEY", |r| r.wechat_api_key = Some(Secret::new("0123456789abcdef0123456789abcdef"))),
            ("WECHAT_SIGN_TYPE", |r| r.wechat_sign_type = "SHA1".into()),
            ("PUBLIC_BASE_URL", |r| r.public_base_url = "example.com".into()),
            ("SIMULATOR", |r| r.simulator = Some("maybe".into())),
            ("MAX_ORDER_FEN", |r| r.max_order_fen = 0),
        ] {
            let mut raw = real();
            mutate(&mut raw);
            let msg = problem(raw);
            assert!(msg.starts_with(var), "{var}: {msg}");
        }
    }
}
