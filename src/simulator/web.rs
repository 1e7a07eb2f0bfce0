//! HTTP helpers of the simulator's own routes: JSON bodies and replies, and CORS (the paying
//! page may live on another origin than a standalone simulator).

use rocket::data::{Data, ToByteUnit};
use rocket::http::{Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder};
use rocket::serde::json::Json;
use rocket::{Route, options, routes};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Adds `Access-Control-Allow-Origin: *` to any response.
pub(crate) struct Cors<R>(pub R);

impl<'r, 'o: 'r, R: Responder<'r, 'o>> Responder<'r, 'o> for Cors<R> {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'o> {
        let mut response = self.0.respond_to(req)?;
        response.set_header(Header::new("Access-Control-Allow-Origin", "*"));
        Ok(response)
    }
}

/// A JSON reply with a status, CORS-enabled.
pub(crate) type JsonReply = Cors<(Status, Json<Value>)>;

pub(crate) fn json_ok(value: Value) -> JsonReply {
    Cors((Status::Ok, Json(value)))
}

pub(crate) fn json_status(status: Status, value: Value) -> JsonReply {
    Cors((status, Json(value)))
}

pub(crate) fn json_error(status: Status, message: impl Into<String>) -> JsonReply {
    Cors((status, Json(json!({ "error": message.into() }))))
}

/// Reads a JSON body (at most 64 KiB); an empty body reads as `{}`.
pub(crate) async fn read_json<T: DeserializeOwned>(data: Data<'_>) -> Result<T, JsonReply> {
    let bytes = data
        .open(64.kibibytes())
        .into_bytes()
        .await
        .map_err(|e| json_error(Status::BadRequest, format!("cannot read the body: {e}")))?;
    if !bytes.is_complete() {
        return Err(json_error(Status::PayloadTooLarge, "the body is larger than 64 KiB"));
    }
    let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
    serde_json::from_slice(body).map_err(|e| json_error(Status::BadRequest, format!("invalid JSON body: {e}")))
}

/// The CORS preflight of a JSON POST.
pub(crate) struct Preflight;

impl<'r> Responder<'r, 'static> for Preflight {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        rocket::Response::build()
            .status(Status::NoContent)
            .header(Header::new("Access-Control-Allow-Origin", "*"))
            .header(Header::new("Access-Control-Allow-Methods", "GET, POST, OPTIONS"))
            .header(Header::new("Access-Control-Allow-Headers", "Content-Type"))
            .header(Header::new("Access-Control-Max-Age", "600"))
            .ok()
    }
}

#[options("/<_..>")]
fn preflight() -> Preflight {
    Preflight
}

pub(crate) fn routes() -> Vec<Route> {
    routes![preflight]
}
