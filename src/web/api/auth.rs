//! Who calls the API: a bearer token (401 without a valid one), what it may do (403 naming the
//! scope an endpoint needs), and the actor its writes are audited as.

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};
use rocket::serde::json::json;
use rocket::{Request, async_trait};

use super::error::ApiError;
use crate::domain::{Actor, ApiScope};
use crate::staff::Accounts;
use crate::staff::tokens::ApiPrincipal;

/// A request carrying a valid `Authorization: Bearer <token>`.
pub struct ApiAuth {
    pub principal: ApiPrincipal,
    remote_addr: String,
}

impl ApiAuth {
    /// Refuses the request unless the token's scope includes `needed`.
    pub fn require(&self, needed: ApiScope) -> Result<(), ApiError> {
        if self.principal.scope.allows(needed) {
            return Ok(());
        }
        let message = format!(
            "this endpoint needs a token with scope `{needed}`; token \"{}\" has scope `{}`",
            self.principal.name, self.principal.scope
        );
        Err(ApiError::new(Status::Forbidden, "insufficient_scope", message)
            .with("required_scope", json!(needed.as_str()))
            .with("token_scope", json!(self.principal.scope.as_str())))
    }

    /// The audit actor: `api:<token name>` from the client's address.
    pub fn actor(&self) -> Actor {
        self.principal.actor(Some(self.remote_addr.clone()))
    }
}

#[async_trait]
impl<'r> FromRequest<'r> for ApiAuth {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let Some(token) = req.headers().get_one("Authorization").and_then(|h| h.strip_prefix("Bearer ")) else {
            return Outcome::Error((Status::Unauthorized, ()));
        };
        let Some(accounts) = req.rocket().state::<Accounts>() else {
            return Outcome::Error((Status::InternalServerError, ()));
        };
        match accounts.authenticate_api(token.trim()).await {
            Ok(Some(principal)) => {
                let remote_addr = crate::web::client::client_ip(req).to_string();
                Outcome::Success(ApiAuth { principal, remote_addr })
            }
            Ok(None) => Outcome::Error((Status::Unauthorized, ())),
            Err(e) => {
                tracing::error!(error = %e, "token check failed");
                Outcome::Error((Status::ServiceUnavailable, ()))
            }
        }
    }
}
