//! The v3 order endpoints over the shared business rules: JSAPI prepay (`place_order`: reentry,
//! the two-hour prepay_id), query by out_trade_no or transaction_id (the `Transaction` shape), and
//! close (`close`: re-entrant in v3, a closed order closes again with 204).
//!
//! Choices where the reference is silent or unverified: a paid order's prepay and close answer
//! `403 ORDER_PAID` (WeChat's status table puts business-rule refusals under 403); the 5-minute
//! close rule of v2 applies too, as `403 TRADE_ERROR`; reentry with other parameters is
//! `400 INVALID_REQUEST`; an openid of another appid is `500 OPENID_MISMATCH` (§7.3).

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::answer::{Answer, V3Error};
use super::auth::check_mchid;
use super::request::{V3Call, flatten, json_object, strict, without};
use crate::simulator::api::{OrderRef, Reentry, close, find, place_order, trade_state_desc};
use crate::simulator::config::SimV3Merchant;
use crate::simulator::model::{ApiVersion, NotifyJob, OrderState, SimOrder};
use crate::simulator::sim::clock;
use crate::simulator::{Simulator, ids, mini_program};
use crate::wxpay::money::Fen;
use crate::wxpay::unified_order::validate_notify_url;
use crate::wxpay::v3::jsapi::SIGN_TYPE;
use crate::wxpay::v3::models::{
    CloseRequest, Payer, PrepayAnswer, PrepayRequest, Transaction, TransactionAmount, format_time, parse_time,
};

/// Documented optional fields the simulator accepts and ignores.
const PREPAY_EXTRAS: [&str; 5] = ["/support_fapiao", "/limit_pay", "/detail", "/settle_info", "/scene_info/store_info"];

/// An unpaid order without `time_expire` can be paid for seven days; `time_expire` is raised to
/// a minute from now at least and capped at 90 days.
const MAX_EXPIRE_DAYS: i64 = 90;

fn too_long(field: &str, value: &str, max: usize) -> Result<(), V3Error> {
    match value.len() > max {
        true => Err(V3Error::param(field, format!("长度超过{max}字节"))),
        false => Ok(()),
    }
}

/// v3's out_trade_no: 6 to 32 of letters, digits and `_-*|`.
fn valid_out_trade_no(s: &str) -> bool {
    (6..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'*' | b'|'))
}

/// The format rules of §4.1, then the appid's binding to the merchant.
fn validate(sim: &Simulator, req: &PrepayRequest) -> Result<(), V3Error> {
    for (field, value, max) in [
        ("/body/appid", req.appid.as_str(), 32),
        ("/body/description", &req.description, 127),
        ("/body/payer/openid", &req.payer.openid, 128),
    ] {
        if value.is_empty() {
            return Err(V3Error::param(field, "必填性规则校验失败，此字段为必填项"));
        }
        too_long(field, value, max)?;
    }
    if !valid_out_trade_no(&req.out_trade_no) {
        return Err(V3Error::param("/body/out_trade_no", "须为6至32位数字、大小写字母或_-*|"));
    }
    too_long("/body/attach", req.attach.as_deref().unwrap_or_default(), 128)?;
    too_long("/body/goods_tag", req.goods_tag.as_deref().unwrap_or_default(), 32)?;
    let url = &req.notify_url;
    if url.len() > 255 || url.chars().any(char::is_whitespace) || validate_notify_url(url).is_err() {
        return Err(V3Error::param("/body/notify_url", "须为不带参数的绝对http(s)地址，最长255字节"));
    }
    if !sim.config().allows_callback(url) {
        return Err(V3Error::param("/body/notify_url", "模拟器只向本应用自己的地址发送通知"));
    }
    if req.amount.total < 1 {
        return Err(V3Error::param("/body/amount/total", "须为不小于1的整数（分）"));
    }
    if req.amount.currency.as_deref().is_some_and(|c| c != "CNY") {
        return Err(V3Error::param("/body/amount/currency", "境内商户仅支持CNY"));
    }
    if let Some(scene) = &req.scene_info
        && (scene.payer_client_ip.len() > 45 || scene.payer_client_ip.parse::<IpAddr>().is_err())
    {
        return Err(V3Error::param("/body/scene_info/payer_client_ip", "须为IPv4或IPv6地址"));
    }
    if !sim.merchants_for_mch(&req.mchid).iter().any(|m| m.appid == req.appid) {
        return Err(V3Error::new(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配"));
    }
    Ok(())
}

/// `time_expire` as WeChat applies it: at least a minute ahead, at most 90 days.
fn expiry(raw: Option<&str>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, V3Error> {
    let Some(raw) = raw else { return Ok(None) };
    let at = parse_time(raw).ok_or_else(|| V3Error::param("/body/time_expire", "须为RFC 3339时间"))?;
    Ok(Some(at.clamp(now + Duration::minutes(1), now + Duration::days(MAX_EXPIRE_DAYS))))
}

fn new_order(req: PrepayRequest, request: std::collections::BTreeMap<String, String>, now: DateTime<Utc>) -> SimOrder {
    SimOrder {
        appid: req.appid,
        mch_id: req.mchid,
        out_trade_no: req.out_trade_no,
        body: req.description,
        attach: req.attach,
        device_info: req.scene_info.and_then(|s| s.device_id),
        total_fee: Fen::new(req.amount.total),
        fee_type: "CNY".into(),
        trade_type: "JSAPI".into(),
        openid: Some(req.payer.openid),
        notify_url: req.notify_url,
        sign_type: SIGN_TYPE.into(),
        time_expire: None,
        request,
        created_at: now,
        prepay_id: ids::prepay_id(now),
        prepay_created_at: now,
        state: OrderState::NotPay,
        transaction_id: None,
        time_end: None,
        bank_type: None,
        closed_at: None,
        refunds: Vec::new(),
        notify: NotifyJob::default(),
        api: ApiVersion::V3,
    }
}

/// `POST /v3/pay/transactions/jsapi`.
pub(crate) fn prepay(sim: &Simulator, merchant: &SimV3Merchant, body: &[u8]) -> Result<Answer, V3Error> {
    let value = json_object(body)?;
    check_mchid(merchant, value.get("mchid"), "body")?;
    let mut request = flatten(&value);
    request.insert("trade_type".into(), "JSAPI".into());
    let req: PrepayRequest = strict(without(value, &PREPAY_EXTRAS))?;
    validate(sim, &req)?;
    if mini_program::openid_mismatch(sim, &req.appid, &req.payer.openid) {
        return Err(V3Error::new(500, "OPENID_MISMATCH", "openid和appid不匹配"));
    }
    let placed = sim.write(|state| {
        let now = clock(state.clock_offset_ms);
        let time_expire = expiry(req.time_expire.as_deref(), now)?;
        let order = SimOrder { time_expire, ..new_order(req, request, now) };
        place_order(state, order, now).map_err(|refusal| match refusal {
            Reentry::Paid => V3Error::new(403, "ORDER_PAID", "订单已支付"),
            Reentry::Closed => V3Error::new(400, "ORDER_CLOSED", "订单已关闭"),
            Reentry::TradeTypeDiffers => V3Error::new(403, "OUT_TRADE_NO_USED", "商户订单号重复"),
            _ => V3Error::new(400, "INVALID_REQUEST", "请求重入时，参数与首次请求时不一致"),
        })
    })?;
    Ok(Answer::json(&PrepayAnswer { prepay_id: placed.prepay_id }))
}

/// The `Transaction` of an order: what applies to its state (no payer, transaction_id or
/// success_time before payment, as WeChat's NOTPAY answers show).
pub(crate) fn transaction_of(order: &SimOrder) -> Transaction {
    let paid = order.state == OrderState::Success;
    let total = order.total_fee.get();
    Transaction {
        appid: order.appid.clone(),
        mchid: order.mch_id.clone(),
        out_trade_no: order.out_trade_no.clone(),
        transaction_id: order.transaction_id.clone().filter(|_| paid),
        trade_type: Some(order.trade_type.clone()),
        trade_state: order.trade_state().to_owned(),
        trade_state_desc: Some(trade_state_desc(order).to_owned()),
        bank_type: order.bank_type.clone().filter(|_| paid),
        attach: order.attach.clone(),
        success_time: order.time_end.filter(|_| paid).map(format_time),
        payer: order.openid.clone().filter(|_| paid).map(|openid| Payer { openid }),
        amount: Some(TransactionAmount {
            total: Some(total),
            payer_total: paid.then_some(total),
            currency: paid.then(|| "CNY".to_owned()),
            payer_currency: Some("CNY".into()),
        }),
    }
}

/// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=` and `…/id/{transaction_id}?mchid=`.
pub(crate) fn query(
    sim: &Simulator,
    merchant: &SimV3Merchant,
    call: &V3Call,
    order: OrderRef<'_>,
) -> Result<Answer, V3Error> {
    let mchid = call.require_query("mchid")?;
    check_mchid(merchant, Some(&Value::String(mchid)), "query")?;
    sim.read(|state| {
        let not_found = || V3Error::new(404, "ORDER_NOT_EXIST", "订单不存在");
        let key = find(state, &merchant.mch_id, order).map_err(|_| not_found())?;
        let order = state.orders.get(&key).ok_or_else(not_found)?;
        Ok(Answer::json(&transaction_of(order)))
    })
}

/// `POST /v3/pay/transactions/out-trade-no/{no}/close`: 204, also for an order already closed.
pub(crate) fn close_order(
    sim: &Simulator,
    merchant: &SimV3Merchant,
    out_trade_no: &str,
    body: &[u8],
) -> Result<Answer, V3Error> {
    let value = json_object(body)?;
    check_mchid(merchant, value.get("mchid"), "body")?;
    let _: CloseRequest = strict(value)?;
    match close(sim, &merchant.mch_id, out_trade_no) {
        Ok(()) => Ok(Answer::NoContent),
        Err(e) => match e.code {
            "ORDERCLOSED" => Ok(Answer::NoContent),
            "ORDERNOTEXIST" => Err(V3Error::new(404, "ORDER_NOT_EXIST", "订单不存在")),
            "ORDERPAID" => Err(V3Error::new(403, "ORDER_PAID", "订单已支付")),
            "TRADE_STATE_ERROR" => Err(V3Error::new(403, "TRADE_ERROR", e.des)),
            _ => Err(V3Error::new(400, "INVALID_REQUEST", e.des)),
        },
    }
}

/// An unpaid v3 order of 5 fen, for unit tests.
#[cfg(test)]
pub(crate) fn sample_order() -> SimOrder {
    let req = strict(serde_json::json!({
        "appid": "wx1", "mchid": "1", "description": "d", "out_trade_no": "order1",
        "notify_url": "https://a.example/n", "amount": { "total": 5 }, "payer": { "openid": "o1" }
    }))
    .expect("a valid prepay request");
    new_order(req, Default::default(), Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_trade_numbers_and_expiry() {
        assert!(valid_out_trade_no("WC20240501163005123456789012"));
        assert!(
            !valid_out_trade_no("short") && !valid_out_trade_no("has@sign1") && !valid_out_trade_no(&"1".repeat(33))
        );
        let now = Utc::now();
        let soon = format_time(now + Duration::seconds(10));
        assert_eq!(expiry(Some(&soon), now).unwrap(), Some(now + Duration::minutes(1)));
        let far = format_time(now + Duration::days(400));
        assert_eq!(expiry(Some(&far), now).unwrap(), Some(now + Duration::days(MAX_EXPIRE_DAYS)));
        assert_eq!(expiry(Some("20240101"), now).unwrap_err().code, "PARAM_ERROR");
        assert_eq!(expiry(None, now).unwrap(), None);
    }

    #[test]
    fn transactions_show_what_applies_to_the_state() {
        let order = sample_order();
        let t = transaction_of(&order);
        assert_eq!((t.trade_state.as_str(), t.transaction_id.is_none(), t.payer.is_none()), ("NOTPAY", true, true));
        assert_eq!(t.amount.as_ref().unwrap().payer_total, None);
        let paid = SimOrder {
            state: OrderState::Success,
            transaction_id: Some("4200".into()),
            time_end: Some(Utc::now()),
            ..order
        };
        let t = transaction_of(&paid);
        assert_eq!((t.trade_state.as_str(), t.transaction_id.as_deref()), ("SUCCESS", Some("4200")));
        assert_eq!(t.payer.unwrap().openid, "o1");
        assert_eq!(t.amount.unwrap().payer_total, Some(5));
    }
}
