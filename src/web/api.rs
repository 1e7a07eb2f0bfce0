//! The merchant JSON API (`/api/v1`), authenticated with a bearer token.

use rocket::data::{Data, ToByteUnit};
use rocket::http::{Header, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::response::{self, Responder};
use rocket::serde::json::{Json, Value, json};
use rocket::{Request, Response, State, catch, catchers, get, post, routes};

use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::create::{ApiCreateOrder, Created};
use crate::payments::order_view::order_json;
use crate::staff::Accounts;

pub fn routes() -> Vec<rocket::Route> {
    routes![post_order, get_order]
}

pub fn catchers() -> Vec<rocket::Catcher> {
    catchers![api_unauthorized, api_not_found, api_other]
}

/// An API error as JSON: `{"error": {"code", "message", "field"}}`.
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        self.0.log();
        let status = self.0.status();
        let field = match &self.0 {
            AppError::Invalid { field, .. } => Some(field.clone()),
            _ => None,
        };
        let code = match status.code {
            401 => "unauthorized",
            404 => "not_found",
            409 => "conflict",
            422 => "invalid",
            502 => "gateway",
            _ => "internal",
        };
        let body = json!({
            "error": { "code": code, "message": self.0.public_message(), "field": field },
            "simulated": simulated(req),
        });
        let mut res = Response::build_from(Json(body).respond_to(req)?);
        res.status(status);
        if status == Status::Unauthorized {
            res.header(Header::new("WWW-Authenticate", "Bearer"));
        }
        res.ok()
    }
}

/// A request carrying a valid `Authorization: Bearer <token>`.
pub struct ApiAuth;

#[rocket::async_trait]
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
            Ok(true) => Outcome::Success(ApiAuth),
            Ok(false) => Outcome::Error((Status::Unauthorized, ())),
            Err(e) => {
                tracing::error!(error = %e, "token check failed");
                Outcome::Error((Status::ServiceUnavailable, ()))
            }
        }
    }
}

#[post("/orders", data = "<body>")]
async fn post_order(
    _auth: ApiAuth,
    body: Data<'_>,
    payments: &State<Payments>,
) -> Result<(Status, Json<Value>), ApiError> {
    let bytes = body.open(64.kibibytes()).into_bytes().await.map_err(|e| AppError::Internal(e.to_string()))?;
    if !bytes.is_complete() {
        return Err(AppError::invalid("body", "larger than 64 KiB").into());
    }
    let (req, webhook_url) = parse_create(&bytes)?.into_parts();
    let (status, order) = match payments.create_order_with_webhook(req, webhook_url).await? {
        Created::New(o) => (Status::Created, o),
        Created::Existing(o) => (Status::Ok, o),
    };
    Ok((status, Json(order_json(&order, &payments.config))))
}

/// Reads the body, naming the offending field in every error.
fn parse_create(bytes: &[u8]) -> Result<ApiCreateOrder, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let named =
            |prefix: &str| message.strip_prefix(prefix).and_then(|rest| rest.split('`').next()).map(str::to_owned);
        let field = named("unknown field `")
            .or_else(|| named("missing field `"))
            .unwrap_or_else(|| if matches!(path.as_str(), "" | "." | "?") { "body".to_owned() } else { path.clone() });
        ApiError(AppError::invalid(field, message))
    })
}

#[get("/orders/<out_trade_no>")]
async fn get_order(_auth: ApiAuth, out_trade_no: &str, payments: &State<Payments>) -> Result<Json<Value>, ApiError> {
    let order = payments.load(out_trade_no).await?;
    Ok(Json(order_json(&order, &payments.config)))
}

#[catch(401)]
fn api_unauthorized(req: &Request<'_>) -> ApiError {
    let _ = req;
    ApiError(AppError::Unauthorized)
}

#[catch(404)]
fn api_not_found() -> ApiError {
    ApiError(AppError::NotFound("resource"))
}

#[catch(default)]
fn api_other(status: Status, req: &Request<'_>) -> (Status, Json<Value>) {
    let error = json!({ "code": "http", "message": status.reason_lossy(), "field": null });
    (status, Json(json!({ "error": error, "simulated": simulated(req) })))
}

/// Whether this app runs in simulator mode: every API answer says so, errors included.
fn simulated(req: &Request<'_>) -> bool {
    req.rocket().state::<Payments>().is_some_and(|p| p.config.simulator)
}
