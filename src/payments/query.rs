//! Asking WeChat (`orderquery`) when we are unsure, and applying the answer through the same
//! transition as a notify. The caller gets WeChat's answer typed, beside the order as it now is.

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

/// At most one orderquery per order in this interval, across all instances (status polling
/// from several browser tabs must not hammer WeChat).
const MIN_QUERY_GAP: chrono::Duration = chrono::Duration::seconds(3);

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

impl Payments {
    /// The order's state, refreshed from WeChat when it is still waiting for a payment.
    pub async fn status(&self, out_trade_no: &str) -> Result<Order, AppError> {
        let order = self.load(out_trade_no).await?;
        if matches!(order.state, OrderState::Paying) {
            return Ok(self.refresh_from_wechat(out_trade_no, false).await?.order);
        }
        Ok(order)
    }

    /// Queries WeChat and applies the result. Unless `force`, skips the query when another one
    /// ran within [`MIN_QUERY_GAP`].
    pub async fn refresh_from_wechat(&self, out_trade_no: &str, force: bool) -> Result<Refreshed, AppError> {
        let no = out_trade_no.to_owned();
        let claimed = self.db.write(move |c| orders::claim_query_slot(c, &no, crate::db::now(), MIN_QUERY_GAP)).await?;
        if !claimed && !force {
            return Ok(Refreshed { order: self.load(out_trade_no).await?, answer: QueryAnswer::Skipped });
        }
        let reply = match self.gateway.order_query(&OrderQuery::by_out_trade_no(out_trade_no)).await {
            Ok(r) => r,
            Err(e) if e.err_code() == Some(ErrCode::ORDERNOTEXIST) => {
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
        let (no, outbox) = (out_trade_no.to_owned(), self.outbox.clone());
        self.db.write(move |c| apply_reply(c, &no, &reply, payment.as_ref(), &outbox)).await?;
        Ok(Refreshed { order: self.load(out_trade_no).await?, answer })
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
    let change = match state {
        TradeState::Success | TradeState::Refund => return Ok(()),
        TradeState::Closed | TradeState::Revoked => Change::Closed,
        TradeState::PayError => Change::PaymentFailed,
        TradeState::NotPay | TradeState::UserPaying | TradeState::Accept => return Ok(()),
    };
    apply_change(c, no, change, TimelineSource::Query, json!({ "trade_state": state.as_str() }))?;
    Ok(())
}

/// A timeline entry for every query, whether or not it changed the order.
fn insert_query_event(c: &mut AnyConnection, out_trade_no: &str, detail: &serde_json::Value) -> Result<(), DbError> {
    events::insert(c, out_trade_no, TimelineKind::Queried, TimelineSource::Query, (None, None), detail)
}
