//! The operator's settings: who may read `/metrics` (`METRICS_TOKEN`), and where and how money
//! alerts go (`ALERT_WEBHOOK_URL`, `ALERT_FORMAT`, `ALERT_MAX_PER_HOUR`).

use super::urls::webhook_url_problem;
use super::{ConfigError, RawSettings, Secret, invalid};

/// The message format an alert is posted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFormat {
    /// 企业微信 group robot: `{"msgtype":"markdown","markdown":{"content":…}}`.
    Wecom,
    /// A plain JSON object (`kind`, `title`, `text`, `key`, …) for any other receiver.
    Json,
}

impl AlertFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertFormat::Wecom => "wecom",
            AlertFormat::Json => "json",
        }
    }
}

/// Where alerts go; `None` in [`OperationsSettings::alerts`] when `ALERT_WEBHOOK_URL` is unset.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// The receiver; a 企业微信 robot URL carries its key in the query, so it is a secret.
    pub url: Secret,
    pub format: AlertFormat,
    /// At most this many alerts are posted per hour; the rest are summed up in one message.
    pub max_per_hour: u32,
}

/// Settings for running the service: metrics access and alerts.
#[derive(Debug, Clone, Default)]
pub struct OperationsSettings {
    /// A bearer token `/metrics` requires when set; without it `/metrics` is open (bind it to
    /// an internal network or keep it behind the proxy).
    pub metrics_token: Option<Secret>,
    pub alerts: Option<AlertSettings>,
}

impl OperationsSettings {
    pub(super) fn from_raw(raw: &RawSettings) -> Result<OperationsSettings, ConfigError> {
        if let Some(token) = &raw.metrics_token
            && token.expose().len() < 24
        {
            return Err(invalid("METRICS_TOKEN", "must be at least 24 characters"));
        }
        let alerts = match raw.alert_webhook_url.as_ref().filter(|u| !u.expose().trim().is_empty()) {
            None => None,
            Some(url) => Some(AlertSettings {
                url: alert_url(url)?,
                format: alert_format(&raw.alert_format, url.expose())?,
                max_per_hour: match raw.alert_max_per_hour {
                    1..=3600 => raw.alert_max_per_hour,
                    _ => return Err(invalid("ALERT_MAX_PER_HOUR", "must be between 1 and 3600")),
                },
            }),
        };
        Ok(OperationsSettings { metrics_token: raw.metrics_token.clone(), alerts })
    }
}

/// The alert receiver is the operator's own choice (an internal relay is fine), so only its form
/// is checked, not its address; the message never names the URL, which may hold a robot key.
fn alert_url(url: &Secret) -> Result<Secret, ConfigError> {
    let value = url.expose().trim();
    let form = webhook_url_problem(value).filter(|p| !p.contains("user name"));
    match form {
        Some(problem) => Err(invalid("ALERT_WEBHOOK_URL", problem)),
        None => Ok(Secret::new(value)),
    }
}

/// `auto` (the default) picks the 企业微信 format for `qyapi.weixin.qq.com` and JSON elsewhere.
fn alert_format(value: &str, url: &str) -> Result<AlertFormat, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "wecom" => Ok(AlertFormat::Wecom),
        "json" => Ok(AlertFormat::Json),
        "" | "auto" => {
            let wecom = url::Url::parse(url).ok().and_then(|u| u.host_str().map(|h| h == "qyapi.weixin.qq.com"));
            Ok(if wecom == Some(true) { AlertFormat::Wecom } else { AlertFormat::Json })
        }
        other => Err(invalid("ALERT_FORMAT", format!("{other:?} is not one of auto, wecom, json"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: Option<&str>, format: &str) -> RawSettings {
        RawSettings { alert_webhook_url: url.map(Secret::new), alert_format: format.into(), ..RawSettings::default() }
    }

    #[test]
    fn the_format_follows_the_receiver_unless_given() {
        let wecom = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc";
        let ops = OperationsSettings::from_raw(&raw(Some(wecom), "auto")).unwrap();
        assert_eq!(ops.alerts.unwrap().format, AlertFormat::Wecom);
        let ops = OperationsSettings::from_raw(&raw(Some("http://127.0.0.1:9/alerts"), "")).unwrap();
        assert_eq!(ops.alerts.unwrap().format, AlertFormat::Json);
        let ops = OperationsSettings::from_raw(&raw(Some("http://127.0.0.1:9/alerts"), "WECOM")).unwrap();
        assert_eq!(ops.alerts.unwrap().format, AlertFormat::Wecom);
        assert!(OperationsSettings::from_raw(&raw(None, "")).unwrap().alerts.is_none());
    }

    #[test]
    fn bad_alert_settings_name_their_variable() {
        let err = OperationsSettings::from_raw(&raw(Some("ftp://example.com/x"), "")).unwrap_err();
        assert!(err.to_string().starts_with("ALERT_WEBHOOK_URL:"), "{err}");
        let err = OperationsSettings::from_raw(&raw(Some("https://example.com/x"), "slack")).unwrap_err();
        assert!(err.to_string().starts_with("ALERT_FORMAT:"), "{err}");
        let r = RawSettings { alert_max_per_hour: 0, ..raw(Some("https://example.com/x"), "") };
        assert!(OperationsSettings::from_raw(&r).unwrap_err().to_string().starts_with("ALERT_MAX_PER_HOUR:"));
        let r = RawSettings { metrics_token: Some(Secret::new("short")), ..RawSettings::default() };
        assert!(OperationsSettings::from_raw(&r).unwrap_err().to_string().starts_with("METRICS_TOKEN:"));
    }
}
