//! Mini Program sign-in (`auth.code2Session`): the server-side exchange of a `wx.login` code for
//! the shopper's openid under the Mini Program's appid. WeChat's reply also carries the
//! `session_key`, which is never read into memory here: it cannot be logged or passed on.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::oauth::{OAuthError, exchange_sns_code};

/// `GET {sns_base}/sns/jscode2session?appid=&secret=&js_code=&grant_type=authorization_code`.
pub const JSCODE2SESSION_PATH: &str = "/sns/jscode2session";

/// Who the shopper is, for the Mini Program's appid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MiniProgramIdentity {
    pub openid: String,
    /// Only when the Mini Program is bound to an Open Platform account.
    pub unionid: Option<String>,
}

/// The members we read. `session_key` is deliberately absent: serde skips it unread.
#[derive(Deserialize)]
struct SessionReply {
    errcode: Option<i64>,
    errmsg: Option<String>,
    openid: Option<String>,
    unionid: Option<String>,
}

/// Exchanges `wx.login` codes for openids with the Mini Program's AppSecret (used only here).
#[derive(Clone)]
pub struct MiniProgramClient {
    http: reqwest::Client,
    sns_base: String,
    appid: String,
    secret: String,
}

impl fmt::Debug for MiniProgramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiniProgramClient")
            .field("sns_base", &self.sns_base)
            .field("appid", &self.appid)
            .field("secret", &"***")
            .finish()
    }
}

impl MiniProgramClient {
    pub fn new(sns_base: &str, appid: &str, secret: &str, timeout: Duration) -> Result<MiniProgramClient, OAuthError> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| OAuthError::Transport(e.to_string()))?;
        Ok(MiniProgramClient {
            http,
            sns_base: sns_base.trim_end_matches('/').to_owned(),
            appid: appid.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The Mini Program's appid.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    pub async fn exchange_code(&self, js_code: &str) -> Result<MiniProgramIdentity, OAuthError> {
        let url = format!("{}{}", self.sns_base, JSCODE2SESSION_PATH);
        let query = [
            ("appid", self.appid.as_str()),
            ("secret", self.secret.as_str()),
            ("js_code", js_code),
            ("grant_type", "authorization_code"),
        ];
        exchange_sns_code(&self.http, url, &query, ENDPOINT, parse_session_reply).await
    }
}

/// The metrics' name of the code exchange.
const ENDPOINT: &str = "jscode2session";

/// Reads a `jscode2session` reply: an `errcode` other than 0 is an error (the success reply
/// carries none, or 0), otherwise the openid must be there.
pub fn parse_session_reply(bytes: &[u8]) -> Result<MiniProgramIdentity, OAuthError> {
    let reply: SessionReply = serde_json::from_slice(bytes).map_err(|e| OAuthError::Malformed(e.to_string()))?;
    if let Some(errcode) = reply.errcode.filter(|c| *c != 0) {
        return Err(OAuthError::Api { errcode, errmsg: reply.errmsg.unwrap_or_default() });
    }
    let openid =
        reply.openid.filter(|o| !o.is_empty()).ok_or_else(|| OAuthError::Malformed("no openid in the reply".into()))?;
    Ok(MiniProgramIdentity { openid, unionid: reply.unionid.filter(|u| !u.is_empty()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_replies() {
        let ok = br#"{"openid":"oMP1","session_key":"tiihtNczf5v6AKRyjwEUhQ==","unionid":"oU1"}"#;
        assert_eq!(
            parse_session_reply(ok).unwrap(),
            MiniProgramIdentity { openid: "oMP1".into(), unionid: Some("oU1".into()) }
        );
        // Older replies carried errcode 0 beside the openid; unionid is often absent.
        let zero = br#"{"session_key":"k","openid":"oMP2","errcode":0,"errmsg":"ok"}"#;
        assert_eq!(parse_session_reply(zero).unwrap(), MiniProgramIdentity { openid: "oMP2".into(), unionid: None });
        for (body, code) in [
            (&br#"{"errcode":40029,"errmsg":"invalid code, rid: 1"}"#[..], 40029),
            (br#"{"errcode":40163,"errmsg":"code been used"}"#, 40163),
            (br#"{"errcode":45011,"errmsg":"api minute-quota reach limit mustslower retry next minute"}"#, 45011),
            (br#"{"errcode":40226,"errmsg":"code blocked"}"#, 40226),
            (br#"{"errcode":-1,"errmsg":"system error"}"#, -1),
        ] {
            let err = parse_session_reply(body).unwrap_err();
            assert!(matches!(err, OAuthError::Api { errcode, .. } if errcode == code), "{err:?}");
        }
        assert!(parse_session_reply(br#"{"errcode":40029,"errmsg":"invalid code"}"#).unwrap_err().needs_new_code());
        assert!(parse_session_reply(br#"{"errcode":-1,"errmsg":"system error"}"#).unwrap_err().is_retryable());
        assert!(parse_session_reply(br#"{"errcode":45011,"errmsg":"x"}"#).unwrap_err().is_retryable());
        assert!(!parse_session_reply(br#"{"errcode":40226,"errmsg":"x"}"#).unwrap_err().is_retryable());
        assert!(matches!(parse_session_reply(br#"{"session_key":"k"}"#), Err(OAuthError::Malformed(_))));
        assert!(matches!(parse_session_reply(b"<html>busy</html>"), Err(OAuthError::Malformed(_))));
    }

    #[test]
    fn the_secret_never_prints() {
        let client =
            MiniProgramClient::new("https://api.weixin.qq.com/", "wx1", "s3cret", Duration::from_secs(1)).unwrap();
        assert!(!format!("{client:?}").contains("s3cret"));
        assert_eq!(client.appid(), "wx1");
    }
}
