//! `POST /pay/unifiedorder`: create the prepay (JSAPI first; NATIVE and MWEB fields accepted).

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::error::WxError;
use super::money::Fen;
use super::reply::{opt_str, req_str};
use super::time;
use super::types::{TradeType, is_valid_merchant_no};
use super::xml::Fields;

pub const PATH: &str = "/pay/unifiedorder";

/// The business fields of a unified order. The envelope (appid, mch_id, nonce, sign) is added by
/// [`super::Merchant::signed_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnifiedOrder {
    /// Another appid bound to the merchant (a Mini Program's) to issue the prepay under, so that
    /// the openid and the JSAPI `appId` are that app's; `None`: the merchant's own appid.
    pub appid: Option<String>,
    pub body: String,
    pub out_trade_no: String,
    pub total_fee: Fen,
    /// The shopper's IP for JSAPI/MWEB, the server's for NATIVE.
    pub spbill_create_ip: String,
    pub notify_url: String,
    pub trade_type: TradeType,
    pub openid: Option<String>,
    pub product_id: Option<String>,
    pub scene_info: Option<String>,
    pub attach: Option<String>,
    pub detail: Option<String>,
    pub device_info: Option<String>,
    pub fee_type: Option<String>,
    pub time_start: Option<DateTime<Utc>>,
    pub time_expire: Option<DateTime<Utc>>,
    pub goods_tag: Option<String>,
    pub limit_pay: Option<String>,
    pub receipt: Option<String>,
}

impl UnifiedOrder {
    /// A JSAPI order with the required fields; the optional ones start empty.
    pub fn jsapi(
        body: impl Into<String>,
        out_trade_no: impl Into<String>,
        total_fee: Fen,
        spbill_create_ip: impl Into<String>,
        notify_url: impl Into<String>,
        openid: impl Into<String>,
    ) -> UnifiedOrder {
        UnifiedOrder {
            appid: None,
            body: body.into(),
            out_trade_no: out_trade_no.into(),
            total_fee,
            spbill_create_ip: spbill_create_ip.into(),
            notify_url: notify_url.into(),
            trade_type: TradeType::Jsapi,
            openid: Some(openid.into()),
            product_id: None,
            scene_info: None,
            attach: None,
            detail: None,
            device_info: None,
            fee_type: None,
            time_start: None,
            time_expire: None,
            goods_tag: None,
            limit_pay: None,
            receipt: None,
        }
    }

    /// Checks the documented limits before anything is sent, so a bad order fails here with a
    /// clear message instead of as a vague `INVALID_REQUEST` from WeChat.
    pub fn validate(&self) -> Result<(), WxError> {
        let bad = |m: String| Err(WxError::InvalidRequest(m));
        if self.appid.as_deref().is_some_and(|a| a.is_empty() || a.len() > 32) {
            return bad("appid must be 1 to 32 bytes".into());
        }
        if self.body.is_empty() || self.body.len() > 128 {
            return bad(format!("body must be 1 to 128 bytes (is {})", self.body.len()));
        }
        if !is_valid_merchant_no(&self.out_trade_no, 32) {
            return bad(format!("out_trade_no {:?} must be 1 to 32 letters, digits or _-|*@", self.out_trade_no));
        }
        if !self.total_fee.is_positive() {
            return bad(format!("total_fee must be a positive number of fen (is {})", self.total_fee));
        }
        if self.spbill_create_ip.parse::<IpAddr>().is_err() {
            return bad(format!("spbill_create_ip {:?} is not an IP address", self.spbill_create_ip));
        }
        validate_notify_url(&self.notify_url)?;
        match self.trade_type {
            TradeType::Jsapi if self.openid.as_deref().unwrap_or("").is_empty() => {
                return bad("a JSAPI order needs the shopper's openid".into());
            }
            TradeType::Native if self.product_id.as_deref().unwrap_or("").is_empty() => {
                return bad("a NATIVE order needs product_id".into());
            }
            TradeType::Mweb if self.scene_info.as_deref().unwrap_or("").is_empty() => {
                return bad("an MWEB order needs scene_info".into());
            }
            _ => {}
        }
        if self.attach.as_deref().is_some_and(|a| a.len() > 127) {
            return bad("attach must be at most 127 bytes".into());
        }
        if self.detail.as_deref().is_some_and(|d| d.len() > 6000) {
            return bad("detail must be at most 6000 bytes".into());
        }
        if let (Some(start), Some(expire)) = (self.time_start, self.time_expire)
            && expire <= start
        {
            return bad("time_expire must be after time_start".into());
        }
        Ok(())
    }

    pub fn business_fields(&self) -> Vec<(&'static str, String)> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            ("body", self.body.clone()),
            ("out_trade_no", self.out_trade_no.clone()),
            ("total_fee", self.total_fee.to_string()),
            ("spbill_create_ip", self.spbill_create_ip.clone()),
            ("notify_url", self.notify_url.clone()),
            ("trade_type", self.trade_type.as_str().to_owned()),
            ("openid", opt(&self.openid)),
            ("product_id", opt(&self.product_id)),
            ("scene_info", opt(&self.scene_info)),
            ("attach", opt(&self.attach)),
            ("detail", opt(&self.detail)),
            ("device_info", opt(&self.device_info)),
            ("fee_type", opt(&self.fee_type)),
            ("time_start", self.time_start.map(time::format_compact).unwrap_or_default()),
            ("time_expire", self.time_expire.map(time::format_compact).unwrap_or_default()),
            ("goods_tag", opt(&self.goods_tag)),
            ("limit_pay", opt(&self.limit_pay)),
            ("receipt", opt(&self.receipt)),
        ]
    }
}

/// `notify_url`: absolute http(s), at most 256 bytes, and no query string (WeChat drops it).
pub fn validate_notify_url(url: &str) -> Result<(), WxError> {
    let bad = |m: &str| Err(WxError::InvalidRequest(format!("notify_url {url:?} {m}")));
    if url.len() > 256 {
        return bad("is longer than 256 bytes");
    }
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if u.query().is_some() || u.fragment().is_some() {
                return bad("must not carry a query string or fragment");
            }
            Ok(())
        }
        _ => bad("must be an absolute http(s) URL"),
    }
}

/// The useful part of a successful unifiedorder reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnifiedOrderReply {
    /// Valid for 2 hours.
    pub prepay_id: String,
    pub trade_type: TradeType,
    pub code_url: Option<String>,
    pub mweb_url: Option<String>,
    pub raw: Fields,
}

impl UnifiedOrderReply {
    pub fn from_fields(raw: Fields) -> Result<Self, WxError> {
        let trade_type_raw = req_str(&raw, "trade_type")?;
        let trade_type = TradeType::parse(&trade_type_raw)
            .ok_or_else(|| WxError::bad_field("trade_type", format!("unknown value {trade_type_raw:?}")))?;
        Ok(UnifiedOrderReply {
            prepay_id: req_str(&raw, "prepay_id")?,
            trade_type,
            code_url: opt_str(&raw, "code_url"),
            mweb_url: opt_str(&raw, "mweb_url"),
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> UnifiedOrder {
        UnifiedOrder::jsapi(
            "腾讯充值中心-QQ会员充值",
            "20150806125346",
            Fen::new(1),
            "123.12.12.123",
            "https://example.com/wechat/notify",
            "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        )
    }

    #[test]
    fn a_valid_jsapi_order_passes() {
        order().validate().unwrap();
        let fields = order().business_fields();
        assert!(fields.contains(&("trade_type", "JSAPI".into())));
        assert!(fields.contains(&("total_fee", "1".into())));
    }

    #[test]
    fn documented_limits_are_enforced() {
        type Mutation = fn(&mut UnifiedOrder);
        let cases: [Mutation; 11] = [
            |o| o.body = String::new(),
            |o| o.body = "字".repeat(43),
            |o| o.out_trade_no = "has space".into(),
            |o| o.total_fee = Fen::ZERO,
            |o| o.spbill_create_ip = "localhost".into(),
            |o| o.notify_url = "https://example.com/notify?order=1".into(),
            |o| o.notify_url = "/wechat/notify".into(),
            |o| o.openid = None,
            |o| o.attach = Some("a".repeat(128)),
            |o| {
                o.trade_type = TradeType::Native;
                o.product_id = None;
            },
            |o| {
                o.trade_type = TradeType::Mweb;
                o.scene_info = None;
            },
        ];
        for (i, mutate) in cases.iter().enumerate() {
            let mut o = order();
            mutate(&mut o);
            assert!(matches!(o.validate(), Err(WxError::InvalidRequest(_))), "case {i} passed");
        }
    }
}
