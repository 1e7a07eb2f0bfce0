//! The control API (`{own}/control/...`, JSON): faults, the seed of their dice, the time
//! factor, the simulated clock, order snapshots, the notify log, forced refund outcomes, and
//! reset.

use std::time::Duration;

use rocket::data::Data;
use rocket::http::Status;
use rocket::{Route, State, get, post, routes};
use serde::Deserialize;
use serde_json::{Value, json};

use super::config::Faults;
use super::server::Mounted;
use super::web::{JsonReply, json_error, json_ok, json_status, read_json};
use super::{SimError, Simulator};
use crate::wxpay::money::Fen;
use crate::wxpay::time;
use crate::wxpay::types::RefundStatus;

fn clock_json(sim: &Simulator) -> Value {
    let now = sim.now();
    json!({
        "now": now.to_rfc3339(),
        "beijing": time::format_dashed(now),
        "offset_seconds": (now - chrono::Utc::now()).num_seconds(),
    })
}

/// Applies a partial update (any subset of the fields) to the current faults.
pub(crate) fn merge_faults(current: &Faults, update: &Value) -> Result<Faults, String> {
    let Value::Object(changes) = update else { return Err("expected a JSON object".into()) };
    let mut merged = serde_json::to_value(current).map_err(|e| e.to_string())?;
    if let Value::Object(fields) = &mut merged {
        for (k, v) in changes {
            fields.insert(k.clone(), v.clone());
        }
    }
    let faults: Faults = serde_json::from_value(merged).map_err(|e| e.to_string())?;
    faults.validate()?;
    Ok(faults)
}

#[get("/control/faults")]
fn get_faults(sim: &State<Mounted>) -> JsonReply {
    json_ok(json!(sim.0.faults()))
}

#[post("/control/faults", data = "<data>")]
async fn post_faults(sim: &State<Mounted>, data: Data<'_>) -> JsonReply {
    let update: Value = match read_json(data).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    match merge_faults(&sim.0.faults(), &update) {
        Ok(faults) => {
            sim.0.set_faults(faults.clone());
            json_ok(json!(faults))
        }
        Err(e) => json_error(Status::BadRequest, e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Seed {
    seed: u64,
}

/// Starts the fault dice over from a seed (a mounted simulator's dice are otherwise unseeded).
#[post("/control/seed", data = "<data>")]
async fn post_seed(sim: &State<Mounted>, data: Data<'_>) -> JsonReply {
    let body: Seed = match read_json(data).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    sim.0.reseed(body.seed);
    json_ok(json!({ "seed": body.seed }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeFactor {
    time_factor: f64,
}

#[get("/control/time-factor")]
fn get_time_factor(sim: &State<Mounted>) -> JsonReply {
    json_ok(json!({ "time_factor": sim.0.time_factor() }))
}

/// Changes the time factor of notify retries and refund settlements scheduled from now on.
#[post("/control/time-factor", data = "<data>")]
async fn post_time_factor(sim: &State<Mounted>, data: Data<'_>) -> JsonReply {
    let body: TimeFactor = match read_json(data).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    match sim.0.set_time_factor(body.time_factor) {
        Ok(()) => json_ok(json!({ "time_factor": body.time_factor })),
        Err(e) => json_error(Status::BadRequest, e),
    }
}

#[get("/control/clock")]
fn get_clock(sim: &State<Mounted>) -> JsonReply {
    json_ok(clock_json(&sim.0))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    advance_seconds: u64,
}

#[post("/control/clock", data = "<data>")]
async fn post_clock(sim: &State<Mounted>, data: Data<'_>) -> JsonReply {
    let advance: Advance = match read_json(data).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    sim.0.advance_clock(Duration::from_secs(advance.advance_seconds));
    json_ok(clock_json(&sim.0))
}

#[get("/control/orders/<out_trade_no>")]
fn get_order(sim: &State<Mounted>, out_trade_no: &str) -> JsonReply {
    match sim.0.order(out_trade_no) {
        Some(view) => json_ok(json!(view)),
        None => json_error(Status::NotFound, format!("no order {out_trade_no:?}")),
    }
}

#[get("/control/notifies")]
fn get_notifies(sim: &State<Mounted>) -> JsonReply {
    json_ok(json!(sim.0.notify_log()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settle {
    status: String,
}

#[post("/control/refunds/<out_refund_no>/settle", data = "<data>")]
async fn post_settle(sim: &State<Mounted>, out_refund_no: &str, data: Data<'_>) -> JsonReply {
    let settle: Settle = match read_json(data).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    let Some(status) = RefundStatus::parse(&settle.status) else {
        return json_error(Status::BadRequest, format!("unknown refund status {:?}", settle.status));
    };
    match sim.0.settle_refund_now(out_refund_no, status) {
        Ok(view) => json_ok(json!(view)),
        Err(e @ SimError::UnsupportedStatus(_)) => json_error(Status::BadRequest, e.to_string()),
        Err(e) => json_status(
            Status::from_code(e.http_status()).unwrap_or(Status::NotFound),
            json!({ "error": e.to_string(), "code": e.code() }),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BillAmount {
    total_fee: i64,
}

/// Plants an amount difference: the paid order's total at WeChat (hence in its bill) becomes
/// `total_fee` fen while the merchant keeps its own record.
#[post("/control/orders/<out_trade_no>/bill-amount", data = "<data>")]
async fn post_bill_amount(sim: &State<Mounted>, out_trade_no: &str, data: Data<'_>) -> JsonReply {
    let body: BillAmount = match read_json(data).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    if body.total_fee <= 0 {
        return json_error(Status::BadRequest, "total_fee must be a positive number of fen");
    }
    if !sim.0.write(|s| s.set_paid_total(out_trade_no, Fen::new(body.total_fee))) {
        return json_error(Status::NotFound, format!("no paid order {out_trade_no:?}"));
    }
    match sim.0.order(out_trade_no) {
        Some(view) => json_ok(json!(view)),
        None => json_error(Status::NotFound, format!("no order {out_trade_no:?}")),
    }
}

#[post("/control/reset")]
fn post_reset(sim: &State<Mounted>) -> JsonReply {
    sim.0.reset();
    json_ok(json!({ "reset": true }))
}

pub(crate) fn routes() -> Vec<Route> {
    routes![
        get_faults,
        post_faults,
        post_seed,
        get_time_factor,
        post_time_factor,
        get_clock,
        post_clock,
        get_order,
        get_notifies,
        post_settle,
        post_bill_amount,
        post_reset
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_fault_updates() {
        let base = Faults { slow_ms: 100, ..Faults::default() };
        let merged = merge_faults(&base, &json!({ "system_error_rate": 0.5 })).unwrap();
        assert_eq!(merged.system_error_rate, 0.5);
        assert_eq!(merged.slow_ms, 100);
        assert!(merge_faults(&base, &json!({ "unknown": 1 })).is_err());
        assert!(merge_faults(&base, &json!({ "slow_rate": 2.0 })).is_err());
        assert!(merge_faults(&base, &json!([1])).is_err());
    }
}
