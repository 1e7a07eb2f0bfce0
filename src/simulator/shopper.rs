//! The simulated shopper: paying (or cancelling, or failing) a prepay, which marks the order
//! and starts the payment notify; served at `{own}/shopper/pay` and as `Simulator::pay`.

use rocket::data::Data;
use rocket::http::Status;
use rocket::{Route, State, post, routes};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api::PREPAY_TTL;
use super::model::{OrderState, SimOrder};
use super::notify::{self, Target};
use super::notify_body;
use super::server::Mounted;
use super::sim::clock;
use super::web::{JsonReply, json_ok, json_status, read_json};
use super::{SimError, Simulator, ids};

/// What the shopper does on the pay sheet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Pays: the order becomes SUCCESS and the notify starts.
    Ok,
    /// Closes the sheet: nothing changes.
    Cancel,
    /// The payment fails (e.g. the bank refuses): the order becomes PAYERROR, and may still be
    /// paid later.
    Fail,
}

/// The order after the shopper acted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayResult {
    pub out_trade_no: String,
    pub trade_state: String,
    pub transaction_id: Option<String>,
}

/// Whether the prepay can be paid now; the order it belongs to is returned when it can.
pub(crate) fn payable(order: &SimOrder, prepay_id: &str, now: chrono::DateTime<chrono::Utc>) -> Result<(), SimError> {
    match order.state {
        OrderState::Success => return Err(SimError::AlreadyPaid),
        OrderState::Closed => return Err(SimError::OrderClosed),
        OrderState::NotPay | OrderState::PayError => {}
    }
    if order.prepay_id != prepay_id || now - order.prepay_created_at >= PREPAY_TTL {
        return Err(SimError::PrepayExpired);
    }
    if order.time_expire.is_some_and(|t| now >= t) {
        return Err(SimError::PrepayExpired);
    }
    Ok(())
}

impl Simulator {
    /// The shopper acts on a prepay, exactly as `POST {own}/shopper/pay` does.
    pub async fn pay(&self, prepay_id: &str, outcome: Outcome) -> Result<PayResult, SimError> {
        self.pay_now(prepay_id, outcome)
    }

    /// [`Simulator::pay`] for synchronous callers (the HTTP route).
    pub(crate) fn pay_now(&self, prepay_id: &str, outcome: Outcome) -> Result<PayResult, SimError> {
        let (result, deliver) = self.write(|s| {
            let now = clock(s.clock_offset_ms);
            let key = s.prepay_index.get(prepay_id).cloned().ok_or(SimError::UnknownPrepay)?;
            let order = s.orders.get_mut(&key).ok_or(SimError::UnknownPrepay)?;
            payable(order, prepay_id, now)?;
            let mut deliver = None;
            match outcome {
                Outcome::Cancel => {}
                Outcome::Fail => order.state = OrderState::PayError,
                Outcome::Ok => {
                    order.state = OrderState::Success;
                    order.transaction_id = Some(ids::transaction_id(now));
                    order.time_end = Some(now);
                    order.bank_type = Some("OTHERS".into());
                    if let Some(body) = notify_body::payment_notify(self, order, now) {
                        order.notify = notify::new_job(&order.notify_url, body, self.roll_notify(), order.api);
                        deliver = Some(Target::Payment(key.clone()));
                    }
                }
            }
            let result = PayResult {
                out_trade_no: order.out_trade_no.clone(),
                trade_state: order.trade_state().to_owned(),
                transaction_id: order.transaction_id.clone(),
            };
            let url = order.notify.url.clone();
            let dropped = order.notify.status == super::model::NotifyStatus::Dropped;
            let api = order.api;
            s.reindex(&key);
            if let Some(target) = &deliver
                && dropped
            {
                s.log_attempt(notify::dropped_attempt(now, target, &url, api));
                deliver = None;
            }
            Ok((result, deliver))
        })?;
        if let Some(target) = deliver {
            notify::spawn_delivery(self, target);
        }
        Ok(result)
    }
}

#[derive(Deserialize)]
struct PayRequest {
    prepay_id: String,
    outcome: Outcome,
}

#[post("/shopper/pay", data = "<data>")]
async fn post_pay(sim: &State<Mounted>, data: Data<'_>) -> JsonReply {
    let req: PayRequest = match read_json(data).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    match sim.0.pay_now(&req.prepay_id, req.outcome) {
        Ok(result) => json_ok(json!(result)),
        Err(e) => {
            let status = Status::from_code(e.http_status()).unwrap_or(Status::BadRequest);
            json_status(status, json!({ "error": e.to_string(), "code": e.code() }))
        }
    }
}

pub(crate) fn routes() -> Vec<Route> {
    routes![post_pay]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::config::SimulatorConfig;

    #[tokio::test]
    async fn unknown_prepays_are_refused() {
        let sim = Simulator::new(SimulatorConfig::default()).unwrap();
        assert_eq!(sim.pay("wx_nope", Outcome::Ok).await, Err(SimError::UnknownPrepay));
        assert_eq!(SimError::UnknownPrepay.http_status(), 404);
        assert_eq!(serde_json::to_string(&Outcome::Cancel).unwrap(), "\"cancel\"");
    }
}
