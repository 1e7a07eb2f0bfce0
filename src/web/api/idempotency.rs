//! `Idempotency-Key` on every API POST, with Stripe's semantics: the first request with a key runs
//! and its answer is stored; the same key with the same request (method, path and body, JSON
//! compared with its keys sorted) is given that answer again (`Idempotent-Replayed: true`); the
//! same key with another request is a 422 naming the key; while the first still runs, a twin gets
//! a 409. Keys are per token and kept 24 hours. An answer of ours that failed on our side (5xx)
//! is not stored, so a retry runs the request again; every write below is itself idempotent
//! (orders by merchant_order_id, refunds by out_refund_no, close by state), so that is safe.

use std::future::Future;

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};
use rocket::serde::json::{Value, json};
use rocket::{Request, async_trait};
use sha2::{Digest, Sha256};

use super::auth::ApiAuth;
use super::error::{Answer, ApiError, ApiResult};
use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::idempotency::Claim;

/// The header's name, as errors name it.
pub const HEADER: &str = "Idempotency-Key";
/// Longest key accepted (Stripe's limit).
pub const MAX_KEY_CHARS: usize = 255;
/// The request's `Idempotency-Key`, if it sent one (checked by [`run`]).
pub struct IdempotencyKey(pub Option<String>);

#[async_trait]
impl<'r> FromRequest<'r> for IdempotencyKey {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        Outcome::Success(IdempotencyKey(req.headers().get_one(HEADER).map(str::to_owned)))
    }
}

impl IdempotencyKey {
    /// The key, when one was sent: 1 to 255 visible ASCII characters.
    pub fn checked(&self) -> Result<Option<&str>, ApiError> {
        let Some(key) = self.0.as_deref() else { return Ok(None) };
        if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
            let why = format!("{HEADER} must be 1 to {MAX_KEY_CHARS} visible ASCII characters (a UUID is a good key)");
            return Err(ApiError::invalid(HEADER, why));
        }
        Ok(Some(key))
    }
}

/// Runs `work` under the request's idempotency key (or plainly, without one).
pub async fn run<F, Fut>(
    payments: &Payments,
    auth: &ApiAuth,
    key: &IdempotencyKey,
    request: &str,
    body: &[u8],
    work: F,
) -> Answer
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult>,
{
    let simulated = payments.config.simulator;
    let finish = |result: ApiResult| result.unwrap_or_else(|e| e.into_answer(simulated));
    let key = match key.checked() {
        Ok(Some(key)) => key.to_owned(),
        Ok(None) => return finish(work().await),
        Err(e) => return e.into_answer(simulated),
    };
    let space = auth.principal.key_space.clone();
    match payments.claim_idempotency_key(&space, &key, &fingerprint(request, body)).await {
        Ok(Claim::Claimed) => {}
        Ok(Claim::Replay { status, body }) => return replay(status, &body, simulated),
        Ok(Claim::InProgress) => {
            let why = format!("a request with this {HEADER} is still being processed; retry it in a moment");
            let e = ApiError::new(Status::Conflict, "idempotency_key_in_use", why);
            return ApiError { field: Some(HEADER.into()), ..e }.into_answer(simulated);
        }
        Ok(Claim::Mismatch) => {
            let why = format!("{HEADER} {key:?} was already used for a different request (another path or body)");
            let e = ApiError::new(Status::UnprocessableEntity, "idempotency_key_reused", why);
            return ApiError { field: Some(HEADER.into()), ..e }.into_answer(simulated);
        }
        Err(e) => return ApiError::from(AppError::Db(e)).into_answer(simulated),
    }
    let answer = finish(work().await);
    let stored = (answer.status.code < 500).then(|| (answer.status.code, answer.body.to_string()));
    if let Err(e) = payments.settle_idempotency_key(&space, &key, stored).await {
        // The answer still goes out; a retry within two minutes gets a 409, after that it runs again.
        tracing::error!(error = %e, "idempotency key could not be settled");
    }
    answer
}

fn replay(status: u16, body: &str, simulated: bool) -> Answer {
    match (Status::from_code(status), serde_json::from_str::<Value>(body)) {
        (Some(status), Ok(body)) => Answer { status, body, replayed: true },
        _ => ApiError::new(Status::InternalServerError, "internal", "the stored answer for this key is unreadable")
            .into_answer(simulated),
    }
}

/// SHA-256 of the method and path and the body: JSON with its object keys sorted, so the same
/// parameters in another order are the same request; anything else byte for byte.
fn fingerprint(request: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(request.as_bytes());
    hasher.update(b"\n");
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => hasher.update(canonical(&v).as_bytes()),
        Err(_) => hasher.update(body),
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let members: Vec<String> = keys.iter().map(|k| format!("{}:{}", json!(k), canonical(&map[*k]))).collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{IdempotencyKey, fingerprint};

    #[test]
    fn the_same_json_in_another_order_is_the_same_request() {
        let a = fingerprint("POST /api/v1/orders", br#"{"a":1,"b":{"y":[1,2],"x":"z"}}"#);
        let b = fingerprint("POST /api/v1/orders", br#"{ "b": {"x":"z","y":[1,2]}, "a": 1 }"#);
        assert_eq!(a, b);
        assert_ne!(a, fingerprint("POST /api/v1/orders", br#"{"a":2,"b":{"y":[1,2],"x":"z"}}"#));
        assert_ne!(a, fingerprint("POST /api/v1/orders/WC1/close", br#"{"a":1,"b":{"y":[1,2],"x":"z"}}"#));
        assert_ne!(fingerprint("POST /x", b"not json"), fingerprint("POST /x", b"not json "));
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        let ok = |k: &str| IdempotencyKey(Some(k.to_owned())).checked().is_ok();
        assert!(ok("3f1c0a2e-8d4b-4f5a-9e61-0c2b7d9a1f00"));
        assert!(ok(&"k".repeat(255)));
        assert!(!ok(""));
        assert!(!ok(&"k".repeat(256)));
        assert!(!ok("has space"));
        assert!(!ok("键"));
        assert!(IdempotencyKey(None).checked().unwrap().is_none());
    }
}
