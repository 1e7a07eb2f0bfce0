//! The settings as read, before validation: `Rocket.toml`'s active profile, then the
//! environment, then `NAME_FILE` secrets, each overriding the one before.

use std::path::PathBuf;

use rocket::figment::Figment;
use rocket::figment::providers::{Env, Serialized};
use serde::{Deserialize, Serialize};

use super::secret::{FILE_SECRETS, read_secret_file};
use super::{ConfigError, DatabaseUrl, Secret};

/// The raw settings as read; every field is documented in README.md and `.env.example`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RawSettings {
    pub database_url: DatabaseUrl,
    /// Rocket's own listen address (`ROCKET_ADDRESS`); read here only to decide whether the
    /// simulator may switch on by itself.
    pub address: Option<String>,
    /// Rocket's own port (`ROCKET_PORT`); the demo's links follow it when `PUBLIC_BASE_URL` is
    /// not given.
    pub port: Option<u16>,
    /// `None` when not given: then `http://127.0.0.1:<port>` (see [`RawSettings::base_url`]).
    pub public_base_url: Option<String>,
    pub merchant_name: String,
    pub wechat_appid: Option<String>,
    pub wechat_app_secret: Option<Secret>,
    pub wechat_mch_id: Option<String>,
    pub wechat_api_key: Option<Secret>,
    pub wechat_sign_type: String,
    pub wechat_miniprogram_appid: Option<String>,
    pub wechat_miniprogram_secret: Option<Secret>,
    pub wechat_api_base: Option<String>,
    pub wechat_api_backup_base: Option<String>,
    pub wechat_open_base: Option<String>,
    pub wechat_sns_base: Option<String>,
    pub wechat_cert_pem: Option<PathBuf>,
    pub wechat_key_pem: Option<PathBuf>,
    pub wechat_cert_p12: Option<PathBuf>,
    pub wechat_api_version: String,
    pub wechat_apiv3_key: Option<Secret>,
    pub wechat_mch_private_key: Option<Secret>,
    pub wechat_mch_serial_no: Option<String>,
    pub wechat_platform_public_key: Option<Secret>,
    pub wechat_platform_public_key_id: Option<String>,
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
    pub webhook_allow_private: Option<String>,
    pub instance_id: Option<String>,
    pub trusted_proxy: Option<String>,
    pub client_ip_header: String,
    pub return_url_hosts: Option<String>,
    pub retention_refused_notifies: String,
    pub retention_oauth_states: String,
    pub retention_signin_attempts: String,
    pub retention_webhook_attempts: String,
    pub retention_verified_notifies: String,
    pub retention_audit: String,
    pub metrics_token: Option<Secret>,
    pub alert_webhook_url: Option<Secret>,
    pub alert_format: String,
    pub alert_max_per_hour: u32,
}

impl Default for RawSettings {
    fn default() -> Self {
        RawSettings {
            database_url: DatabaseUrl::new("data/wechat-checkout.sqlite"),
            address: None,
            port: None,
            public_base_url: None,
            merchant_name: "演示商户".into(),
            wechat_appid: None,
            wechat_app_secret: None,
            wechat_mch_id: None,
            wechat_api_key: None,
            wechat_sign_type: "MD5".into(),
            wechat_miniprogram_appid: None,
            wechat_miniprogram_secret: None,
            wechat_api_base: None,
            wechat_api_backup_base: None,
            wechat_open_base: None,
            wechat_sns_base: None,
            wechat_cert_pem: None,
            wechat_key_pem: None,
            wechat_cert_p12: None,
            wechat_api_version: "v2".into(),
            wechat_apiv3_key: None,
            wechat_mch_private_key: None,
            wechat_mch_serial_no: None,
            wechat_platform_public_key: None,
            wechat_platform_public_key_id: None,
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
            webhook_allow_private: None,
            instance_id: None,
            trusted_proxy: None,
            client_ip_header: "X-Real-IP".into(),
            return_url_hosts: None,
            retention_refused_notifies: "30d".into(),
            retention_oauth_states: "1d".into(),
            retention_signin_attempts: "90d".into(),
            retention_webhook_attempts: "90d".into(),
            retention_verified_notifies: "0".into(),
            retention_audit: "0".into(),
            metrics_token: None,
            alert_webhook_url: None,
            alert_format: "auto".into(),
            alert_max_per_hour: 30,
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
    "WECHAT_MINIPROGRAM_APPID",
    "WECHAT_MINIPROGRAM_SECRET",
    "WECHAT_API_BASE",
    "WECHAT_API_BACKUP_BASE",
    "WECHAT_OPEN_BASE",
    "WECHAT_SNS_BASE",
    "WECHAT_CERT_PEM",
    "WECHAT_KEY_PEM",
    "WECHAT_CERT_P12",
    "WECHAT_API_VERSION",
    "WECHAT_APIV3_KEY",
    "WECHAT_MCH_PRIVATE_KEY",
    "WECHAT_MCH_SERIAL_NO",
    "WECHAT_PLATFORM_PUBLIC_KEY",
    "WECHAT_PLATFORM_PUBLIC_KEY_ID",
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
    "WEBHOOK_ALLOW_PRIVATE",
    "INSTANCE_ID",
    "TRUSTED_PROXY",
    "CLIENT_IP_HEADER",
    "RETURN_URL_HOSTS",
    "RETENTION_REFUSED_NOTIFIES",
    "RETENTION_OAUTH_STATES",
    "RETENTION_SIGNIN_ATTEMPTS",
    "RETENTION_WEBHOOK_ATTEMPTS",
    "RETENTION_VERIFIED_NOTIFIES",
    "RETENTION_AUDIT",
    "METRICS_TOKEN",
    "ALERT_WEBHOOK_URL",
    "ALERT_FORMAT",
    "ALERT_MAX_PER_HOUR",
];

/// Settings that are numbers; every other variable is text.
const NUMERIC_KEYS: &[&str] = &[
    "MAX_ORDER_FEN",
    "DEFAULT_EXPIRES_IN_SECONDS",
    "DB_POOL_SIZE",
    "JOB_TICK_MS",
    "JOB_CONCURRENCY",
    "ALERT_MAX_PER_HOUR",
];

/// `figment` (the `Rocket.toml` profile) with the environment and the `NAME_FILE` secrets merged
/// over it: the environment wins over the file, and `NAME_FILE` wins over `NAME`.
pub(super) fn with_environment(figment: &Figment) -> Result<Figment, ConfigError> {
    let fig = figment.clone().merge(Env::raw().only(ENV_KEYS).global());
    let mut fig = text_verbatim(fig, |name| std::env::var(name).ok());
    for name in FILE_SECRETS {
        if let Some(value) = read_secret_file(name)? {
            fig = fig.merge(Serialized::global(&name.to_ascii_lowercase(), value));
        }
    }
    Ok(fig)
}

impl RawSettings {
    /// `PUBLIC_BASE_URL` as given, or the loopback origin on the port the server listens on, so
    /// `ROCKET_PORT=9000 cargo run` gives a demo whose links and redirects use port 9000.
    pub fn base_url(&self) -> String {
        match &self.public_base_url {
            Some(given) => given.clone(),
            None => format!("http://127.0.0.1:{}", self.port.unwrap_or(8000)),
        }
    }

    /// The settings `figment` holds, with the defaults for every one it does not.
    pub(super) fn from_figment(figment: Figment) -> Result<RawSettings, ConfigError> {
        figment
            .join(Serialized::defaults(RawSettings::default()))
            .extract()
            .map_err(|e| ConfigError::Figment(e.to_string()))
    }
}

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
}
