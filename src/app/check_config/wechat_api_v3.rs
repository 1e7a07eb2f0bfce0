//! The WeChat Pay API v3 check: a signed query of an order number nobody used. WeChat checks the
//! signature (the merchant private key and its serial) and the merchant id before it looks for
//! the order, so `ORDER_NOT_EXIST` proves both, and its answer must verify with the platform
//! certificates (downloaded and decrypted with the APIv3 key) or the WeChat Pay public key.

use std::time::Duration;

use super::{Line, Status};
use crate::config::{AppConfig, PlatformVerification};
use crate::wxpay::error::WxError;
use crate::wxpay::nonce::random_alphanumeric;
use crate::wxpay::order_query::OrderQuery;
use crate::wxpay::v3::client::V3PayGateway;
use crate::wxpay::{ErrCode, GatewayConfig, PayGateway};

const SUBJECT: &str = "WeChat Pay API v3";

pub(super) async fn check(config: &AppConfig) -> Line {
    let Some(v3) = &config.wechat.v3 else {
        return Line::new(Status::Skip, SUBJECT, "WECHAT_API_VERSION is v2");
    };
    if config.simulator {
        let base = &config.wechat.api_base;
        return Line::new(Status::Skip, SUBJECT, format!("simulated: serve talks to the mounted simulator at {base}"));
    }
    // One attempt at the configured host: the check is about this host, and an operator waits.
    let gateway_config = GatewayConfig {
        max_attempts: 1,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ..GatewayConfig::with_base(&config.wechat.api_base)
    };
    let gateway = match V3PayGateway::new(crate::app::v3_merchant(config, v3), gateway_config) {
        Ok(g) => g,
        Err(e) => return Line::new(Status::Fail, SUBJECT, format!("cannot build the HTTP client: {e}")),
    };
    let query = OrderQuery::by_out_trade_no(format!("CHECKCONFIG{}", random_alphanumeric(20)));
    let answer = gateway.order_query(&query).await.map(drop);
    let verified_by = match v3.platform {
        PlatformVerification::PublicKey { .. } => "WECHAT_PLATFORM_PUBLIC_KEY",
        PlatformVerification::Certificates => "the platform certificates (decrypted with WECHAT_APIV3_KEY)",
    };
    verdict(config, answer, verified_by)
}

fn verdict(config: &AppConfig, answer: Result<(), WxError>, verified_by: &str) -> Line {
    let base = &config.wechat.api_base;
    let fail = |text: String| Line::new(Status::Fail, SUBJECT, text);
    let e = match answer {
        Ok(()) => {
            return Line::new(
                Status::Ok,
                SUBJECT,
                format!("{base} accepts the signature; answers verify with {verified_by}"),
            );
        }
        Err(e) => e,
    };
    match (e.err_code(), &e) {
        (Some(ErrCode::ORDERNOTEXIST), _) => Line::new(
            Status::Ok,
            SUBJECT,
            format!(
                "{base} accepts WECHAT_MCH_PRIVATE_KEY, WECHAT_MCH_SERIAL_NO and WECHAT_MCH_ID, and its answer verifies with {verified_by} (a query of an unused order: ORDER_NOT_EXIST)"
            ),
        ),
        (Some(ErrCode::SIGNERROR), _) => fail(format!(
            "WECHAT_MCH_PRIVATE_KEY or WECHAT_MCH_SERIAL_NO is wrong (SIGN_ERROR from {base}): the key must be apiclient_key.pem of the certificate with that serial"
        )),
        (Some(ErrCode::MCHID_NOT_EXIST), _) => {
            fail(format!("WECHAT_MCH_ID {} is unknown to {base} (MCH_NOT_EXISTS)", config.wechat.mch_id))
        }
        (_, WxError::BadAnswerSignature(s)) => fail(format!(
            "{base} answered, but the answer does not verify with {verified_by} ({s}): check WECHAT_PLATFORM_PUBLIC_KEY and WECHAT_PLATFORM_PUBLIC_KEY_ID"
        )),
        (_, WxError::BadReplyField { field, reason }) if field == "certificates" => {
            fail(format!("WECHAT_APIV3_KEY: the platform certificates from {base} do not open with it ({reason})"))
        }
        (_, WxError::Transport { message, .. }) => fail(format!("WECHAT_API_BASE: cannot reach {base}: {message}")),
        _ => fail(format!("{base} refused the query: {e} (check the WECHAT_* v3 settings)")),
    }
}
