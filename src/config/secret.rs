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

/// Secrets that may instead be read from a file named by `<NAME>_FILE`.
pub(super) const FILE_SECRETS: &[&str] =
    &["WECHAT_APP_SECRET", "WECHAT_API_KEY", "API_TOKEN", "DATABASE_URL", "ADMIN_PASSWORD", "WEBHOOK_SECRET"];

/// The content of the file `<name>_FILE` names, trimmed, if that variable is set.
pub(super) fn read_secret_file(name: &'static str) -> Result<Option<String>, ConfigError> {
    let var = format!("{name}_FILE");
    let Ok(path) = std::env::var(&var) else { return Ok(None) };
    let content = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::Invalid { var: name, problem: format!("cannot read {var}={path}: {e}") })?;
    Ok(Some(content.trim().to_owned()))
}
