//! Merchant API tokens: issuing one with its scope (shown once; only its SHA-256 is kept), revoking
//! one, listing them, and authenticating a bearer token (the configured `API_TOKEN`, which holds
//! every scope, or an issued one).

use subtle::ConstantTimeEq;

use super::Accounts;
use crate::db::{DbError, audit, tokens};
use crate::domain::records::{ApiToken, token_hash};
use crate::domain::{Actor, ApiScope, AuditAction};
use crate::wxpay::nonce::random_alphanumeric;

/// 40 alphanumerics: about 238 bits, so a plain SHA-256 of it cannot be brute-forced.
pub const TOKEN_LENGTH: usize = 40;
/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Why a token name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    TooLong,
    ControlCharacters,
}

/// A name is 1–64 characters with no control characters (it is shown on pages and in the audit).
pub fn check_name(name: &str) -> Result<(), NameProblem> {
    let count = name.chars().count();
    if count == 0 {
        Err(NameProblem::Empty)
    } else if count > MAX_NAME_CHARS {
        Err(NameProblem::TooLong)
    } else if name.chars().any(char::is_control) {
        Err(NameProblem::ControlCharacters)
    } else {
        Ok(())
    }
}

/// Who is calling the merchant API: the token's name (audited as `api:<name>`) and its scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiPrincipal {
    pub name: String,
    pub scope: ApiScope,
    /// The idempotency keys' namespace: `env` for `API_TOKEN`, `token:<id>` for an issued one, so
    /// two integrations never see each other's keys (and a renamed token keeps its own).
    pub key_space: String,
}

/// The name `API_TOKEN` is audited under.
pub const CONFIGURED_TOKEN_NAME: &str = "API_TOKEN";

impl ApiPrincipal {
    /// The actor an API write is audited as.
    pub fn actor(&self, remote_addr: Option<String>) -> Actor {
        Actor { username: format!("api:{}", self.name), remote_addr }
    }
}

/// What revoking found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// This call revoked the token with this name.
    Now(String),
    /// It was revoked already, by us or another admin.
    Already(String),
    NotFound,
}

impl Accounts {
    /// Every issued token, newest first.
    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, DbError> {
        self.db.read(tokens::list).await
    }

    /// Issues a token named `name` (already checked with [`check_name`]) with `scope` and returns
    /// it: the only time it is ever seen. Audited with its name, id and scope, never the token.
    pub async fn create_token(&self, actor: &Actor, name: &str, scope: ApiScope) -> Result<String, DbError> {
        let token = random_alphanumeric(TOKEN_LENGTH);
        let (hash, actor, name) = (token_hash(&token), actor.clone(), name.to_owned());
        self.db
            .write(move |c| -> Result<(), DbError> {
                let new = tokens::NewToken {
                    name: &name,
                    token_hash: &hash,
                    created_at: crate::db::now(),
                    scope: scope.as_str(),
                };
                tokens::insert(c, &new)?;
                let id = tokens::find_by_hash(c, &hash)?.map(|t| t.id);
                let detail = serde_json::json!({ "token_id": id, "scope": scope.as_str() });
                audit::record(c, &actor, AuditAction::TokenCreated, None, Some(&name), detail)
            })
            .await?;
        Ok(token)
    }

    /// Revokes token `id`: it stops authenticating at once.
    pub async fn revoke_token(&self, actor: &Actor, id: i64) -> Result<Revoked, DbError> {
        let actor = actor.clone();
        self.db
            .write(move |c| -> Result<Revoked, DbError> {
                let Some(token) = tokens::find(c, id)? else { return Ok(Revoked::NotFound) };
                // The guarded UPDATE decides: zero rows means it was already revoked.
                if !tokens::revoke(c, id, crate::db::now())? {
                    return Ok(Revoked::Already(token.name));
                }
                let detail = serde_json::json!({ "token_id": id });
                audit::record(c, &actor, AuditAction::TokenRevoked, None, Some(&token.name), detail)?;
                Ok(Revoked::Now(token.name))
            })
            .await
    }

    /// Who `token` is, when it may call the merchant API: the configured `API_TOKEN` (compared in
    /// constant time; every scope) or an issued token that is not revoked.
    pub async fn authenticate_api(&self, token: &str) -> Result<Option<ApiPrincipal>, DbError> {
        if let Some(configured) = &self.config.api_token
            && bool::from(configured.expose().as_bytes().ct_eq(token.as_bytes()))
        {
            let name = CONFIGURED_TOKEN_NAME.to_owned();
            return Ok(Some(ApiPrincipal { name, scope: ApiScope::Refund, key_space: "env".into() }));
        }
        let hash = token_hash(token);
        let found = self.db.read(move |c| tokens::find_active(c, &hash)).await?;
        Ok(found.map(|t| ApiPrincipal { name: t.name, scope: t.scope, key_space: format!("token:{}", t.id) }))
    }
}

#[cfg(test)]
mod tests {
    use super::{NameProblem, check_name};

    #[test]
    fn names_are_one_to_sixty_four_printable_characters() {
        assert_eq!(check_name(""), Err(NameProblem::Empty));
        assert!(check_name("订单系统").is_ok());
        assert!(check_name(&"名".repeat(64)).is_ok());
        assert_eq!(check_name(&"名".repeat(65)), Err(NameProblem::TooLong));
        assert_eq!(check_name("a\u{7}b"), Err(NameProblem::ControlCharacters));
    }
}
