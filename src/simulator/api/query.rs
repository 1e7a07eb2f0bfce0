//! `/pay/orderquery` and `/pay/closeorder`.
//!
//! closeorder refuses orders younger than `close_min_age` (5 minutes by default) with
//! TRADE_STATE_ERROR "订单创建后5分钟内不能关单". WeChat's documentation only says not to close
//! within 5 minutes; enforcing it makes a product that closes too early fail in tests, not later.

use super::envelope::{ApiRequest, BizError, BizFields};
use crate::simulator::Simulator;
use crate::simulator::model::{OrderKey, OrderState, SimOrder};
use crate::simulator::sim::clock;
use crate::simulator::state::SimState;
use crate::wxpay::time;

/// Finds the order a request names: transaction_id wins over out_trade_no.
pub(crate) fn find_order(state: &SimState, req: &ApiRequest) -> Result<OrderKey, BizError> {
    let mch_id = &req.merchant.mch_id;
    let key = if let Some(tx) = req.get("transaction_id") {
        state.find_by_transaction(mch_id, tx)
    } else if let Some(no) = req.get("out_trade_no") {
        state.find_by_out_trade_no(mch_id, no)
    } else {
        return Err(BizError::new("LACK_PARAMS", "缺少参数out_trade_no或transaction_id"));
    };
    key.ok_or_else(|| BizError::new("ORDERNOTEXIST", "order not exist"))
}

fn trade_state_desc(order: &SimOrder) -> &'static str {
    match order.trade_state() {
        "SUCCESS" => "支付成功",
        "REFUND" => "订单发生过退款",
        "CLOSED" => "订单已关闭",
        "PAYERROR" => "支付失败，请重新下单支付",
        _ => "订单未支付",
    }
}

pub(crate) fn order_query(sim: &Simulator, req: &ApiRequest) -> Result<BizFields, BizError> {
    sim.read(|state| {
        let key = find_order(state, req)?;
        let order = state.orders.get(&key).ok_or_else(|| BizError::new("ORDERNOTEXIST", "order not exist"))?;
        let mut f: BizFields = vec![
            ("trade_state", order.trade_state().to_owned()),
            ("trade_state_desc", trade_state_desc(order).to_owned()),
            ("out_trade_no", order.out_trade_no.clone()),
            ("attach", order.attach.clone().unwrap_or_default()),
            ("total_fee", order.total_fee.to_string()),
            ("fee_type", order.fee_type.clone()),
            ("trade_type", order.trade_type.clone()),
            ("openid", order.openid.clone().unwrap_or_default()),
            ("device_info", order.device_info.clone().unwrap_or_default()),
        ];
        if order.state == OrderState::Success {
            f.extend([
                ("transaction_id", order.transaction_id.clone().unwrap_or_default()),
                ("bank_type", order.bank_type.clone().unwrap_or_default()),
                ("cash_fee", order.total_fee.to_string()),
                ("cash_fee_type", "CNY".to_owned()),
                ("time_end", order.time_end.map(time::format_compact).unwrap_or_default()),
                ("is_subscribe", "N".to_owned()),
            ]);
        }
        Ok(f)
    })
}

pub(crate) fn close_order(sim: &Simulator, req: &ApiRequest) -> Result<BizFields, BizError> {
    let min_age = chrono::Duration::from_std(sim.config().close_min_age).unwrap_or(chrono::Duration::MAX);
    sim.write(|state| {
        let now = clock(state.clock_offset_ms);
        let no = req.require("out_trade_no")?;
        let key = state
            .find_by_out_trade_no(&req.merchant.mch_id, no)
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
        Ok(vec![("result_msg", "OK".to_owned())])
    })
}
