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
use super::{parse_json, read_body};
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiRefund {
    pub amount_fen: i64,
    pub reason: String,
    #[serde(default)]
    pub out_refund_no: Option<String>,
}

#[post("/orders/<out_trade_no>/refunds", data = "<body>")]
async fn post_refund(
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

#[get("/orders/<out_trade_no>/refunds")]
async fn list_refunds(auth: ApiAuth, out_trade_no: &str, payments: &State<Payments>) -> ApiResult {
    auth.require(ApiScope::Read)?;
    let refunds = payments.refunds_of(out_trade_no).await?;
    let data: Vec<_> = refunds.iter().map(|r| refund_json(r, &payments.config)).collect();
    Ok(Answer::new(Status::Ok, json!({ "data": data, "simulated": payments.config.simulator })))
}

#[get("/refunds/<out_refund_no>")]
async fn get_refund(auth: ApiAuth, out_refund_no: &str, payments: &State<Payments>) -> ApiResult {
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
