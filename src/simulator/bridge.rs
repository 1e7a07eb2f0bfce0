//! The WeChat client's side of JSAPI payment: `{own}/bridge.js` (a `WeixinJSBridge` with a pay
//! sheet) and `{own}/bridge/verify`, which checks the six `getBrandWCPayRequest` parameters as
//! the client does before it shows the sheet. A v3 order's `signType` is `RSA`, its `paySign`
//! checked with the public key of the v3 merchant the order belongs to; a v2 order's is its own.

use rocket::data::Data;
use rocket::http::ContentType;
use rocket::{Route, State, get, post, routes};
use serde_json::{Value, json};

use super::server::Mounted;
use super::shopper::payable;
use super::web::{Cors, JsonReply, json_ok, read_json};
use super::{SimError, Simulator};
use crate::wxpay::jsapi::JsapiParams;
use crate::wxpay::sign::ApiKey;
use crate::wxpay::v3::VerifyingKey;
use crate::wxpay::v3::jsapi as v3_jsapi;

const BRIDGE_JS: &str = include_str!("../../static/simulator/bridge.js");

/// What WeChat shows for an invalid, expired or foreign prepay (the famous misleading message).
pub(crate) const BAD_PREPAY: &str = "调用支付JSAPI缺少参数：total_fee";
pub(crate) const BAD_SIGNATURE: &str = "fail_invalid signature";

/// A refused invocation: the description for the page, and a hint for the developer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BridgeFailure {
    pub err_desc: String,
    pub hint: String,
}

fn fail(err_desc: &str, hint: impl Into<String>) -> BridgeFailure {
    BridgeFailure { err_desc: err_desc.to_owned(), hint: hint.into() }
}

/// Checks the parameters; on success returns what the pay sheet shows.
pub(crate) fn verify(sim: &Simulator, params: &Value) -> Result<Value, BridgeFailure> {
    let mut strings = Vec::with_capacity(6);
    for key in ["appId", "timeStamp", "nonceStr", "package", "signType", "paySign"] {
        match params.get(key) {
            Some(Value::String(s)) if !s.is_empty() => strings.push(s.clone()),
            Some(Value::String(_)) | None => {
                return Err(fail(&format!("调用支付JSAPI缺少参数：{key}"), format!("{key} is missing or empty")));
            }
            Some(other) => {
                return Err(fail(
                    &format!("调用支付JSAPI缺少参数：{key}"),
                    format!("{key} must be a string, not {other}"),
                ));
            }
        }
    }
    let [app_id, time_stamp, nonce_str, package, sign_type, pay_sign]: [String; 6] =
        strings.try_into().map_err(|_| fail(BAD_PREPAY, "internal: parameter count"))?;
    let p = JsapiParams { app_id, time_stamp, nonce_str, package, sign_type, pay_sign };
    if sim.config().merchant_for_appid(&p.app_id).is_none() {
        return Err(fail(BAD_PREPAY, format!("appId {:?} is not a known Official Account", p.app_id)));
    }
    if p.time_stamp.len() != 10 || !p.time_stamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail(
            "timeStamp参数错误：须为10位秒级时间戳",
            format!("timeStamp {:?} must be Unix seconds (10 digits), not milliseconds", p.time_stamp),
        ));
    }
    if p.nonce_str.chars().count() > 32 {
        return Err(fail("nonceStr参数错误：长度须为1至32个字符", "nonceStr is longer than 32 characters"));
    }
    let prepay_id = p.prepay_id().ok_or_else(|| fail(BAD_PREPAY, "package must be \"prepay_id=<prepay_id>\""))?;
    let (order, now) = sim
        .read(|s| {
            let key = s.prepay_index.get(prepay_id)?;
            s.orders.get(key).map(|o| (o.clone(), super::sim::clock(s.clock_offset_ms)))
        })
        .ok_or_else(|| fail(BAD_PREPAY, format!("prepay_id {prepay_id:?} was never issued")))?;
    match payable(&order, prepay_id, now) {
        Ok(()) => {}
        Err(SimError::AlreadyPaid) => return Err(fail("该订单已支付", "the order is already paid")),
        Err(e) => return Err(fail(BAD_PREPAY, format!("prepay_id {prepay_id:?}: {e}"))),
    }
    if order.appid != p.app_id {
        return Err(fail(BAD_PREPAY, format!("appId {:?} differs from the order's appid {:?}", p.app_id, order.appid)));
    }
    if p.sign_type != order.sign_type {
        return Err(fail(
            BAD_SIGNATURE,
            format!("signType {:?} differs from the order's sign_type {:?}", p.sign_type, order.sign_type),
        ));
    }
    check_pay_sign(sim, &p, &order.mch_id)?;
    Ok(json!({
        "ok": true,
        "prepay_id": prepay_id,
        "out_trade_no": order.out_trade_no,
        "total_fee": order.total_fee.get(),
        "body": order.body,
        "appid": order.appid,
        "mch_id": order.mch_id,
    }))
}

/// The `paySign` check of the order's protocol: RSA with the v3 merchant's public key over
/// `appId\ntimeStamp\nnonceStr\npackage\n`, or the v2 signature with the API key.
fn check_pay_sign(sim: &Simulator, p: &JsapiParams, mch_id: &str) -> Result<(), BridgeFailure> {
    if p.sign_type == v3_jsapi::SIGN_TYPE {
        let key = sim.config().v3_merchant(mch_id).and_then(|m| VerifyingKey::from_pem(&m.public_key_pem).ok());
        return match key.is_some_and(|k| v3_jsapi::verify(p, &k)) {
            true => Ok(()),
            false => Err(fail(
                BAD_SIGNATURE,
                "paySign does not verify: sign appId\\ntimeStamp\\nnonceStr\\npackage\\n with the merchant API private key (RSA-SHA256)",
            )),
        };
    }
    let key: Option<ApiKey> = sim.api_key_for(mch_id);
    if key.is_some_and(|k| p.verify(&k).is_ok()) {
        Ok(())
    } else {
        Err(fail(
            BAD_SIGNATURE,
            "paySign does not verify: sign appId, nonceStr, package, signType and timeStamp with the API key",
        ))
    }
}

#[post("/bridge/verify", data = "<data>")]
async fn post_verify(sim: &State<Mounted>, data: Data<'_>) -> JsonReply {
    let params: Value = match read_json(data).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    match verify(&sim.0, &params) {
        Ok(v) => json_ok(v),
        Err(f) => json_ok(json!({
            "ok": false,
            "err_msg": "get_brand_wcpay_request:fail",
            "err_desc": f.err_desc,
            "hint": f.hint,
        })),
    }
}

#[get("/bridge.js")]
fn get_bridge_js() -> Cors<(ContentType, &'static str)> {
    Cors((ContentType::JavaScript, BRIDGE_JS))
}

pub(crate) fn routes() -> Vec<Route> {
    routes![post_verify, get_bridge_js]
}
