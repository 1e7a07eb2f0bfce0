//! Typed configuration from `Rocket.toml` profiles and the environment, validated at start-up.
//! Secrets may come from `NAME_FILE` paths, are held in [`Secret`], and are never printed.
//!
//! `raw` reads the settings as given, `secret` holds secrets, and validation goes step by step:
//! the merchant credentials and simulator mode (`wechat`, the Mini Program in `mini_program`),
//! the URL rules (`urls`), the
//! checkout's own limits (here), the background jobs (`jobs`), the trusted proxies (`proxy`), the
//! hosts shoppers may be sent back to (`return_hosts`).

mod jobs;
mod mini_program;
mod operations;
mod proxy;
mod raw;
mod return_hosts;
mod secret;
mod urls;
mod v3;
mod wechat;

use std::time::Duration;

use rocket::figment::Figment;
use thiserror::Error;

pub use jobs::{JobsSettings, Retention};
pub use mini_program::MiniProgramSettings;
pub use operations::{AlertFormat, AlertSettings, OperationsSettings};
pub use proxy::ProxySettings;
pub use raw::{ENV_KEYS, RawSettings};
pub use return_hosts::ReturnUrlHosts;
pub use secret::{DatabaseUrl, Secret, write_private};
pub use urls::{
    MAX_WEBHOOK_URL_BYTES, RETURN_URL_PARAMS, return_url_problem, webhook_host_refusal, webhook_url_problem,
};
pub use v3::{ApiVersion, PlatformVerification, V3Settings, demo_serial};
pub use wechat::WechatSettings;

use crate::wxpay::Fen;

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

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub database_url: DatabaseUrl,
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
    /// Which peers may tell us the client's address, and in which header.
    pub proxy: ProxySettings,
    /// Metrics access and alerts.
    pub operations: OperationsSettings,
    /// The hosts an order's `return_url` may name (`RETURN_URL_HOSTS`; empty: any).
    pub return_url_hosts: ReturnUrlHosts,
}

impl AppConfig {
    /// Reads `Rocket.toml` (the active profile) and the environment, then validates. The
    /// environment wins over the file, and `NAME_FILE` wins over `NAME`.
    pub fn load(figment: &Figment) -> Result<AppConfig, ConfigError> {
        Self::from_figment(raw::with_environment(figment)?)
    }

    pub fn from_figment(figment: Figment) -> Result<AppConfig, ConfigError> {
        Self::validate(RawSettings::from_figment(figment)?)
    }

    /// Checks every setting and reports the first problem. The steps run in a fixed order, so
    /// a configuration with several problems always names the same one.
    pub fn validate(raw: RawSettings) -> Result<AppConfig, ConfigError> {
        let public_base_url = urls::validate_base("PUBLIC_BASE_URL", &raw.base_url())?;
        let simulator = wechat::simulator_mode(&raw, &public_base_url)?;
        let wechat = WechatSettings::from_raw(&raw, simulator, &public_base_url)?;
        check_checkout_limits(&raw)?;
        let jobs = JobsSettings::from_raw(&raw)?;
        let proxy = ProxySettings::from_raw(&raw)?;
        let operations = OperationsSettings::from_raw(&raw)?;
        let return_url_hosts = ReturnUrlHosts::from_raw(&raw)?;
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
            jobs,
            proxy,
            operations,
            return_url_hosts,
        })
    }

    /// Whether the public origin is https: cookies are then `Secure`.
    pub fn is_https(&self) -> bool {
        self.public_base_url.starts_with("https://")
    }

    /// Where WeChat sends payment notifies: v2 and v3 each have their own path.
    pub fn notify_url(&self) -> String {
        match self.wechat.api_version {
            ApiVersion::V2 => format!("{}/wechat/notify", self.public_base_url),
            ApiVersion::V3 => format!("{}/wechat/v3/notify", self.public_base_url),
        }
    }

    /// Where WeChat sends refund notifies.
    pub fn refund_notify_url(&self) -> String {
        match self.wechat.api_version {
            ApiVersion::V2 => format!("{}/wechat/refund-notify", self.public_base_url),
            ApiVersion::V3 => format!("{}/wechat/v3/refund-notify", self.public_base_url),
        }
    }

    pub fn oauth_callback_url(&self) -> String {
        format!("{}/pay/oauth/callback", self.public_base_url)
    }

    pub fn checkout_url(&self, out_trade_no: &str) -> String {
        format!("{}/pay/{out_trade_no}", self.public_base_url)
    }
}

/// The checkout's own settings: the merchant name shoppers see, order amounts and lifetimes, the
/// database, and the API token.
fn check_checkout_limits(raw: &RawSettings) -> Result<(), ConfigError> {
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
    if raw.database_url.expose().trim().is_empty() {
        return Err(invalid("DATABASE_URL", "must not be empty"));
    }
    if let Some(token) = &raw.api_token
        && token.expose().len() < 24
    {
        return Err(invalid("API_TOKEN", "must be at least 24 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
