//! Health for monitors and load balancers:
//! - `GET /livez`: the process answers (it touches nothing else: a restart is the cure only for
//!   a process that no longer answers at all);
//! - `GET /readyz`: this instance should get traffic: the database answers and takes writes, the
//!   migrations are current, the notify writer and the background jobs run and none is stuck
//!   (503 naming the failing check when not);
//! - `GET /healthz`: the database answers and takes writes (503 with `"database": "unreachable"`
//!   or `"writes_failing"` when not); whether WeChat Pay is simulated (a monitor should alarm on
//!   `"simulated": true` in production); and how many refused notify deliveries this process
//!   stored and how many it dropped (rate limit, full queue).

use rocket::http::Status;
use rocket::serde::json::{Json, Value, json};
use rocket::{State, get, routes};

use crate::payments::Payments;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_live, get_ready, get_health]
}

#[get("/livez")]
fn get_live() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

#[get("/readyz")]
async fn get_ready(payments: &State<Payments>) -> (Status, Json<Value>) {
    let readiness = payments.readiness().await;
    let (status, word) =
        if readiness.is_ready() { (Status::Ok, "ready") } else { (Status::ServiceUnavailable, "not_ready") };
    let mut body = json!({ "status": word });
    if let (Some(body), Ok(Value::Object(checks))) = (body.as_object_mut(), serde_json::to_value(&readiness)) {
        body.extend(checks);
    }
    (status, Json(body))
}

#[get("/healthz")]
async fn get_health(payments: &State<Payments>) -> (Status, Json<Value>) {
    let (status, mut body) = match payments.check_database().await {
        Ok(()) => (Status::Ok, json!({ "status": "ok" })),
        Err(down) => (Status::ServiceUnavailable, json!({ "status": "unavailable", "database": down.as_str() })),
    };
    body["simulated"] = json!(payments.config.simulator);
    body["refused_notifies"] = json!(payments.refused_stats());
    (status, Json(body))
}
