//! Refunds over the API: request one (the console's rules: what is refundable, the reservation,
//! the merchant certificate; idempotent by `out_refund_no`), list an order's, read one.

use rocket::data::Data;
use rocket::http::Status;
use rocket::serde::json::json;
use rocket::{State, get, post, routes};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::auth::ApiAuth;
use super::error::{Answer, ApiError, ApiResult};
use super::idempotency::{self, IdempotencyKey};
use super::{parse_json, read_body, schema};
use crate::domain::{ApiScope, Fen};
use crate::payments::Payments;
use crate::payments::order_view::refund_json;
use crate::payments::refund::{RefundRequest, RefundRequested};
use crate::wxpay::nonce::random_alphanumeric;
use crate::wxpay::types::is_valid_merchant_no;

pub fn routes() -> Vec<rocket::Route> {
    routes![post_refund, list_refunds, get_refund]
}

/// The body of `POST /orders/{out_trade_no}/refunds`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "amount_fen": 500, "reason": "退货", "out_refund_no": "R-1001" }))]
pub struct ApiRefund {
    /// At most what was paid less what is refunded or being refunded.
    pub amount_fen: i64,
    /// Shown to the shopper by WeChat; at most 80 bytes.
    pub reason: String,
    /// Your refund number (1 to 64 of `A-Z a-z 0-9 _ - | * @`); the same number is never refunded
    /// twice. Made from the Idempotency-Key, or at random, when absent.
    #[serde(default)]
    pub out_refund_no: Option<String>,
}

/// Requests a refund of a paid order.
#[utoipa::path(post, path = "/api/v1/orders/{out_trade_no}/refunds", tag = "refunds", security(("bearer" = [])),
    params(("out_trade_no" = String, Path, description = "The order number"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and request get the stored answer (24 h)")),
    request_body(content = ApiRefund, content_type = "application/json"),
    responses(
        (status = 201, description = "WeChat Pay accepted it; the outcome follows", body = schema::Refund),
        (status = 202, description = "Not confirmed yet (kept, reserved, retried): PENDING", body = schema::Refund),
        (status = 200, description = "This out_refund_no was requested before: the refund as it is", body = schema::Refund),
        (status = 404, description = "No such order", body = schema::Error),
        (status = 409, description = "Not refundable (unpaid, too much, a reused number) or `refund_refused` by WeChat Pay", body = schema::Error),
        (status = 422, description = "An input is wrong (`field` names it)", body = schema::Error),
    ))]
#[post("/orders/<out_trade_no>/refunds", data = "<body>")]
pub(super) async fn post_refund(
    auth: ApiAuth,
    key: IdempotencyKey,
    out_trade_no: &str,
    body: Data<'_>,
    payments: &State<Payments>,
) -> ApiResult {
    auth.require(ApiScope::Refund)?;
    let bytes = read_body(body).await?;
    let request = format!("POST /api/v1/orders/{out_trade_no}/refunds");
    let idem_key = key.checked()?.map(str::to_owned);
    let work = || async {
        let body: ApiRefund = parse_json(&bytes)?;
        let out_refund_no = match body.out_refund_no {
            Some(no) if is_valid_merchant_no(&no, 64) => no,
            Some(_) => {
                return Err(ApiError::invalid("out_refund_no", "1 to 64 of A-Z a-z 0-9 _ - | * @"));
            }
            None => refund_number(&auth.principal.key_space, idem_key.as_deref()),
        };
        let req = RefundRequest {
            out_trade_no: out_trade_no.to_owned(),
            out_refund_no,
            amount: Fen::new(body.amount_fen),
            reason: body.reason,
        };
        let requested = payments.request_refund(req, auth.actor()).await.map_err(|e| {
            // The refund rules name the console's field; the API's is amount_fen.
            let e = ApiError::from(e);
            if e.field.as_deref() == Some("amount") { ApiError { field: Some("amount_fen".into()), ..e } } else { e }
        })?;
        let config = &payments.config;
        Ok(match requested {
            RefundRequested::Accepted(r) => Answer::new(Status::Created, refund_json(&r, config)),
            RefundRequested::Pending { refund, .. } | RefundRequested::InFlight(refund) => {
                Answer::new(Status::Accepted, refund_json(&refund, config))
            }
            RefundRequested::AlreadyRequested(r) => Answer::new(Status::Ok, refund_json(&r, config)),
            RefundRequested::Refused { refund, error } => {
                let message = format!("WeChat Pay refused the refund: {error}");
                return Err(ApiError::new(Status::Conflict, "refund_refused", message)
                    .with("refund", refund_json(&refund, config)));
            }
        })
    };
    Ok(idempotency::run(payments, &auth, &key, &request, &bytes, work).await)
}

/// A refund number when the merchant gave none: derived from the idempotency key when there is
/// one (so a retry can never become a second refund, whatever happened to the first answer),
/// else random.
fn refund_number(key_space: &str, idempotency_key: Option<&str>) -> String {
    match idempotency_key {
        Some(key) => {
            let digest = Sha256::digest(format!("{key_space}\n{key}").as_bytes());
            let hex: String = digest.iter().take(15).map(|b| format!("{b:02x}")).collect();
            format!("RF{hex}")
        }
        None => format!("RF{}", random_alphanumeric(30)),
    }
}

/// Lists an order's refunds, oldest first.
#[utoipa::path(get, path = "/api/v1/orders/{out_trade_no}/refunds", tag = "refunds", security(("bearer" = [])),
    params(("out_trade_no" = String, Path, description = "The order number")),
    responses(
        (status = 200, description = "The order's refunds", body = schema::RefundList),
        (status = 404, description = "No such order", body = schema::Error),
    ))]
#[get("/orders/<out_trade_no>/refunds")]
pub(super) async fn list_refunds(auth: ApiAuth, out_trade_no: &str, payments: &State<Payments>) -> ApiResult {
    auth.require(ApiScope::Read)?;
    let refunds = payments.refunds_of(out_trade_no).await?;
    let data: Vec<_> = refunds.iter().map(|r| refund_json(r, &payments.config)).collect();
    Ok(Answer::new(Status::Ok, json!({ "data": data, "simulated": payments.config.simulator })))
}

/// Reads a refund.
#[utoipa::path(get, path = "/api/v1/refunds/{out_refund_no}", tag = "refunds", security(("bearer" = [])),
    params(("out_refund_no" = String, Path, description = "The refund number")),
    responses(
        (status = 200, description = "The refund", body = schema::Refund),
        (status = 404, description = "No such refund", body = schema::Error),
    ))]
#[get("/refunds/<out_refund_no>")]
pub(super) async fn get_refund(auth: ApiAuth, out_refund_no: &str, payments: &State<Payments>) -> ApiResult {
    auth.require(ApiScope::Read)?;
    let refund = payments.refund(out_refund_no).await?;
    Ok(Answer::new(Status::Ok, refund_json(&refund, &payments.config)))
}

#[cfg(test)]
mod tests {
    use super::refund_number;

    #[test]
    fn a_derived_refund_number_is_stable_per_key_and_token() {
        let a = refund_number("token:1", Some("k-1"));
        assert_eq!(a, refund_number("token:1", Some("k-1")));
        assert_eq!(a.len(), 32);
        assert_ne!(a, refund_number("token:2", Some("k-1")));
        assert_ne!(a, refund_number("token:1", Some("k-2")));
        assert_ne!(refund_number("env", None), refund_number("env", None));
    }
}
