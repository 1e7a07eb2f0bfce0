//! The API's one error shape, `{"error": {"code", "message", "field"?, …}, "simulated"}`, and the
//! answer every handler gives (a status and a JSON body that an idempotency key can store).

use rocket::http::{Header, Status};
use rocket::response::{self, Responder};
use rocket::serde::json::{Json, Value, json};
use rocket::{Request, Response};

use crate::error::AppError;

/// Every error code the API answers with, and the status it usually comes with (documented in
/// README's "Errors" table; a test keeps the two in step). `bad_request` covers any other 4xx
/// and `internal` any other 5xx that Rocket answers by itself.
pub const CODES: [(&str, u16); 15] = [
    ("invalid", 422),
    ("idempotency_key_reused", 422),
    ("unauthorized", 401),
    ("insufficient_scope", 403),
    ("forbidden", 403),
    ("not_found", 404),
    ("conflict", 409),
    ("close_too_early", 409),
    ("idempotency_key_in_use", 409),
    ("refund_refused", 409),
    ("payload_too_large", 413),
    ("unavailable", 503),
    ("gateway", 502),
    ("bad_request", 400),
    ("internal", 500),
];

/// An error the API answers with.
#[derive(Debug)]
pub struct ApiError {
    pub status: Status,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// More members of the `error` object (e.g. `closable_at` for `close_too_early`).
    pub extra: serde_json::Map<String, Value>,
}

impl ApiError {
    pub fn new(status: Status, code: &'static str, message: impl Into<String>) -> ApiError {
        debug_assert!(CODES.iter().any(|(c, _)| *c == code), "undocumented code {code}");
        ApiError { status, code, message: message.into(), field: None, extra: serde_json::Map::new() }
    }

    /// A 422 naming the field at fault.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { field: Some(field.into()), ..ApiError::new(Status::UnprocessableEntity, "invalid", message) }
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// The `error` object.
    pub fn body(&self, simulated: bool) -> Value {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        if let Some(field) = &self.field {
            error.insert("field".into(), json!(field));
        }
        error.extend(self.extra.clone());
        json!({ "error": error, "simulated": simulated })
    }

    pub fn into_answer(self, simulated: bool) -> Answer {
        Answer { status: self.status, body: self.body(simulated), replayed: false }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        e.log();
        let status = e.status();
        match e {
            AppError::Invalid { field, message } => ApiError::invalid(field, message),
            AppError::NotFound(what) => ApiError::new(status, "not_found", format!("{what} not found")),
            AppError::Conflict(why) => ApiError::new(status, "conflict", why),
            AppError::Unauthorized => ApiError::new(status, "unauthorized", "a valid bearer token is required"),
            // The merchant's own developers may see WeChat's detail, as staff do.
            AppError::Gateway(_) | AppError::OAuth(_) => {
                ApiError::new(Status::BadGateway, "gateway", e.staff_message())
            }
            AppError::Db(_) if status == Status::ServiceUnavailable => {
                ApiError::new(Status::ServiceUnavailable, "unavailable", e.public_message())
            }
            AppError::Forbidden(why) => ApiError::new(Status::Forbidden, "forbidden", why),
            AppError::Db(_) | AppError::Internal(_) => {
                ApiError::new(Status::InternalServerError, "internal", e.public_message())
            }
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        self.into_answer(super::simulated(req)).respond_to(req)
    }
}

/// A finished answer: what a handler returns and an idempotency key stores.
#[derive(Debug)]
pub struct Answer {
    pub status: Status,
    pub body: Value,
    /// Given again for a repeated `Idempotency-Key` (`Idempotent-Replayed: true`).
    pub replayed: bool,
}

impl Answer {
    pub fn new(status: Status, body: Value) -> Answer {
        Answer { status, body, replayed: false }
    }
}

impl<'r> Responder<'r, 'static> for Answer {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let retry_after = self.body["error"]["retry_after_seconds"].as_u64();
        let mut res = Response::build_from(Json(self.body).respond_to(req)?);
        res.status(self.status);
        if self.status == Status::Unauthorized {
            res.header(Header::new("WWW-Authenticate", "Bearer"));
        }
        if let Some(secs) = retry_after {
            res.header(Header::new("Retry-After", secs.to_string()));
        }
        if self.replayed {
            res.header(Header::new("Idempotent-Replayed", "true"));
        }
        res.ok()
    }
}

/// A handler's result: an answer, or an error answered in the one shape.
pub type ApiResult = Result<Answer, ApiError>;
