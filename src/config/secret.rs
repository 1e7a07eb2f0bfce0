//! Secrets: the [`Secret`] wrapper that never prints its value, and the `NAME_FILE` variables
//! that let a secret come from a file (a mounted container secret) instead of the environment.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ConfigError;

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

/// The database URL: printed without its password (`postgres://user:***@host/db`), since a
/// PostgreSQL URL usually carries one.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(s: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(s.into())
    }

    /// The URL as given, password included, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for messages and logs.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            // A SQLite path, or a URL without a password. A string the parser refuses but that
            // holds `user:pass@` is cut at the `@` rather than risk printing the password.
            Ok(_) => self.0.clone(),
            Err(_) => match self.0.rsplit_once('@') {
                Some((_, host)) => format!("***@{host}"),
                None => self.0.clone(),
            },
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

/// Writes a file only its owner can read (a generated key or secret kept in `data/`).
pub fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(content.as_bytes())
}

/// Secrets that may instead be read from a file named by `<NAME>_FILE`.
pub(super) const FILE_SECRETS: &[&str] = &[
    "WECHAT_APP_SECRET",
    "WECHAT_API_KEY",
    "WECHAT_MINIPROGRAM_SECRET",
    "WECHAT_APIV3_KEY",
    "WECHAT_MCH_PRIVATE_KEY",
    // Not secret, but a file WeChat gives the merchant (`pub_key.pem`), so read the same way.
    "WECHAT_PLATFORM_PUBLIC_KEY",
    "API_TOKEN",
    "DATABASE_URL",
    "ADMIN_PASSWORD",
    "WEBHOOK_SECRET",
    "METRICS_TOKEN",
    "ALERT_WEBHOOK_URL",
];

/// The content of the file `<name>_FILE` names, trimmed, if that variable is set.
pub(super) fn read_secret_file(name: &'static str) -> Result<Option<String>, ConfigError> {
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
    fn database_passwords_never_print() {
        let url = DatabaseUrl::new("postgres://shop:s3cret-pw@db.internal:5432/pay");
        assert_eq!(url.redacted(), "postgres://shop:***@db.internal:5432/pay");
        assert!(!format!("{url:?}").contains("s3cret-pw"));
        assert_eq!(url.expose(), "postgres://shop:s3cret-pw@db.internal:5432/pay");
        assert_eq!(DatabaseUrl::new("data/shop.sqlite").redacted(), "data/shop.sqlite");
        assert!(!DatabaseUrl::new("postgres://u:p w@h/db").redacted().contains("p w"));
        assert_eq!(format!("{:?}", Secret::new("abc")), "***");
    }
}
