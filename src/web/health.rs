//! `GET /healthz`: the process is up and the database answers and takes writes (503 with
//! `"database": "unreachable"` or `"writes_failing"` when not); whether WeChat Pay is simulated
//! (a monitor should alarm on `"simulated": true` in production); and how many refused notify
//! deliveries this process stored and how many it dropped (rate limit, full queue).

use rocket::http::Status;
use rocket::serde::json::{Json, Value, json};
use rocket::{State, get, routes};

use crate::payments::Payments;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_health]
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
