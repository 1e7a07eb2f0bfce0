//! The merchant JSON API (`/api/v1`): bearer tokens with scopes, one error shape, an
//! `Idempotency-Key` on every POST; orders (create, read, list, close, pay from the merchant's own
//! front end), refunds, and Mini Program sign-in.

mod auth;
mod error;
mod idempotency;
mod list_query;
pub mod openapi;
mod orders;
mod payment;
mod refunds;
mod schema;

use rocket::data::{Data, ToByteUnit};
use rocket::http::Status;
use rocket::{Request, catch, catchers};
use serde::de::DeserializeOwned;

pub use auth::ApiAuth;
pub use error::{Answer, ApiError, CODES};

use crate::payments::Payments;

/// The largest body a request may carry.
const MAX_BODY_KIB: u64 = 64;

pub fn routes() -> Vec<rocket::Route> {
    let mut routes = orders::routes();
    routes.extend(refunds::routes());
    routes.extend(payment::routes());
    routes.extend(rocket::routes![openapi::openapi_json]);
    routes
}

pub fn catchers() -> Vec<rocket::Catcher> {
    catchers![api_unauthorized, api_not_found, api_other]
}

/// The request body, at most 64 KiB.
async fn read_body(body: Data<'_>) -> Result<Vec<u8>, ApiError> {
    let bytes = body.open(MAX_BODY_KIB.kibibytes()).into_bytes().await.map_err(|e| {
        tracing::warn!(error = %e, "API body could not be read");
        ApiError::invalid("body", "could not be read")
    })?;
    if !bytes.is_complete() {
        let why = format!("the body is larger than {MAX_BODY_KIB} KiB");
        return Err(ApiError {
            field: Some("body".into()),
            ..ApiError::new(Status::PayloadTooLarge, "payload_too_large", why)
        });
    }
    Ok(bytes.into_inner())
}

/// Parses a JSON body, naming the offending field in every error.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let named =
            |prefix: &str| message.strip_prefix(prefix).and_then(|rest| rest.split('`').next()).map(str::to_owned);
        let field = named("unknown field `")
            .or_else(|| named("missing field `"))
            .unwrap_or_else(|| if matches!(path.as_str(), "" | "." | "?") { "body".to_owned() } else { path.clone() });
        ApiError::invalid(field, message)
    })
}

#[catch(401)]
fn api_unauthorized() -> ApiError {
    ApiError::new(
        Status::Unauthorized,
        "unauthorized",
        "a valid bearer token is required (Authorization: Bearer <token>)",
    )
}

#[catch(404)]
fn api_not_found(req: &Request<'_>) -> ApiError {
    ApiError::new(Status::NotFound, "not_found", format!("no such resource: {}", req.uri().path()))
}

/// Every other status Rocket answers by itself (a body it could not take, a database that did not
/// answer the token check…), in the same shape.
#[catch(default)]
fn api_other(status: Status, _req: &Request<'_>) -> ApiError {
    let code = match status.code {
        413 => "payload_too_large",
        503 => "unavailable",
        400..=499 => "bad_request",
        _ => "internal",
    };
    ApiError::new(status, code, status.reason_lossy().to_string())
}

/// Whether this app runs in simulator mode: every API answer says so, errors included.
fn simulated(req: &Request<'_>) -> bool {
    req.rocket().state::<Payments>().is_some_and(|p| p.config.simulator)
}
