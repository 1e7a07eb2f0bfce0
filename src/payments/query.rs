//! Asking WeChat (`orderquery`) when we are unsure, and applying the answer through the same
//! transition as a notify.

use chrono::Utc;
use serde_json::json;

use super::Payments;
use super::apply::{PaymentFacts, apply_event, confirm_payment};
use crate::db::events;
use crate::db::orders::{self, Order, OrderChanges};
use crate::domain::{Event, OrderState, PaymentSource};
use crate::error::AppError;
use crate::wxpay::ErrCode;
use crate::wxpay::order_query::OrderQuery;
use crate::wxpay::types::TradeState;

/// At most one orderquery per order in this interval, across all instances (status polling
/// from several browser tabs must not hammer WeChat).
const MIN_QUERY_GAP: chrono::Duration = chrono::Duration::seconds(3);

impl Payments {
    /// The order's state, refreshed from WeChat when it is still waiting for a payment.
    pub async fn status(&self, out_trade_no: &str) -> Result<Order, AppError> {
        let order = self.load(out_trade_no).await?;
        if matches!(order.state, OrderState::Paying) {
            return self.refresh_from_wechat(out_trade_no, false).await;
        }
        Ok(order)
    }

    /// Queries WeChat and applies the result. Unless `force`, skips the query when another one
    /// ran within [`MIN_QUERY_GAP`].
    pub async fn refresh_from_wechat(&self, out_trade_no: &str, force: bool) -> Result<Order, AppError> {
        let no = out_trade_no.to_owned();
        let claimed = self.db.write(move |c| orders::claim_query_slot(c, &no, crate::db::now(), MIN_QUERY_GAP)).await?;
        if !claimed && !force {
            return self.load(out_trade_no).await;
        }
        let reply = match self.gateway.order_query(&OrderQuery::by_out_trade_no(out_trade_no)).await {
            Ok(r) => r,
            Err(e) if e.err_code() == Some(ErrCode::ORDERNOTEXIST) => {
                self.record_query(out_trade_no, json!({ "result": "ORDERNOTEXIST" })).await?;
                return self.load(out_trade_no).await;
            }
            Err(e) => return Err(AppError::Gateway(e)),
        };
        let no = out_trade_no.to_owned();
        let state = reply.trade_state;
        let detail = json!({ "trade_state": state.as_str(), "trade_state_desc": reply.trade_state_desc });
        self.db
            .write(move |c| -> Result<(), crate::db::DbError> {
                insert_query_event(c, &no, &detail)?;
                match state {
                    TradeState::Success | TradeState::Refund => {
                        let facts = PaymentFacts {
                            transaction_id: reply.transaction_id.clone().unwrap_or_default(),
                            total_fee: reply.total_fee.unwrap_or_default(),
                            paid_at: reply.time_end.unwrap_or_else(Utc::now),
                            source: PaymentSource::Query,
                        };
                        confirm_payment(c, &no, &facts)?;
                    }
                    TradeState::Closed | TradeState::Revoked => {
                        apply_event(
                            c,
                            &no,
                            &Event::Closed,
                            None,
                            OrderChanges::default(),
                            "query",
                            json!({"trade_state": state.as_str()}),
                        )?;
                    }
                    TradeState::PayError => {
                        apply_event(
                            c,
                            &no,
                            &Event::PaymentFailed,
                            None,
                            OrderChanges::default(),
                            "query",
                            json!({"trade_state": state.as_str()}),
                        )?;
                    }
                    TradeState::NotPay | TradeState::UserPaying | TradeState::Accept => {}
                }
                Ok(())
            })
            .await?;
        self.load(out_trade_no).await
    }

    async fn record_query(&self, out_trade_no: &str, detail: serde_json::Value) -> Result<(), AppError> {
        let no = out_trade_no.to_owned();
        self.db.write(move |c| insert_query_event(c, &no, &detail)).await?;
        Ok(())
    }
}

/// A timeline entry for every query, whether or not it changed the order.
fn insert_query_event(
    c: &mut crate::db::AnyConnection,
    out_trade_no: &str,
    detail: &serde_json::Value,
) -> Result<(), crate::db::DbError> {
    events::insert(
        c,
        &events::NewEvent {
            out_trade_no,
            kind: "queried",
            from_state: None,
            to_state: None,
            source: "query",
            detail: detail.to_string(),
            created_at: crate::db::now(),
        },
    )
}
