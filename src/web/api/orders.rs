//! Orders over the API: create (idempotent by merchant_order_id), read, list (filters and a
//! cursor, newest first) and close (WeChat's 5-minute rule answered with a 409 saying when).

use chrono::{SecondsFormat, Utc};
use rocket::data::Data;
use rocket::http::Status;
use rocket::http::uri::Origin;
use rocket::serde::json::json;
use rocket::{State, get, post, routes};

use super::auth::ApiAuth;
use super::error::{Answer, ApiError, ApiResult};
use super::idempotency::{self, IdempotencyKey};
use super::{list_query, parse_json, read_body, schema};
use crate::domain::ApiScope;
use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::close::{CloseFailure, CloseOutcome};
use crate::payments::create::{ApiCreateOrder, Created};
use crate::payments::order_view::order_json;

pub fn routes() -> Vec<rocket::Route> {
    routes![post_order, get_order, list_orders, close_order]
}

/// Creates an order (idempotent by `merchant_order_id`).
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and request get the stored answer (24 h)")),
    request_body(content = crate::payments::create::ApiCreateOrder, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = schema::Order),
        (status = 200, description = "This merchant_order_id names this order already, with the same fields", body = schema::Order),
        (status = 409, description = "This merchant_order_id names an order with other fields", body = schema::Error),
        (status = 422, description = "An input is wrong (`field` names it)", body = schema::Error),
    ))]
#[post("/orders", data = "<body>")]
pub(super) async fn post_order(
    auth: ApiAuth,
    key: IdempotencyKey,
    body: Data<'_>,
    payments: &State<Payments>,
) -> ApiResult {
    auth.require(ApiScope::Write)?;
    let bytes = read_body(body).await?;
    let work = || async {
        let (req, webhook_url) = parse_json::<ApiCreateOrder>(&bytes)?.into_parts();
        let (status, order) = match payments.create_order_with_webhook(req, webhook_url, Some(auth.actor())).await? {
            Created::New(o) => (Status::Created, o),
            Created::Existing(o) => (Status::Ok, o),
        };
        Ok(Answer::new(status, order_json(&order, &payments.config)))
    };
    Ok(idempotency::run(payments, &auth, &key, "POST /api/v1/orders", &bytes, work).await)
}

/// Reads an order.
#[utoipa::path(get, path = "/api/v1/orders/{out_trade_no}", tag = "orders", security(("bearer" = [])),
    params(("out_trade_no" = String, Path, description = "The order number")),
    responses(
        (status = 200, description = "The order", body = schema::Order),
        (status = 404, description = "No such order", body = schema::Error),
    ))]
#[get("/orders/<out_trade_no>")]
pub(super) async fn get_order(auth: ApiAuth, out_trade_no: &str, payments: &State<Payments>) -> ApiResult {
    auth.require(ApiScope::Read)?;
    let order = payments.load(out_trade_no).await?;
    Ok(Answer::new(Status::Ok, order_json(&order, &payments.config)))
}

/// Lists orders, newest first, a page at a time.
// The query is parsed by hand (`list_query`) so that every bad or unknown parameter is named.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])),
    params(
        ("state" = Option<String>, Query, description = "CREATED, PAYING, PAID, CLOSED or PAYERROR"),
        ("created_from" = Option<String>, Query, description = "Created at or after (RFC 3339)"),
        ("created_before" = Option<String>, Query, description = "Created before (RFC 3339)"),
        ("paid_from" = Option<String>, Query, description = "Paid at or after (RFC 3339)"),
        ("paid_before" = Option<String>, Query, description = "Paid before (RFC 3339)"),
        ("merchant_order_id" = Option<String>, Query, description = "Exactly this merchant order id"),
        ("amount_min_fen" = Option<i64>, Query, description = "At least this amount"),
        ("amount_max_fen" = Option<i64>, Query, description = "At most this amount"),
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20"),
        ("cursor" = Option<String>, Query, description = "The previous page's next_cursor"),
    ),
    responses(
        (status = 200, description = "A page of orders", body = schema::OrderPage),
        (status = 422, description = "A parameter is wrong or unknown (`field` names it)", body = schema::Error),
    ))]
#[get("/orders", rank = 2)]
pub(super) async fn list_orders(auth: ApiAuth, uri: &Origin<'_>, payments: &State<Payments>) -> ApiResult {
    auth.require(ApiScope::Read)?;
    let query = list_query::parse(uri.query().map(|q| q.as_str()))?;
    let seek = query.seek();
    let page = payments.orders_page(query.filter, seek, query.limit).await.map_err(AppError::from)?;
    let data: Vec<_> = page.orders.iter().map(|o| order_json(o, &payments.config)).collect();
    let body = json!({
        "data": data,
        "has_more": page.next.is_some(),
        "next_cursor": page.next.as_ref().map(list_query::encode_cursor),
        "simulated": payments.config.simulator,
    });
    Ok(Answer::new(Status::Ok, body))
}

/// Closes an order (at WeChat Pay when its payment was started).
#[utoipa::path(post, path = "/api/v1/orders/{out_trade_no}/close", tag = "orders", security(("bearer" = [])),
    params(("out_trade_no" = String, Path, description = "The order number"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and request get the stored answer (24 h)")),
    responses(
        (status = 200, description = "The order: CLOSED, or PAID when it turned out paid", body = schema::Order),
        (status = 404, description = "No such order", body = schema::Error),
        (status = 409, description = "`close_too_early` (WeChat's 5 minutes; `closable_at`), or a state that cannot be closed", body = schema::Error),
        (status = 502, description = "WeChat Pay did not close it; nothing changed", body = schema::Error),
    ))]
#[post("/orders/<out_trade_no>/close", data = "<body>")]
pub(super) async fn close_order(
    auth: ApiAuth,
    key: IdempotencyKey,
    out_trade_no: &str,
    body: Data<'_>,
    payments: &State<Payments>,
) -> ApiResult {
    auth.require(ApiScope::Write)?;
    let bytes = read_body(body).await?;
    let request = format!("POST /api/v1/orders/{out_trade_no}/close");
    let work = || async {
        let outcome = payments.close_order(out_trade_no, Some(auth.actor())).await?;
        closed_answer(outcome, payments)
    };
    Ok(idempotency::run(payments, &auth, &key, &request, &bytes, work).await)
}

/// A close's outcome: the order when it is closed (or turned out paid), else why not.
fn closed_answer(outcome: CloseOutcome, payments: &Payments) -> ApiResult {
    match outcome {
        CloseOutcome::Closed { order, .. } | CloseOutcome::AlreadyClosed(order) | CloseOutcome::Paid(order) => {
            Ok(Answer::new(Status::Ok, order_json(&order, &payments.config)))
        }
        CloseOutcome::TooEarly { order, wait } => {
            let seconds = wait.num_seconds().max(0) + i64::from(wait.subsec_nanos() > 0);
            let closable_at = (Utc::now() + wait).to_rfc3339_opts(SecondsFormat::Secs, true);
            let message = format!(
                "WeChat Pay closes an order only 5 minutes after its payment was started; order {} can be closed from {closable_at} ({seconds} s from now)",
                order.out_trade_no
            );
            Err(ApiError::new(Status::Conflict, "close_too_early", message)
                .with("closable_at", json!(closable_at))
                .with("retry_after_seconds", json!(seconds)))
        }
        CloseOutcome::Failed { order, why } => Err(match why {
            CloseFailure::NotClosable(state) => ApiError::new(
                Status::Conflict,
                "conflict",
                format!("order {} is {state} and can no longer be closed", order.out_trade_no),
            ),
            CloseFailure::Wechat(detail) | CloseFailure::PaidButQueryFailed(detail) => {
                ApiError::new(Status::BadGateway, "gateway", format!("WeChat Pay did not close the order: {detail}"))
            }
            CloseFailure::PaidButQueryShows(state) => ApiError::new(
                Status::BadGateway,
                "gateway",
                format!("WeChat Pay says the order is paid but its query shows {state}; nothing was changed"),
            ),
        }),
    }
}
