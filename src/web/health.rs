//! `GET /healthz`: the process is up and the database answers; whether WeChat Pay is simulated
//! (a monitor should alarm on `"simulated": true` in production); and how many refused notify
//! deliveries this process stored and how many it dropped (rate limit, full queue).

use rocket::serde::json::{Json, Value, json};
use rocket::{State, get, routes};

use crate::error::AppError;
use crate::payments::Payments;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_health]
}

#[get("/healthz")]
async fn get_health(payments: &State<Payments>) -> Result<Json<Value>, AppError> {
    payments.check_database().await?;
    Ok(Json(json!({
        "status": "ok",
        "simulated": payments.config.simulator,
        "refused_notifies": payments.refused_stats(),
    })))
}
