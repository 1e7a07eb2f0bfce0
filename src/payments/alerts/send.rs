//! Posting one alert: the body in the configured format (企业微信 group robot markdown, or a plain
//! JSON object), one POST with a short timeout and no redirects, and what the reply means. The
//! URL may carry the robot's key in its query, so no error or log line ever names the URL.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use super::message::beijing;
use crate::config::{AlertFormat, AlertSettings};
use crate::db::alerts::Alert;
use crate::error::AppError;

/// The whole of one attempt: connecting, sending, reading the reply.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// 企业微信 refuses markdown content over 4096 bytes.
pub const WECOM_MAX_BYTES: usize = 4096;
/// How much of a reply is read (the robot's answer is a short JSON object).
const REPLY_BYTES: usize = 2048;

/// What one POST got: delivered, or why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub status: Option<u16>,
    /// `None` when delivered.
    pub error: Option<String>,
}

impl Delivery {
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// The alerts client, built once: short timeouts, and redirects not followed (a 3xx is a failed
/// attempt; following it could carry the robot key elsewhere).
fn client() -> Result<&'static reqwest::Client, AppError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let built = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wechat-checkout-alerts/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AppError::Internal(format!("alerts HTTP client: {e}")))?;
    Ok(CLIENT.get_or_init(|| built))
}

/// The request body of `alert` in `format`; links start at `base_url` (`PUBLIC_BASE_URL`).
pub fn body(alert: &Alert, format: AlertFormat, base_url: &str) -> Value {
    let link = alert.link.as_ref().map(|path| format!("{base_url}{path}"));
    match format {
        AlertFormat::Wecom => {
            let mut content = format!("**{}**\n", alert.title);
            for line in alert.body.lines() {
                content.push_str(&format!("> {line}\n"));
            }
            if let Some(url) = &link {
                content.push_str(&format!("[在后台查看]({url})"));
            }
            json!({ "msgtype": "markdown", "markdown": { "content": truncate(&content, WECOM_MAX_BYTES) } })
        }
        AlertFormat::Json => json!({
            "kind": alert.kind,
            "title": alert.title,
            "text": alert.body,
            "key": alert.alert_key,
            "occurred_at": format!("{}+08:00", beijing(alert.occurred_at).replace(' ', "T")),
            "links": { "console": link },
        }),
    }
}

/// At most `max` bytes of `text`, cut at a character boundary, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Posts `alert`. A 2xx is delivered, except that a 企业微信 answer must also say `errcode: 0`
/// (the robot answers 200 with e.g. `45009` when it rate-limits).
pub async fn post(settings: &AlertSettings, base_url: &str, alert: &Alert) -> Delivery {
    let http = match client() {
        Ok(c) => c,
        Err(e) => return Delivery { status: None, error: Some(e.to_string()) },
    };
    let request = http.post(settings.url.expose()).json(&body(alert, settings.format, base_url));
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Delivery { status: None, error: Some(describe(e)) },
    };
    let status = response.status().as_u16();
    let mut reply = Vec::new();
    while reply.len() < REPLY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => reply.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Delivery { status: Some(status), error: Some(format!("HTTP {status}: {}", describe(e))) },
        }
    }
    let error = match (status, settings.format) {
        (200..=299, AlertFormat::Json) => None,
        (200..=299, AlertFormat::Wecom) => wecom_refusal(&reply),
        _ => Some(format!("HTTP {status}: {}", truncate(String::from_utf8_lossy(&reply).trim(), 200))),
    };
    Delivery { status: Some(status), error }
}

/// Why the robot refused (`errcode` not 0, or no answer it could have given), or `None`.
fn wecom_refusal(reply: &[u8]) -> Option<String> {
    let answer: Value = match serde_json::from_slice(reply) {
        Ok(v) => v,
        Err(_) => return Some(format!("not a 企业微信 answer: {}", truncate(&String::from_utf8_lossy(reply), 200))),
    };
    match answer["errcode"].as_i64() {
        Some(0) => None,
        Some(code) => Some(format!("errcode {code}: {}", answer["errmsg"].as_str().unwrap_or(""))),
        None => Some(format!("not a 企业微信 answer: {}", truncate(&answer.to_string(), 200))),
    }
}

/// A transport error and its causes, without the URL (its query may be the robot key).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {}s", TIMEOUT.as_secs());
    }
    crate::error::transport_failure(&e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(body: String) -> Alert {
        Alert {
            id: 1,
            alert_key: "exception:1".into(),
            kind: "exception.amount_mismatch".into(),
            title: "【支付异常】金额不符：WC1".into(),
            body,
            link: Some("/admin/orders/WC1".into()),
            occurred_at: chrono::NaiveDateTime::default(),
            created_at: chrono::NaiveDateTime::default(),
            state: "PENDING".into(),
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            sent_at: None,
            summarized_by: None,
            lease_owner: None,
            lease_until: None,
        }
    }

    #[test]
    fn wecom_content_is_cut_at_a_character_boundary_within_4096_bytes() {
        let long = "金额不符".repeat(1000);
        let body = body(&alert(long), AlertFormat::Wecom, "https://pay.example.com");
        let content = body["markdown"]["content"].as_str().unwrap();
        assert!(content.len() <= WECOM_MAX_BYTES && content.len() > WECOM_MAX_BYTES - 8, "{}", content.len());
        assert!(content.starts_with("**【支付异常】金额不符：WC1**\n> 金额不符") && content.ends_with('…'));
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("一二三", 7), "一…");
    }

    #[test]
    fn the_json_format_carries_key_kind_and_console_link() {
        let body = body(&alert("订单号：WC1".into()), AlertFormat::Json, "https://pay.example.com");
        assert_eq!(body["key"], "exception:1");
        assert_eq!(body["kind"], "exception.amount_mismatch");
        assert_eq!(body["links"]["console"], "https://pay.example.com/admin/orders/WC1");
        assert_eq!(body["occurred_at"], "1970-01-01T08:00:00+08:00");
    }

    #[test]
    fn the_robot_must_say_errcode_zero() {
        assert_eq!(wecom_refusal(br#"{"errcode":0,"errmsg":"ok"}"#), None);
        let limited = wecom_refusal(br#"{"errcode":45009,"errmsg":"api freq out of limit"}"#).unwrap();
        assert!(limited.starts_with("errcode 45009"), "{limited}");
        assert!(wecom_refusal(b"ok").is_some());
    }
}
