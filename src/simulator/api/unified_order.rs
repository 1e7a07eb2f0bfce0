//! `/pay/unifiedorder`: required fields, format rules, and reentry of an out_trade_no (the same
//! request again gets the same prepay_id; anything different is refused).

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

use super::envelope::{ApiRequest, BizError, BizFields};
use super::trade::place_order;
use crate::simulator::Simulator;
use crate::simulator::ids;
use crate::simulator::model::{ApiVersion, NotifyJob, OrderState, SimOrder};
use crate::simulator::sim::clock;
use crate::wxpay::money::Fen;
use crate::wxpay::time;
use crate::wxpay::types::{TradeType, is_valid_merchant_no};
use crate::wxpay::unified_order::validate_notify_url;
use crate::wxpay::xml::Fields;

/// A prepay_id is payable for two hours.
pub(crate) const PREPAY_TTL: Duration = Duration::hours(2);

const REQUIRED: [&str; 7] =
    ["body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type", "nonce_str"];

/// A request that passed every format rule.
#[derive(Debug)]
pub(crate) struct NewOrder {
    pub out_trade_no: String,
    pub total_fee: Fen,
    pub trade_type: TradeType,
    pub time_expire: Option<DateTime<Utc>>,
}

/// Every non-empty field except the ones that may change between identical requests.
pub(crate) fn reentry_fields(fields: &Fields) -> BTreeMap<String, String> {
    fields
        .pairs()
        .filter(|(k, v)| !v.is_empty() && *k != "nonce_str" && *k != "sign")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn max_len(f: &Fields, name: &str, max: usize) -> Result<(), BizError> {
    match f.get(name) {
        Some(v) if v.len() > max => {
            Err(BizError::invalid(format!("{name}参数长度有误：最多{max}字节（收到{}字节）", v.len())))
        }
        _ => Ok(()),
    }
}

/// The documented format rules, in the order WeChat reports them.
pub(crate) fn validate(f: &Fields, now: DateTime<Utc>) -> Result<NewOrder, BizError> {
    let trade_type = check_presence(f)?;
    let (out_trade_no, total_fee) = check_amount_and_number(f)?;
    check_lengths(f)?;
    check_currency_and_limits(f)?;
    check_addresses(f)?;
    let time_expire = check_times(f, now)?;
    Ok(NewOrder { out_trade_no: out_trade_no.to_owned(), total_fee, trade_type, time_expire })
}

/// A field's value, when it is present and not empty (WeChat treats an empty field as absent).
fn given<'f>(f: &'f Fields, name: &str) -> Option<&'f str> {
    f.get(name).filter(|v| !v.is_empty())
}

/// The always-required fields, then the trade type and the field it requires in turn.
fn check_presence(f: &Fields) -> Result<TradeType, BizError> {
    let get = |k: &str| given(f, k);
    for name in REQUIRED {
        if get(name).is_none() {
            return Err(BizError::lack(name));
        }
    }
    let trade_type_raw = get("trade_type").unwrap_or_default();
    let trade_type = TradeType::parse(trade_type_raw)
        .ok_or_else(|| BizError::invalid(format!("trade_type参数格式错误：不支持{trade_type_raw:?}")))?;
    match trade_type {
        TradeType::Jsapi if get("openid").is_none() => {
            return Err(BizError::new("LACK_PARAMS", "JSAPI支付必须传openid"));
        }
        TradeType::Native if get("product_id").is_none() => {
            return Err(BizError::new("LACK_PARAMS", "NATIVE支付必须传product_id"));
        }
        TradeType::Mweb if get("scene_info").is_none() => {
            return Err(BizError::new("LACK_PARAMS", "MWEB支付必须传scene_info"));
        }
        _ => {}
    }
    Ok(trade_type)
}

/// `total_fee` (positive fen) and `out_trade_no` (the merchant's order number).
fn check_amount_and_number(f: &Fields) -> Result<(&str, Fen), BizError> {
    let raw_fee = given(f, "total_fee").unwrap_or_default();
    let total_fee = Fen::parse_api(raw_fee).ok().filter(|f| f.is_positive()).ok_or_else(|| {
        BizError::invalid(format!("total_fee参数格式错误：必须是以分为单位的正整数，收到{raw_fee:?}"))
    })?;
    let out_trade_no = given(f, "out_trade_no").unwrap_or_default();
    if !is_valid_merchant_no(out_trade_no, 32) {
        return Err(BizError::invalid(format!(
            "out_trade_no参数格式错误：1至32位字母、数字或_-|*@，收到{out_trade_no:?}"
        )));
    }
    Ok((out_trade_no, total_fee))
}

/// The documented maximum length of each free-text field, in bytes.
fn check_lengths(f: &Fields) -> Result<(), BizError> {
    max_len(f, "body", 128)?;
    max_len(f, "attach", 127)?;
    max_len(f, "detail", 6000)?;
    max_len(f, "device_info", 32)?;
    max_len(f, "nonce_str", 32)?;
    max_len(f, "openid", 128)?;
    max_len(f, "product_id", 32)?;
    max_len(f, "goods_tag", 32)?;
    max_len(f, "scene_info", 256)
}

/// `fee_type` and `limit_pay` each accept a single value.
fn check_currency_and_limits(f: &Fields) -> Result<(), BizError> {
    if let Some(fee_type) = given(f, "fee_type")
        && fee_type != "CNY"
    {
        return Err(BizError::invalid(format!("fee_type参数错误：境内商户仅支持CNY，收到{fee_type:?}")));
    }
    if let Some(limit) = given(f, "limit_pay")
        && limit != "no_credit"
    {
        return Err(BizError::invalid(format!("limit_pay参数错误：仅支持no_credit，收到{limit:?}")));
    }
    Ok(())
}

/// `notify_url` (where the payment notify goes) and `spbill_create_ip` (the shopper's address).
fn check_addresses(f: &Fields) -> Result<(), BizError> {
    let notify_url = given(f, "notify_url").unwrap_or_default();
    if validate_notify_url(notify_url).is_err() {
        return Err(BizError::invalid(format!(
            "notify_url参数格式错误：须为不带参数的绝对http(s)地址，最长256字节，收到{notify_url:?}"
        )));
    }
    let ip = given(f, "spbill_create_ip").unwrap_or_default();
    if ip.len() > 64 || ip.parse::<IpAddr>().is_err() {
        return Err(BizError::invalid(format!("spbill_create_ip参数格式错误：须为IPv4或IPv6地址，收到{ip:?}")));
    }
    Ok(())
}

/// `time_start` and `time_expire` (Beijing time); the order's expiry, if it has one.
fn check_times(f: &Fields, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, BizError> {
    let parse_time = |name: &str| -> Result<Option<DateTime<Utc>>, BizError> {
        match given(f, name) {
            None => Ok(None),
            Some(v) => time::parse_compact(v).map(Some).map_err(|_| {
                BizError::invalid(format!("{name}参数格式错误：须为yyyyMMddHHmmss（北京时间），收到{v:?}"))
            }),
        }
    };
    let time_start = parse_time("time_start")?;
    let time_expire = parse_time("time_expire")?;
    if let Some(expire) = time_expire {
        if expire < now + Duration::minutes(1) {
            return Err(BizError::invalid("time_expire时间过短，至少1分钟"));
        }
        if time_start.is_some_and(|start| expire <= start) {
            return Err(BizError::invalid("time_expire必须晚于time_start"));
        }
    }
    Ok(time_expire)
}

/// What a second unifiedorder for an existing out_trade_no gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reentry {
    /// Identical request, prepay still fresh: the same prepay_id.
    Same,
    /// Identical request, prepay older than two hours: a new prepay_id.
    Renew,
    Paid,
    Closed,
    TradeTypeDiffers,
    Differs,
}

pub(crate) fn reentry(existing: &SimOrder, request: &BTreeMap<String, String>, now: DateTime<Utc>) -> Reentry {
    match existing.state {
        OrderState::Success => return Reentry::Paid,
        OrderState::Closed => return Reentry::Closed,
        OrderState::NotPay | OrderState::PayError => {}
    }
    if existing.request.get("trade_type") != request.get("trade_type") {
        Reentry::TradeTypeDiffers
    } else if &existing.request != request {
        Reentry::Differs
    } else if now - existing.prepay_created_at >= PREPAY_TTL {
        Reentry::Renew
    } else {
        Reentry::Same
    }
}

fn reply_fields(order: &SimOrder) -> BizFields {
    let mut f = vec![("trade_type", order.trade_type.clone()), ("prepay_id", order.prepay_id.clone())];
    match order.trade_type.as_str() {
        "NATIVE" => f.push(("code_url", ids::code_url())),
        "MWEB" => f.push(("mweb_url", ids::mweb_url(&order.prepay_id))),
        _ => {}
    }
    f
}

pub(crate) fn handle(sim: &Simulator, req: &ApiRequest) -> Result<BizFields, BizError> {
    let request = reentry_fields(&req.fields);
    sim.write(|state| {
        let now = clock(state.clock_offset_ms);
        let new = validate(&req.fields, now)?;
        if !sim.config().allows_callback(given(&req.fields, "notify_url").unwrap_or_default()) {
            return Err(BizError::invalid("notify_url参数错误：模拟器只向本应用自己的地址发送通知"));
        }
        let own = |k: &str| req.get(k).map(str::to_owned);
        let order = SimOrder {
            appid: req.merchant.appid.clone(),
            mch_id: req.merchant.mch_id.clone(),
            out_trade_no: new.out_trade_no,
            body: own("body").unwrap_or_default(),
            attach: own("attach"),
            device_info: own("device_info"),
            total_fee: new.total_fee,
            fee_type: own("fee_type").unwrap_or_else(|| "CNY".into()),
            trade_type: new.trade_type.as_str().to_owned(),
            openid: own("openid"),
            notify_url: own("notify_url").unwrap_or_default(),
            sign_type: req.sign_type.as_str().to_owned(),
            time_expire: new.time_expire,
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
            api: ApiVersion::V2,
        };
        match place_order(state, order, now) {
            Ok(order) => Ok(reply_fields(&order)),
            Err(Reentry::Paid) => Err(BizError::new("ORDERPAID", "该订单已支付")),
            Err(Reentry::Closed) => Err(BizError::new("ORDERCLOSED", "该订单已关闭")),
            Err(Reentry::TradeTypeDiffers) => Err(BizError::new("OUT_TRADE_NO_USED", "商户订单号重复")),
            // Differs: place_order refuses nothing else.
            Err(_) => Err(BizError::invalid("201 商户订单号重复")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Fields {
        [
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("nonce_str", "abc"),
            ("body", "测试商品"),
            ("out_trade_no", "T1"),
            ("total_fee", "100"),
            ("spbill_create_ip", "127.0.0.1"),
            ("notify_url", "https://shop.example/notify"),
            ("trade_type", "JSAPI"),
            ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
            ("sign", "X"),
        ]
        .into_iter()
        .collect()
    }

    fn with(k: &str, v: &str) -> Fields {
        let mut f = base();
        f.insert(k, v);
        f
    }

    fn code(f: &Fields) -> &'static str {
        validate(f, Utc::now()).unwrap_err().code
    }

    #[test]
    fn required_and_conditional_fields() {
        validate(&base(), Utc::now()).unwrap();
        for name in REQUIRED {
            let mut f = base();
            f.remove(name);
            let err = validate(&f, Utc::now()).unwrap_err();
            assert_eq!((err.code, err.des.as_str()), ("LACK_PARAMS", format!("缺少参数{name}").as_str()));
        }
        let err = validate(&with("openid", ""), Utc::now()).unwrap_err();
        assert_eq!(err.des, "JSAPI支付必须传openid");
        assert_eq!(code(&with("trade_type", "NATIVE")), "LACK_PARAMS");
        assert_eq!(code(&with("trade_type", "MWEB")), "LACK_PARAMS");
    }

    #[test]
    fn format_rules() {
        for (k, v) in [
            ("total_fee", "0.01"),
            ("total_fee", "0"),
            ("total_fee", "-1"),
            ("out_trade_no", "has space"),
            ("out_trade_no", &"1".repeat(33)),
            ("body", &"字".repeat(43)),
            ("attach", &"a".repeat(128)),
            ("trade_type", "MICROPAY"),
            ("notify_url", "https://shop.example/notify?id=1"),
            ("notify_url", "/notify"),
            ("spbill_create_ip", "localhost"),
            ("time_start", "2024-01-01"),
            ("time_expire", "20000101000000"),
        ] {
            assert_eq!(code(&with(k, v)), "INVALID_REQUEST", "{k}={v}");
        }
        let soon = time::format_compact(Utc::now() + Duration::seconds(30));
        assert_eq!(code(&with("time_expire", &soon)), "INVALID_REQUEST");
        let later = time::format_compact(Utc::now() + Duration::minutes(10));
        validate(&with("time_expire", &later), Utc::now()).unwrap();
        validate(&with("spbill_create_ip", "2001:db8::1"), Utc::now()).unwrap();
    }

    fn order(request: &Fields, state: OrderState, age: Duration) -> SimOrder {
        let now = Utc::now();
        SimOrder {
            appid: String::new(),
            mch_id: String::new(),
            out_trade_no: "T1".into(),
            body: String::new(),
            attach: None,
            device_info: None,
            total_fee: Fen::new(100),
            fee_type: "CNY".into(),
            trade_type: "JSAPI".into(),
            openid: None,
            notify_url: String::new(),
            sign_type: "MD5".into(),
            time_expire: None,
            request: reentry_fields(request),
            created_at: now - age,
            prepay_id: "wx1".into(),
            prepay_created_at: now - age,
            state,
            transaction_id: None,
            time_end: None,
            bank_type: None,
            closed_at: None,
            refunds: vec![],
            notify: NotifyJob::default(),
            api: ApiVersion::V2,
        }
    }

    #[test]
    fn reentry_rules() {
        let now = Utc::now();
        let fresh = order(&base(), OrderState::NotPay, Duration::minutes(1));
        let again = reentry_fields(&with("nonce_str", "other"));
        assert_eq!(reentry(&fresh, &again, now), Reentry::Same);
        let old = order(&base(), OrderState::NotPay, Duration::hours(3));
        assert_eq!(reentry(&old, &again, now), Reentry::Renew);
        assert_eq!(reentry(&fresh, &reentry_fields(&with("total_fee", "101")), now), Reentry::Differs);
        assert_eq!(reentry(&fresh, &reentry_fields(&with("attach", "x")), now), Reentry::Differs);
        assert_eq!(reentry(&fresh, &reentry_fields(&with("trade_type", "NATIVE")), now), Reentry::TradeTypeDiffers);
        let paid = order(&base(), OrderState::Success, Duration::minutes(1));
        assert_eq!(reentry(&paid, &again, now), Reentry::Paid);
        let closed = order(&base(), OrderState::Closed, Duration::minutes(1));
        assert_eq!(reentry(&closed, &again, now), Reentry::Closed);
        let failed = order(&base(), OrderState::PayError, Duration::minutes(1));
        assert_eq!(reentry(&failed, &again, now), Reentry::Same);
    }
}
