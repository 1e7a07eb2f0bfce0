//! Mini Program sign-in for the merchant's front end: a `wx.login` code is exchanged with WeChat
//! (`jscode2session`) for the shopper's openid under the Mini Program's appid, which then asks
//! for the order's payment parameters. WeChat's `session_key` never leaves `wxpay`.

use super::Payments;
use super::prepay::NO_MINI_PROGRAM;
use crate::error::AppError;
use crate::wxpay::mini_program::{MiniProgramClient, MiniProgramIdentity};
use crate::wxpay::oauth::OAuthError;

/// The longest `wx.login` code accepted (WeChat's are 32 characters).
const MAX_CODE_BYTES: usize = 128;

impl Payments {
    /// The shopper behind a `wx.login` code. `client` is `None` when no Mini Program is
    /// configured (a conflict naming `WECHAT_MINIPROGRAM_APPID`).
    pub async fn sign_in_mini_program(
        &self,
        client: Option<&MiniProgramClient>,
        code: &str,
    ) -> Result<MiniProgramIdentity, AppError> {
        let client = client.ok_or_else(|| AppError::Conflict(NO_MINI_PROGRAM.into()))?;
        if code.is_empty() || code.len() > MAX_CODE_BYTES || !code.bytes().all(|b| b.is_ascii_graphic()) {
            let why = format!(
                "must be the code wx.login gave the Mini Program (1 to {MAX_CODE_BYTES} visible ASCII characters)"
            );
            return Err(AppError::invalid("code", why));
        }
        client.exchange_code(code).await.map_err(refusal)
    }
}

/// What a refused exchange means for the caller: a code to replace (422 naming `code`), a user
/// WeChat blocks (403), or WeChat failing or busy (502, retry).
fn refusal(e: OAuthError) -> AppError {
    match e {
        OAuthError::Api { errcode, errmsg } if matches!(errcode, 40029 | 40163) => AppError::invalid(
            "code",
            format!(
                "WeChat refused this wx.login code ({errcode} {errmsg}): it is wrong, expired (5 minutes) or used \
                 already (each code signs in once); call wx.login again"
            ),
        ),
        OAuthError::Api { errcode: 40226, errmsg } => AppError::Forbidden(format!(
            "WeChat blocks this user's Mini Program sign-in as high-risk (40226 {errmsg}); the user cannot pay here"
        )),
        other => {
            tracing::warn!(error = %other, "jscode2session failed");
            AppError::OAuth(other)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(errcode: i64) -> OAuthError {
        OAuthError::Api { errcode, errmsg: "x".into() }
    }

    #[test]
    fn wechat_errors_map_to_what_the_caller_can_do() {
        for code in [40029, 40163] {
            assert!(matches!(refusal(api(code)), AppError::Invalid { ref field, .. } if field == "code"), "{code}");
        }
        assert!(matches!(refusal(api(40226)), AppError::Forbidden(_)));
        for code in [-1, 45011, 40013, 40125] {
            let e = refusal(api(code));
            assert_eq!(e.status().code, 502, "{code}");
        }
        assert_eq!(refusal(OAuthError::Transport("timed out".into())).status().code, 502);
    }
}
