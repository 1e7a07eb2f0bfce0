//! `/pay/orderquery` and `/pay/closeorder`.
//!
//! closeorder refuses orders younger than `close_min_age` (5 minutes by default) with
//! TRADE_STATE_ERROR "订单创建后5分钟内不能关单". WeChat's documentation only says not to close
//! within 5 minutes; enforcing it makes a product that closes too early fail in tests, not later.

use super::envelope::{ApiRequest, BizError, BizFields};
use super::trade::{OrderRef, close, find};
use crate::simulator::Simulator;
use crate::simulator::model::{OrderKey, OrderState, SimOrder};
use crate::simulator::state::SimState;
use crate::wxpay::time;

/// Finds the order a request names: transaction_id wins over out_trade_no.
pub(crate) fn find_order(state: &SimState, req: &ApiRequest) -> Result<OrderKey, BizError> {
    let order = if let Some(tx) = req.get("transaction_id") {
        OrderRef::Transaction(tx)
    } else if let Some(no) = req.get("out_trade_no") {
        OrderRef::OutTradeNo(no)
    } else {
        return Err(BizError::new("LACK_PARAMS", "缺少参数out_trade_no或transaction_id"));
    };
    find(state, &req.merchant.mch_id, order)
}

pub(crate) fn trade_state_desc(order: &SimOrder) -> &'static str {
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
    let no = req.require("out_trade_no")?;
    close(sim, &req.merchant.mch_id, no)?;
    Ok(vec![("result_msg", "OK".to_owned())])
}
