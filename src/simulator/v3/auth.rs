//! Checking a v3 request as WeChat does: the `Authorization` pairs (in any order), the merchant
//! by `mchid` and its API certificate by `serial_no`, the timestamp within five minutes, and the
//! RSA signature of the message rebuilt from the method, the path and query as received, the
//! timestamp, the nonce and the raw body. Any failure is `401 SIGN_ERROR`, with the message the
//! simulator rebuilt in `detail`, as WeChat echoes it.

use serde_json::{Value, json};

use super::answer::V3Error;
use super::request::V3Call;
use crate::simulator::Simulator;
use crate::simulator::config::SimV3Merchant;
use crate::wxpay::v3::VerifyingKey;
use crate::wxpay::v3::authorization::{Authorization, request_message};
use crate::wxpay::v3::verify::MAX_CLOCK_SKEW_SECONDS;

pub(crate) const SIGN_ERROR_MESSAGE: &str = "签名错误,请检查后再试";

/// How much of the rebuilt message the SIGN_ERROR detail shows.
const TRUNCATED_MESSAGE_CHARS: usize = 64;

fn sign_error(issue: &str, field: &str, sign_information: Option<Value>) -> V3Error {
    let mut detail = json!({ "detail": { "issue": issue }, "field": field, "location": "authorization" });
    if let Some(info) = sign_information {
        detail["sign_information"] = info;
    }
    V3Error::new(401, "SIGN_ERROR", SIGN_ERROR_MESSAGE).with_detail(detail)
}

/// The merchant that signed the call, or why it is refused.
pub(crate) fn verify(sim: &Simulator, call: &V3Call, body: &[u8]) -> Result<SimV3Merchant, V3Error> {
    let header =
        call.authorization.as_deref().ok_or_else(|| sign_error("Authorization is missing", "authorization", None))?;
    let auth = Authorization::parse(header).map_err(|why| sign_error(&why, "authorization", None))?;
    let merchant = sim
        .config()
        .v3_merchant(&auth.mchid)
        .cloned()
        .ok_or_else(|| sign_error("mchid is not a v3 merchant", "mchid", None))?;
    if auth.serial_no != merchant.serial_no {
        return Err(sign_error("serial_no is not the merchant's API certificate", "serial_no", None));
    }
    let timestamp: i64 = auth
        .timestamp
        .parse()
        .ok()
        .filter(|_| auth.timestamp.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| sign_error("timestamp is not Unix seconds", "timestamp", None))?;
    // The real clock, not the simulated one: the merchant signs with its own real clock, and a
    // test that moves the simulated clock forward (to age orders) must not see every call refused.
    if (chrono::Utc::now().timestamp() - timestamp).abs() >= MAX_CLOCK_SKEW_SECONDS {
        return Err(sign_error("timestamp expired", "timestamp", None));
    }
    let message = request_message(&call.method, &call.canonical_url, timestamp, &auth.nonce_str, body);
    let key = VerifyingKey::from_pem(&merchant.public_key_pem)
        .map_err(|e| sign_error(&format!("the merchant's public key: {e}"), "signature", None))?;
    if !key.verify(&message, &auth.signature) {
        let text = String::from_utf8_lossy(&message);
        let information = json!({
            "method": call.method,
            "url": call.canonical_url,
            "sign_message_length": message.len(),
            "truncated_sign_message": text.chars().take(TRUNCATED_MESSAGE_CHARS).collect::<String>(),
        });
        return Err(sign_error("sign not match", "signature", Some(information)));
    }
    Ok(merchant)
}

/// The mchid a body or query names must be the one that signed (`location`: `body` or `query`).
pub(crate) fn check_mchid(merchant: &SimV3Merchant, claimed: Option<&Value>, location: &str) -> Result<(), V3Error> {
    match claimed {
        Some(Value::String(mchid)) if *mchid != merchant.mch_id => {
            Err(V3Error::new(401, "SIGN_ERROR", SIGN_ERROR_MESSAGE).with_detail(json!({
                "detail": { "issue": "mchid不匹配: Authorization的mchid与请求中的mchid不一致" },
                "field": "mchid",
                "location": location,
            })))
        }
        _ => Ok(()),
    }
}
