//! The WeChat Pay API check: a signed `orderquery` of an order number nobody used. WeChat
//! checks the signature (the API key), the merchant id and the appid binding before it looks
//! for the order, so `ORDERNOTEXIST` proves all three, and a query changes nothing.

use std::time::Duration;

use super::{Line, Status};
use crate::config::AppConfig;
use crate::wxpay::error::WxError;
use crate::wxpay::nonce::random_alphanumeric;
use crate::wxpay::order_query::OrderQuery;
use crate::wxpay::{ErrCode, GatewayConfig, HttpPayGateway, Merchant, PayGateway};

const SUBJECT: &str = "WeChat Pay API";

pub(super) async fn check(config: &AppConfig) -> Line {
    if config.simulator {
        return Line::new(
            Status::Skip,
            SUBJECT,
            format!(
                "simulated: serve mounts the simulator at /simulator and talks to it at {} (no real money moves)",
                config.wechat.api_base
            ),
        );
    }
    let merchant = Merchant {
        appid: config.wechat.appid.clone(),
        mch_id: config.wechat.mch_id.clone(),
        key: config.wechat.api_key.clone(),
        sign_type: config.wechat.sign_type,
    };
    // One attempt at the configured host: the check is about this host, and an operator waits.
    let gateway_config = GatewayConfig {
        max_attempts: 1,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ..GatewayConfig::with_base(&config.wechat.api_base)
    };
    let gateway = match HttpPayGateway::new(merchant, gateway_config) {
        Ok(g) => g,
        Err(e) => return Line::new(Status::Fail, SUBJECT, format!("cannot build the HTTP client: {e}")),
    };
    let query = OrderQuery::by_out_trade_no(format!("CHECKCONFIG{}", random_alphanumeric(20)));
    let answer = gateway.order_query(&query).await;
    verdict(config, answer.map(drop))
}

/// What the answer to the query says about the configuration.
fn verdict(config: &AppConfig, answer: Result<(), WxError>) -> Line {
    let host = host_of(&config.wechat.api_base);
    let fail = |text: String| Line::new(Status::Fail, SUBJECT, text);
    let e = match answer {
        // An order under a random number exists: odd, but the key and merchant id worked.
        Ok(()) => return Line::new(Status::Ok, SUBJECT, format!("{host} accepts the key and merchant id")),
        Err(e) => e,
    };
    match e.err_code() {
        Some(ErrCode::ORDERNOTEXIST) => {
            return Line::new(
                Status::Ok,
                SUBJECT,
                format!(
                    "{host} accepts WECHAT_API_KEY ({}), WECHAT_MCH_ID and WECHAT_APPID (a query of an unused order: ORDERNOTEXIST)",
                    config.wechat.sign_type.as_str()
                ),
            );
        }
        Some(ErrCode::SIGNERROR) => {
            return fail(format!(
                "WECHAT_API_KEY is wrong (SIGNERROR from {host}); if the key is right, check WECHAT_SIGN_TYPE ({} now)",
                config.wechat.sign_type.as_str()
            ));
        }
        Some(ErrCode::MCHID_NOT_EXIST) => {
            return fail(format!("WECHAT_MCH_ID {} is unknown to {host} (MCHID_NOT_EXIST)", config.wechat.mch_id));
        }
        Some(ErrCode::APPID_NOT_EXIST) => {
            return fail(format!("WECHAT_APPID {} is unknown to {host} (APPID_NOT_EXIST)", config.wechat.appid));
        }
        Some(ErrCode::APPID_MCHID_NOT_MATCH) => {
            return fail(format!(
                "WECHAT_APPID {} is not bound to WECHAT_MCH_ID {} (APPID_MCHID_NOT_MATCH from {host}): fix one of them, or bind the appid in the merchant platform",
                config.wechat.appid, config.wechat.mch_id
            ));
        }
        Some(ErrCode::NOAUTH) => {
            return fail(format!(
                "WECHAT_MCH_ID {} has no permission for JSAPI payments at {host} (NOAUTH)",
                config.wechat.mch_id
            ));
        }
        _ => {}
    }
    fail(other_failure(config, &host, e))
}

fn other_failure(config: &AppConfig, host: &str, e: WxError) -> String {
    let base = &config.wechat.api_base;
    match e {
        WxError::Transport { message, .. } => {
            format!("WECHAT_API_BASE: cannot reach {base}: {message}")
        }
        WxError::HttpStatus { status, .. } => {
            format!("WECHAT_API_BASE: {base} answered HTTP {status}; is it WeChat Pay's API?")
        }
        WxError::MalformedReply(x) => {
            format!("WECHAT_API_BASE: {base} did not answer like WeChat Pay ({x})")
        }
        WxError::BadReplySignature(v) => format!(
            "the reply from {host} does not verify with WECHAT_API_KEY and WECHAT_SIGN_TYPE {} ({v})",
            config.wechat.sign_type.as_str()
        ),
        WxError::ForeignReply { field, got } => {
            let var = if field == "appid" { "WECHAT_APPID" } else { "WECHAT_MCH_ID" };
            format!("{var}: {host} answered for {field} {got:?}, not ours")
        }
        other => format!(
            "{host} refused the query: {other} (check WECHAT_APPID, WECHAT_MCH_ID, WECHAT_API_KEY and WECHAT_SIGN_TYPE)"
        ),
    }
}

fn host_of(base: &str) -> String {
    url::Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(|h| u.port().map_or_else(|| h.to_owned(), |p| format!("{h}:{p}"))))
        .unwrap_or_else(|| base.to_owned())
}
