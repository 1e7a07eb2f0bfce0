//! Asking WeChat (`orderquery`) when we are unsure, and applying the answer through the same
//! transition as a notify. The caller gets WeChat's answer typed, beside the order as it now is.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use super::Payments;
use super::apply::{Change, apply_change, confirm_payment};
use crate::db::{AnyConnection, DbError, events, orders};
use crate::domain::{Order, OrderState, PaymentFacts, PaymentSource, TimelineKind, TimelineSource};
use crate::error::AppError;
use crate::wxpay::ErrCode;
use crate::wxpay::order_query::{OrderQuery, OrderQueryReply};
use crate::wxpay::types::TradeState;

/// At most one orderquery per order in this interval for status polls (several browser tabs
/// polling must not hammer WeChat).
const MIN_QUERY_GAP: Duration = Duration::from_secs(3);

/// How many orders the status-poll throttle remembers at most.
const THROTTLE_CAPACITY: usize = 10_000;

/// What WeChat said when asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryAnswer {
    /// The order's trade state at WeChat.
    Trade { state: TradeState, description: Option<String> },
    /// `ORDERNOTEXIST`: WeChat has no such order (it never got a prepay).
    NotExist,
    /// Not asked: another query ran within the last few seconds.
    Skipped,
}

/// The order after a query, and what WeChat answered.
#[derive(Clone, Debug)]
pub struct Refreshed {
    pub order: Order,
    pub answer: QueryAnswer,
}

/// When this process last queried WeChat for a status poll, per order. Kept in memory rather
/// than in the database so that a poll which does not query writes nothing; per process, so
/// several instances may each ask once per gap, well within WeChat's limits.
pub struct QueryThrottle {
    last: Mutex<HashMap<String, Instant>>,
    capacity: usize,
}

impl Default for QueryThrottle {
    fn default() -> QueryThrottle {
        QueryThrottle::new(THROTTLE_CAPACITY)
    }
}

impl QueryThrottle {
    pub fn new(capacity: usize) -> QueryThrottle {
        QueryThrottle { last: Mutex::new(HashMap::new()), capacity }
    }

    /// Claims a query of `out_trade_no` at `now`, unless one was claimed within `gap`. When full,
    /// it forgets entries older than `gap` (they would allow a query anyway); still full, it
    /// refuses, and those orders are left to the poller job.
    fn claim(&self, out_trade_no: &str, now: Instant, gap: Duration) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(at) = last.get(out_trade_no) {
            if now.saturating_duration_since(*at) < gap {
                return false;
            }
        } else if last.len() >= self.capacity {
            last.retain(|_, at| now.saturating_duration_since(*at) < gap);
            if last.len() >= self.capacity {
                return false;
            }
        }
        last.insert(out_trade_no.to_owned(), now);
        true
    }
}

impl Payments {
    /// The order's state, for the page polling it. Read-only, except when a query of WeChat is
    /// due (a paying order, not asked within [`MIN_QUERY_GAP`]) and its answer changes the order.
    pub async fn status(&self, out_trade_no: &str) -> Result<Order, AppError> {
        let order = self.load(out_trade_no).await?;
        if order.state != OrderState::Paying || !self.poll_query_due(&order) {
            return Ok(order);
        }
        Ok(self.query_and_apply(out_trade_no, Some(order)).await?.order)
    }

    /// Queries WeChat and applies the result, recording the query on the order's timeline.
    /// Unless `force`, this is a status poll: skipped when a query ran within [`MIN_QUERY_GAP`],
    /// and writing only what the answer changes.
    pub async fn refresh_from_wechat(&self, out_trade_no: &str, force: bool) -> Result<Refreshed, AppError> {
        if !force {
            let order = self.load(out_trade_no).await?;
            if !self.poll_query_due(&order) {
                return Ok(Refreshed { order, answer: QueryAnswer::Skipped });
            }
            return self.query_and_apply(out_trade_no, Some(order)).await;
        }
        let no = out_trade_no.to_owned();
        self.db.write(move |c| orders::claim_query_slot(c, &no, crate::db::now(), chrono::Duration::zero())).await?;
        self.query_and_apply(out_trade_no, None).await
    }

    /// Whether a status poll may ask WeChat about `order` now: not within the gap of this
    /// process's last poll query, nor of a recorded query (a job's or staff's, any instance).
    fn poll_query_due(&self, order: &Order) -> bool {
        let recorded_recently = order
            .last_queried_at
            .is_some_and(|at| (Utc::now() - at).to_std().is_ok_and(|elapsed| elapsed < MIN_QUERY_GAP));
        !recorded_recently && self.query_throttle.claim(&order.out_trade_no, Instant::now(), MIN_QUERY_GAP)
    }

    /// Asks WeChat and applies the answer. `polled` is the order a status poll read: then an
    /// answer that changes nothing writes nothing, and that order is returned as it is.
    async fn query_and_apply(&self, out_trade_no: &str, polled: Option<Order>) -> Result<Refreshed, AppError> {
        let reply = match self.gateway.order_query(&OrderQuery::by_out_trade_no(out_trade_no)).await {
            Ok(r) => r,
            Err(e) if e.err_code() == Some(ErrCode::ORDERNOTEXIST) => {
                if let Some(order) = polled {
                    return Ok(Refreshed { order, answer: QueryAnswer::NotExist });
                }
                let no = out_trade_no.to_owned();
                let detail = json!({ "result": "ORDERNOTEXIST" });
                self.db.write(move |c| insert_query_event(c, &no, &detail)).await?;
                return Ok(Refreshed { order: self.load(out_trade_no).await?, answer: QueryAnswer::NotExist });
            }
            Err(e) => return Err(AppError::Gateway(e)),
        };
        let payment = match (reply.trade_state.is_paid(), reply.payment()) {
            (true, None) => {
                return Err(AppError::Internal(format!("orderquery of {out_trade_no}: paid without payment")));
            }
            (_, payment) => payment.map(|p| PaymentFacts {
                transaction_id: p.transaction_id,
                total_fee: p.total_fee,
                paid_at: p.time_end.unwrap_or_else(Utc::now),
                source: PaymentSource::Query,
            }),
        };
        let answer = QueryAnswer::Trade { state: reply.trade_state, description: reply.trade_state_desc.clone() };
        if let Some(order) = polled
            && payment.is_none()
            && change_for(reply.trade_state).is_none()
        {
            return Ok(Refreshed { order, answer });
        }
        let (no, outbox) = (out_trade_no.to_owned(), self.outbox.clone());
        self.db.write(move |c| apply_reply(c, &no, &reply, payment.as_ref(), &outbox)).await?;
        Ok(Refreshed { order: self.load(out_trade_no).await?, answer })
    }
}

/// What a trade state without a payment does to an order.
fn change_for(state: TradeState) -> Option<Change> {
    match state {
        TradeState::Closed | TradeState::Revoked => Some(Change::Closed),
        TradeState::PayError => Some(Change::PaymentFailed),
        // Paid states carry a payment; the waiting ones change nothing.
        TradeState::Success | TradeState::Refund | TradeState::NotPay | TradeState::UserPaying | TradeState::Accept => {
            None
        }
    }
}

/// Records the query and applies what it says, in one transaction.
fn apply_reply(
    c: &mut AnyConnection,
    no: &str,
    reply: &OrderQueryReply,
    payment: Option<&PaymentFacts>,
    outbox: &super::outbox::WebhookOutbox,
) -> Result<(), DbError> {
    let state = reply.trade_state;
    let detail = json!({ "trade_state": state.as_str(), "trade_state_desc": reply.trade_state_desc });
    insert_query_event(c, no, &detail)?;
    if let Some(facts) = payment {
        confirm_payment(c, no, facts, outbox)?;
        return Ok(());
    }
    if let Some(change) = change_for(state) {
        apply_change(c, no, change, TimelineSource::Query, json!({ "trade_state": state.as_str() }), outbox)?;
    }
    Ok(())
}

/// A timeline entry for every recorded query, whether or not it changed the order.
fn insert_query_event(c: &mut AnyConnection, out_trade_no: &str, detail: &serde_json::Value) -> Result<(), DbError> {
    events::insert(c, out_trade_no, TimelineKind::Queried, TimelineSource::Query, (None, None), detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_allows_one_query_per_gap_per_order() {
        let throttle = QueryThrottle::new(10);
        let (t0, gap) = (Instant::now(), Duration::from_secs(3));
        assert!(throttle.claim("A", t0, gap));
        assert!(!throttle.claim("A", t0 + Duration::from_millis(2_999), gap));
        assert!(throttle.claim("B", t0, gap), "another order has its own slot");
        assert!(throttle.claim("A", t0 + gap, gap));
    }

    #[test]
    fn the_throttle_stays_bounded() {
        let throttle = QueryThrottle::new(2);
        let (t0, gap) = (Instant::now(), Duration::from_secs(3));
        assert!(throttle.claim("A", t0, gap) && throttle.claim("B", t0, gap));
        assert!(!throttle.claim("C", t0 + Duration::from_secs(1), gap), "full of live entries: refused");
        assert!(throttle.claim("C", t0 + gap, gap), "stale entries are forgotten to make room");
        assert!(throttle.last.lock().unwrap().len() <= 2);
    }
}
