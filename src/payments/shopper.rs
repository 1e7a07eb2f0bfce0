//! The shopper's side of signing in with WeChat: a signed OAuth `state` is good for one callback,
//! across every instance.

use super::Payments;
use crate::db::oauth_states;
use crate::error::AppError;
use crate::wxpay::oauth::OAuthClient;

/// How a shopper's return from WeChat's sign-in ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShopperSignIn {
    /// WeChat vouched for this openid.
    Openid(String),
    /// The state was used before: a replayed callback, refused.
    Replayed,
    /// The state is now used, but WeChat sent no code (the shopper declined, or a forged link).
    NoCode,
}

impl Payments {
    /// Completes `snsapi_base` sign-in for a verified `state` (its `nonce`): the state is used up
    /// first (across every instance), then WeChat exchanges `code` for the shopper's openid.
    pub async fn sign_in_shopper(
        &self,
        nonce: &str,
        code: Option<&str>,
        oauth: &OAuthClient,
    ) -> Result<ShopperSignIn, AppError> {
        let n = nonce.to_owned();
        if !self.db.write(move |c| oauth_states::consume(c, &n, crate::db::now())).await? {
            return Ok(ShopperSignIn::Replayed);
        }
        let Some(code) = code.filter(|c| !c.is_empty()) else { return Ok(ShopperSignIn::NoCode) };
        Ok(ShopperSignIn::Openid(oauth.exchange_code(code).await?.openid))
    }
}
