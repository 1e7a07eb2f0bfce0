//! Official Account web authorization (`snsapi_base`): the authorize URL a shopper is sent to,
//! and the server-side exchange of the returned code for the shopper's openid.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use url::Url;

pub const PRODUCTION_OPEN_BASE: &str = "https://open.weixin.qq.com";
pub const PRODUCTION_SNS_BASE: &str = "https://api.weixin.qq.com";
pub const AUTHORIZE_PATH: &str = "/connect/oauth2/authorize";
pub const ACCESS_TOKEN_PATH: &str = "/sns/oauth2/access_token";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OAuthError {
    #[error("state must be 1 to 128 ASCII letters or digits")]
    BadState,
    #[error("redirect_uri {0:?} is not an absolute http(s) URL")]
    BadRedirect(String),
    #[error("WeChat sign-in error {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    #[error("could not reach WeChat sign-in: {0}")]
    Transport(String),
    #[error("unreadable WeChat sign-in reply: {0}")]
    Malformed(String),
    /// A "snapshot page" virtual account: it has an openid but can never pay.
    #[error("the shopper is browsing a snapshot page and cannot pay")]
    SnapshotUser,
}

impl OAuthError {
    /// 40029 (invalid code) and 40163 (code already used): send the shopper through authorize again.
    pub fn needs_new_code(&self) -> bool {
        matches!(self, OAuthError::Api { errcode: 40029 | 40163, .. })
    }

    /// WeChat was busy (-1), rate-limited the call (45011) or did not answer: the same call may
    /// succeed in a moment.
    pub fn is_retryable(&self) -> bool {
        matches!(self, OAuthError::Transport(_) | OAuthError::Api { errcode: -1 | 45011, .. })
    }
}

/// Builds the authorize URL. `redirect_uri` is URL-encoded, `#wechat_redirect` is appended.
pub fn authorize_url(open_base: &str, appid: &str, redirect_uri: &str, state: &str) -> Result<String, OAuthError> {
    if state.is_empty() || state.len() > 128 || !state.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(OAuthError::BadState);
    }
    match Url::parse(redirect_uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => return Err(OAuthError::BadRedirect(redirect_uri.to_owned())),
    }
    let mut url = Url::parse(&format!("{}{}", open_base.trim_end_matches('/'), AUTHORIZE_PATH))
        .map_err(|e| OAuthError::BadRedirect(e.to_string()))?;
    // WeChat checks the parameter order in some client versions; keep the documented one.
    url.query_pairs_mut()
        .append_pair("appid", appid)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "snsapi_base")
        .append_pair("state", state);
    url.set_fragment(Some("wechat_redirect"));
    Ok(url.into())
}

/// Who the shopper is, for this appid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthIdentity {
    pub openid: String,
    pub scope: String,
    pub unionid: Option<String>,
}

#[derive(Deserialize)]
struct TokenReply {
    errcode: Option<i64>,
    errmsg: Option<String>,
    openid: Option<String>,
    scope: Option<String>,
    unionid: Option<String>,
    is_snapshotuser: Option<i64>,
}

/// Exchanges codes for openids with the AppSecret (used only here, never for payment signing).
#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    sns_base: String,
    appid: String,
    secret: String,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("sns_base", &self.sns_base)
            .field("appid", &self.appid)
            .field("secret", &"***")
            .finish()
    }
}

impl OAuthClient {
    pub fn new(sns_base: &str, appid: &str, secret: &str, timeout: Duration) -> Result<OAuthClient, OAuthError> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| OAuthError::Transport(e.to_string()))?;
        Ok(OAuthClient {
            http,
            sns_base: sns_base.trim_end_matches('/').to_owned(),
            appid: appid.to_owned(),
            secret: secret.to_owned(),
        })
    }

    pub async fn exchange_code(&self, code: &str) -> Result<OAuthIdentity, OAuthError> {
        let url = format!("{}{}", self.sns_base, ACCESS_TOKEN_PATH);
        let query = [
            ("appid", self.appid.as_str()),
            ("secret", self.secret.as_str()),
            ("code", code),
            ("grant_type", "authorization_code"),
        ];
        exchange_sns_code(&self.http, url, &query, ENDPOINT, parse_token_reply).await
    }
}

/// One sign-in code exchange at WeChat's `sns` API (the Official Account's OAuth, the Mini
/// Program's `jscode2session`): sent, its reply parsed, and observed with one log line, one count
/// and one latency by `endpoint`, like the WeChat Pay client's calls (`client::observe`).
pub(super) async fn exchange_sns_code<T>(
    http: &reqwest::Client,
    url: String,
    query: &[(&str, &str)],
    endpoint: &'static str,
    parse: fn(&[u8]) -> Result<T, OAuthError>,
) -> Result<T, OAuthError> {
    let started = std::time::Instant::now();
    let result = async {
        let reply =
            http.get(url).query(query).send().await.map_err(|e| OAuthError::Transport(e.without_url().to_string()))?;
        let bytes = reply.bytes().await.map_err(|e| OAuthError::Transport(e.without_url().to_string()))?;
        parse(&bytes)
    }
    .await;
    let (outcome, elapsed) = (outcome(&result), started.elapsed());
    tracing::info!(endpoint, outcome, ms = elapsed.as_millis() as u64, "WeChat sign-in call");
    metrics::counter!("wechat_checkout_wechat_api_calls_total", "endpoint" => endpoint, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("wechat_checkout_wechat_api_duration_seconds", "endpoint" => endpoint).record(elapsed);
    result
}

/// The metrics' name of the code exchange.
const ENDPOINT: &str = "oauth_access_token";

/// A bounded name for how an exchange ended.
fn outcome<T>(result: &Result<T, OAuthError>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(OAuthError::Api { .. }) => "api_error",
        Err(OAuthError::Transport(_)) => "transport_error",
        Err(OAuthError::Malformed(_)) => "bad_reply",
        Err(OAuthError::SnapshotUser) => "snapshot_user",
        Err(OAuthError::BadState | OAuthError::BadRedirect(_)) => "local_error",
    }
}

fn parse_token_reply(bytes: &[u8]) -> Result<OAuthIdentity, OAuthError> {
    let reply: TokenReply = serde_json::from_slice(bytes).map_err(|e| OAuthError::Malformed(e.to_string()))?;
    if let Some(errcode) = reply.errcode.filter(|c| *c != 0) {
        return Err(OAuthError::Api { errcode, errmsg: reply.errmsg.unwrap_or_default() });
    }
    if reply.is_snapshotuser == Some(1) {
        return Err(OAuthError::SnapshotUser);
    }
    let openid =
        reply.openid.filter(|o| !o.is_empty()).ok_or_else(|| OAuthError::Malformed("no openid in the reply".into()))?;
    Ok(OAuthIdentity { openid, scope: reply.scope.unwrap_or_default(), unionid: reply.unionid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_url_is_encoded_with_fragment() {
        let url = authorize_url(
            PRODUCTION_OPEN_BASE,
            "wx520c15f417810387",
            "https://shop.example.com/pay/o1/oauth?x=1&y=2",
            "abc123",
        )
        .unwrap();
        assert_eq!(
            url,
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx520c15f417810387&redirect_uri=https%3A%2F%2Fshop.example.com%2Fpay%2Fo1%2Foauth%3Fx%3D1%26y%3D2&response_type=code&scope=snsapi_base&state=abc123#wechat_redirect"
        );
        assert_eq!(authorize_url(PRODUCTION_OPEN_BASE, "wx", "https://a.b/", "bad-state"), Err(OAuthError::BadState));
        assert_eq!(
            authorize_url(PRODUCTION_OPEN_BASE, "wx", "https://a.b/", &"a".repeat(129)),
            Err(OAuthError::BadState)
        );
        assert!(matches!(authorize_url(PRODUCTION_OPEN_BASE, "wx", "/relative", "s"), Err(OAuthError::BadRedirect(_))));
    }

    #[test]
    fn token_replies() {
        let ok = br#"{"access_token":"ACCESS_TOKEN","expires_in":7200,"refresh_token":"R","openid":"OPENID","scope":"snsapi_base"}"#;
        assert_eq!(parse_token_reply(ok).unwrap().openid, "OPENID");
        let err = parse_token_reply(br#"{"errcode":40029,"errmsg":"invalid code"}"#).unwrap_err();
        assert!(err.needs_new_code());
        assert_eq!(
            parse_token_reply(br#"{"errcode":40163,"errmsg":"code been used"}"#).unwrap_err(),
            OAuthError::Api { errcode: 40163, errmsg: "code been used".into() }
        );
        assert_eq!(
            parse_token_reply(br#"{"openid":"O","scope":"snsapi_base","is_snapshotuser":1}"#),
            Err(OAuthError::SnapshotUser)
        );
        assert!(matches!(parse_token_reply(b"<html>"), Err(OAuthError::Malformed(_))));
    }
}
