//! The v3 refund endpoints over the shared refund rules (`apply_refund`: limits, idempotency by
//! out_refund_no, settlement), and the `Refund` object of their answers.
//!
//! The v2 refusals become v3 ones: unknown or unpaid order `404 RESOURCE_NOT_EXISTS`, more than
//! is left or too old an order `400 INVALID_REQUEST`, two refunds within the minimum interval
//! `429 FREQUENCY_LIMITED`, amounts that differ from the order or from the first request with
//! that out_refund_no `400 PARAM_ERROR`. `funds_account` `AVAILABLE` is v2's
//! `REFUND_SOURCE_RECHARGE_FUNDS`, `UNSETTLED` (the default) its unsettled funds.

use super::answer::{Answer, V3Error};
use super::request::{json_object, strict, without};
use crate::simulator::Simulator;
use crate::simulator::api::{BizError, OrderRef, RefundDraft, apply_refund};
use crate::simulator::config::SimV3Merchant;
use crate::simulator::model::{ApiVersion, SimOrder, SimRefund, SimRefundStatus};
use crate::wxpay::money::Fen;
use crate::wxpay::types::is_valid_merchant_no;
use crate::wxpay::unified_order::validate_notify_url;
use crate::wxpay::v3::models::{RefundObject, RefundObjectAmount, RefundRequest, format_time};

/// Documented optional fields the simulator accepts and ignores.
const REFUND_EXTRAS: [&str; 2] = ["/goods_detail", "/amount/from"];

const RECHARGE_FUNDS: &str = "REFUND_SOURCE_RECHARGE_FUNDS";

/// A v3 refund status: CHANGE is ABNORMAL and REFUNDCLOSE is CLOSED.
pub(crate) fn status_of(status: SimRefundStatus) -> &'static str {
    match status {
        SimRefundStatus::Processing => "PROCESSING",
        SimRefundStatus::Success => "SUCCESS",
        SimRefundStatus::Change => "ABNORMAL",
        SimRefundStatus::RefundClose => "CLOSED",
    }
}

/// The `Refund` object of create and query answers.
pub(crate) fn refund_object(order: &SimOrder, refund: &SimRefund) -> RefundObject {
    let (total, amount) = (order.total_fee.get(), refund.refund_fee.get());
    let funds = if refund.refund_account == RECHARGE_FUNDS { "AVAILABLE" } else { "UNSETTLED" };
    RefundObject {
        refund_id: refund.refund_id.clone(),
        out_refund_no: refund.out_refund_no.clone(),
        transaction_id: order.transaction_id.clone().unwrap_or_default(),
        out_trade_no: order.out_trade_no.clone(),
        channel: Some("ORIGINAL".into()),
        user_received_account: Some("支付用户零钱".into()),
        success_time: refund.success_time.filter(|_| refund.status == SimRefundStatus::Success).map(format_time),
        create_time: Some(format_time(refund.created_at)),
        status: status_of(refund.status).to_owned(),
        funds_account: Some(funds.to_owned()),
        amount: RefundObjectAmount {
            total,
            refund: amount,
            payer_total: Some(total),
            payer_refund: Some(amount),
            settlement_refund: Some(amount),
            settlement_total: Some(total),
            discount_refund: Some(0),
            currency: Some("CNY".into()),
        },
    }
}

/// The v3 form of a refund refusal.
fn translate(e: BizError) -> V3Error {
    match e.code {
        "ORDERNOTEXIST" => V3Error::new(404, "RESOURCE_NOT_EXISTS", "订单不存在"),
        "INVALID_REQ_TOO_MUCH" => V3Error::new(429, "FREQUENCY_LIMITED", e.des),
        "NOTENOUGH" => V3Error::new(403, "NOT_ENOUGH", "基本账户余额不足，请充值后重新发起"),
        "PARAM_ERROR" | "LACK_PARAMS" => V3Error::new(400, "PARAM_ERROR", e.des),
        "SYSTEMERROR" => V3Error::system(),
        // ERROR (more than is left, 50 refunds) and TRADE_OVERDUE.
        _ => V3Error::new(400, "INVALID_REQUEST", e.des),
    }
}

/// The format rules, into the draft the shared rules take.
fn draft(sim: &Simulator, merchant: &SimV3Merchant, req: &RefundRequest) -> Result<RefundDraft, V3Error> {
    if !is_valid_merchant_no(&req.out_refund_no, 64) {
        return Err(V3Error::param("/body/out_refund_no", "须为1至64位数字、大小写字母或_-|*@"));
    }
    if req.reason.as_deref().is_some_and(|r| r.len() > 80) {
        return Err(V3Error::param("/body/reason", "长度超过80字节"));
    }
    if let Some(url) = &req.notify_url
        && (url.chars().any(char::is_whitespace) || validate_notify_url(url).is_err())
    {
        return Err(V3Error::param("/body/notify_url", "须为不带参数的绝对http(s)地址"));
    }
    if req.notify_url.as_deref().is_some_and(|u| !sim.config().allows_callback(u)) {
        return Err(V3Error::param("/body/notify_url", "模拟器只向本应用自己的地址发送通知"));
    }
    let account = match req.funds_account.as_deref() {
        None | Some("UNSETTLED") => "REFUND_SOURCE_UNSETTLED_FUNDS",
        Some("AVAILABLE") => RECHARGE_FUNDS,
        Some(_) => return Err(V3Error::param("/body/funds_account", "仅支持AVAILABLE或UNSETTLED")),
    };
    for (field, value) in [("/body/amount/refund", req.amount.refund), ("/body/amount/total", req.amount.total)] {
        if value < 1 {
            return Err(V3Error::param(field, "须为不小于1的整数（分）"));
        }
    }
    if req.amount.currency != "CNY" {
        return Err(V3Error::param("/body/amount/currency", "境内商户仅支持CNY"));
    }
    Ok(RefundDraft {
        mch_id: merchant.mch_id.clone(),
        out_refund_no: req.out_refund_no.clone(),
        total_fee: Fen::new(req.amount.total),
        refund_fee: Fen::new(req.amount.refund),
        account: account.to_owned(),
        desc: req.reason.clone(),
        notify_url: req.notify_url.clone(),
        api: ApiVersion::V3,
    })
}

/// `POST /v3/refund/domestic/refunds`: accepted as PROCESSING; the same out_refund_no again
/// answers the refund it made.
pub(crate) fn create(sim: &Simulator, merchant: &SimV3Merchant, body: &[u8]) -> Result<Answer, V3Error> {
    let req: RefundRequest = strict(without(json_object(body)?, &REFUND_EXTRAS))?;
    let order = match (req.transaction_id.as_deref(), req.out_trade_no.as_deref()) {
        (Some(tx), _) if !tx.is_empty() => OrderRef::Transaction(tx),
        (_, Some(no)) if !no.is_empty() => OrderRef::OutTradeNo(no),
        _ => return Err(V3Error::param("/body/out_trade_no", "transaction_id与out_trade_no须二选一")),
    };
    let draft = draft(sim, merchant, &req)?;
    let done = apply_refund(sim, order, draft).map_err(translate)?;
    Ok(Answer::json(&refund_object(&done.order, &done.refund)))
}

/// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
pub(crate) fn query(sim: &Simulator, merchant: &SimV3Merchant, out_refund_no: &str) -> Result<Answer, V3Error> {
    sim.read(|state| {
        let not_found = || V3Error::new(404, "RESOURCE_NOT_EXISTS", "退款单不存在");
        let key = state.refund_index.get(&(merchant.mch_id.clone(), out_refund_no.to_owned())).ok_or_else(not_found)?;
        let order = state.orders.get(key).ok_or_else(not_found)?;
        let refund = order.refunds.iter().find(|r| r.out_refund_no == out_refund_no).ok_or_else(not_found)?;
        Ok(Answer::json(&refund_object(order, refund)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_translate_into_v3_codes_and_statuses() {
        let cases = [
            ("ORDERNOTEXIST", 404, "RESOURCE_NOT_EXISTS"),
            ("ERROR", 400, "INVALID_REQUEST"),
            ("TRADE_OVERDUE", 400, "INVALID_REQUEST"),
            ("INVALID_REQ_TOO_MUCH", 429, "FREQUENCY_LIMITED"),
            ("PARAM_ERROR", 400, "PARAM_ERROR"),
            ("NOTENOUGH", 403, "NOT_ENOUGH"),
            ("SYSTEMERROR", 500, "SYSTEM_ERROR"),
        ];
        for (v2, status, v3) in cases {
            let e = translate(BizError::new(v2, "x"));
            assert_eq!((e.status, e.code), (status, v3), "{v2}");
        }
        assert_eq!(status_of(SimRefundStatus::Change), "ABNORMAL");
        assert_eq!(status_of(SimRefundStatus::RefundClose), "CLOSED");
    }
}
