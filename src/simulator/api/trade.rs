//! The business operations both protocols share: placing an order (with reentry), closing one,
//! and creating a refund. Each takes typed inputs and answers with the v2 business error
//! (`err_code` and its description); the v2 layer sends it as is and the v3 layer translates it
//! into a v3 code and HTTP status. One state, one set of rules, whichever protocol asks.

use chrono::{DateTime, Utc};

use super::envelope::BizError;
use super::refund::{AMOUNTS_DIFFER, check_new_refund, param, schedule_settlement};
use super::unified_order::{Reentry, reentry};
use crate::simulator::model::{ApiVersion, OrderKey, OrderState, SimOrder, SimRefund, SimRefundStatus};
use crate::simulator::sim::clock;
use crate::simulator::state::SimState;
use crate::simulator::{Simulator, ids};
use crate::wxpay::money::Fen;

/// How a request names an order.
#[derive(Clone, Copy, Debug)]
pub(crate) enum OrderRef<'a> {
    Transaction(&'a str),
    OutTradeNo(&'a str),
}

/// The order a merchant's reference names, or ORDERNOTEXIST.
pub(crate) fn find(state: &SimState, mch_id: &str, order: OrderRef<'_>) -> Result<OrderKey, BizError> {
    let key = match order {
        OrderRef::Transaction(tx) => state.find_by_transaction(mch_id, tx),
        OrderRef::OutTradeNo(no) => state.find_by_out_trade_no(mch_id, no),
    };
    key.ok_or_else(|| BizError::new("ORDERNOTEXIST", "order not exist"))
}

/// Stores `order`, new, unless its out_trade_no exists: then the reentry rules decide (the same
/// order, its prepay_id renewed after two hours, or a refusal). Returns the order as it now is.
pub(crate) fn place_order(state: &mut SimState, order: SimOrder, now: DateTime<Utc>) -> Result<SimOrder, Reentry> {
    let key = (order.mch_id.clone(), order.out_trade_no.clone());
    if let Some(existing) = state.orders.get_mut(&key) {
        return match reentry(existing, &order.request, now) {
            Reentry::Same => Ok(existing.clone()),
            Reentry::Renew => {
                existing.prepay_id = ids::prepay_id(now);
                existing.prepay_created_at = now;
                let renewed = existing.clone();
                state.reindex(&key);
                Ok(renewed)
            }
            refused => Err(refused),
        };
    }
    state.insert_order(order.clone());
    Ok(order)
}

/// Closes an unpaid order at least `close_min_age` old (see `api::query`).
pub(crate) fn close(sim: &Simulator, mch_id: &str, out_trade_no: &str) -> Result<(), BizError> {
    let min_age = chrono::Duration::from_std(sim.config().close_min_age).unwrap_or(chrono::Duration::MAX);
    sim.write(|state| {
        let now = clock(state.clock_offset_ms);
        let key = state
            .find_by_out_trade_no(mch_id, out_trade_no)
            .ok_or_else(|| BizError::new("ORDERNOTEXIST", "订单不存在"))?;
        let order = state.orders.get_mut(&key).ok_or_else(|| BizError::new("ORDERNOTEXIST", "订单不存在"))?;
        match order.state {
            OrderState::Success => return Err(BizError::new("ORDERPAID", "订单已支付，不能发起关单")),
            OrderState::Closed => return Err(BizError::new("ORDERCLOSED", "订单已关闭，无法重复关闭")),
            OrderState::NotPay | OrderState::PayError => {}
        }
        if now - order.created_at < min_age {
            let minutes = min_age.num_minutes().max(1);
            return Err(BizError::new("TRADE_STATE_ERROR", format!("订单创建后{minutes}分钟内不能关单")));
        }
        order.state = OrderState::Closed;
        order.closed_at = Some(now);
        Ok(())
    })
}

/// A refund request that passed its protocol's format rules.
#[derive(Clone, Debug)]
pub(crate) struct RefundDraft {
    pub mch_id: String,
    pub out_refund_no: String,
    pub total_fee: Fen,
    pub refund_fee: Fen,
    /// `REFUND_SOURCE_UNSETTLED_FUNDS` or `REFUND_SOURCE_RECHARGE_FUNDS`.
    pub account: String,
    pub desc: Option<String>,
    pub notify_url: Option<String>,
    pub api: ApiVersion,
}

/// A refund and its order, as they stand after [`apply_refund`].
#[derive(Clone, Debug)]
pub(crate) struct RefundDone {
    pub order: SimOrder,
    pub refund: SimRefund,
}

/// Creates a refund, or returns the one its out_refund_no already made when the amounts agree
/// (refunds are idempotent by out_refund_no); a new one settles after the settle delay.
pub(crate) fn apply_refund(sim: &Simulator, order: OrderRef<'_>, draft: RefundDraft) -> Result<RefundDone, BizError> {
    let min_interval = chrono::Duration::from_std(sim.config().refund_min_interval).unwrap_or(chrono::Duration::MAX);
    let (done, created) = sim.write(|state| {
        let now = clock(state.clock_offset_ms);
        let key = find(state, &draft.mch_id, order)?;
        if let Some(other_key) = state.refund_index.get(&(draft.mch_id.clone(), draft.out_refund_no.clone())) {
            let order = state.orders.get(other_key).ok_or_else(|| param(AMOUNTS_DIFFER))?;
            let existing = order.refunds.iter().find(|r| r.out_refund_no == draft.out_refund_no);
            return match existing {
                Some(r)
                    if *other_key == key && r.refund_fee == draft.refund_fee && order.total_fee == draft.total_fee =>
                {
                    Ok((RefundDone { order: order.clone(), refund: r.clone() }, None))
                }
                _ => Err(param(AMOUNTS_DIFFER)),
            };
        }
        let order = state.orders.get_mut(&key).ok_or_else(|| BizError::new("ORDERNOTEXIST", "订单不存在"))?;
        if order.state != OrderState::Success {
            return Err(BizError::new("ORDERNOTEXIST", "订单不存在或未支付，不能退款"));
        }
        check_new_refund(order, draft.total_fee, draft.refund_fee, now, min_interval)?;
        let refund = SimRefund {
            out_refund_no: draft.out_refund_no.clone(),
            refund_id: ids::refund_id(now),
            refund_fee: draft.refund_fee,
            status: SimRefundStatus::Processing,
            refund_account: draft.account.clone(),
            refund_desc: draft.desc.clone(),
            notify_url: draft.notify_url.clone(),
            created_at: now,
            success_time: None,
            notify: Default::default(),
            api: draft.api,
        };
        order.refunds.push(refund.clone());
        let done = RefundDone { order: order.clone(), refund };
        state.reindex(&key);
        Ok((done, Some(key)))
    })?;
    if let Some(key) = created {
        schedule_settlement(sim, key, draft.out_refund_no);
    }
    Ok(done)
}
