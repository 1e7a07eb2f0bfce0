//! Paying from the merchant's own front end: a Mini Program signs its shopper in with a
//! `wx.login` code (`POST /wechat/mini-program/session`, the openid under its appid), and the
//! merchant's Mini Program or own H5 pages ask for an order's payment parameters
//! (`POST /orders/{out_trade_no}/payment`): the five of `wx.requestPayment`, or the six of
//! `WeixinJSBridge.invoke('getBrandWCPayRequest', …)`, from the same prepay rules as our checkout.

use std::net::IpAddr;

use rocket::data::Data;
use rocket::http::Status;
use rocket::serde::json::{Value, json};
use rocket::{State, post, routes};
use serde::Deserialize;

use super::auth::ApiAuth;
use super::error::{Answer, ApiError, ApiResult};
use super::idempotency::{self, IdempotencyKey};
use super::{parse_json, read_body, schema};
use crate::domain::{ApiScope, PaymentApp, TimelineSource};
use crate::payments::Payments;
use crate::payments::prepay::{Payer, Prepay, app_label};
use crate::web::client::ClientIp;
use crate::wxpay::jsapi::JsapiParams;
use crate::wxpay::mini_program::MiniProgramClient;

pub fn routes() -> Vec<rocket::Route> {
    routes![post_mini_program_session, post_payment]
}

/// The body of `POST /wechat/mini-program/session`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "code": "0a3Xyz000abcDEF1ghIJ2kLMn3opQR4s" }))]
pub struct MiniProgramSessionRequest {
    /// The code `wx.login()` gave the Mini Program: good once, for 5 minutes.
    pub code: String,
}

/// Which app pays: the Official Account (your H5 pages inside WeChat) or the Mini Program.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayingApp {
    OfficialAccount,
    MiniProgram,
}

impl From<PayingApp> for PaymentApp {
    fn from(app: PayingApp) -> PaymentApp {
        match app {
            PayingApp::OfficialAccount => PaymentApp::OfficialAccount,
            PayingApp::MiniProgram => PaymentApp::MiniProgram,
        }
    }
}

/// The body of `POST /orders/{out_trade_no}/payment`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "openid": "oZ7a1b2C3d4E5f6G7h8I9j0KlMnO", "app": "mini_program" }))]
pub struct PaymentRequest {
    /// The shopper's openid under the app's appid: from `POST /api/v1/wechat/mini-program/session`
    /// for `mini_program`, from your own Official Account sign-in (`snsapi_base`) for
    /// `official_account`.
    pub openid: String,
    pub app: PayingApp,
    /// The shopper's IP address, sent to WeChat as `spbill_create_ip` with the order's first
    /// prepay (default: the address this request came from).
    #[serde(default)]
    pub client_ip: Option<String>,
}

impl PaymentRequest {
    /// Who pays, with every input checked (a 422 naming the one at fault).
    fn payer(self, caller: IpAddr) -> Result<Payer, ApiError> {
        let openid_ok = |o: &str| {
            !o.is_empty() && o.len() <= 128 && o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !openid_ok(&self.openid) {
            return Err(ApiError::invalid("openid", "must be an openid: 1 to 128 of A-Z a-z 0-9 _ -"));
        }
        let client_ip = match self.client_ip.as_deref() {
            None => caller,
            Some(given) => given
                .trim()
                .parse::<IpAddr>()
                .map_err(|_| ApiError::invalid("client_ip", "must be an IPv4 or IPv6 address"))?,
        };
        let app = PaymentApp::from(self.app);
        Ok(Payer { app, openid: self.openid, client_ip: client_ip.to_string(), source: TimelineSource::Api })
    }
}

/// Signs a Mini Program's shopper in: the openid behind a `wx.login` code. WeChat's
/// `session_key` is neither returned nor kept.
#[utoipa::path(post, path = "/api/v1/wechat/mini-program/session", tag = "mini-program", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and request get the stored answer (24 h)")),
    request_body(content = MiniProgramSessionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The shopper's openid under the Mini Program's appid", body = schema::MiniProgramSession),
        (status = 403, description = "`insufficient_scope` (needs `write`), or `forbidden`: WeChat blocks this user as high-risk (40226)", body = schema::Error),
        (status = 409, description = "`conflict`: no Mini Program is configured (`WECHAT_MINIPROGRAM_APPID` is not set)", body = schema::Error),
        (status = 422, description = "`invalid`, `field` is `code`: wrong, expired or used (40029, 40163); call wx.login again", body = schema::Error),
        (status = 502, description = "`gateway`: WeChat is busy (-1), rate-limits the user (45011) or did not answer; retry", body = schema::Error),
    ))]
#[post("/wechat/mini-program/session", data = "<body>")]
pub(super) async fn post_mini_program_session(
    auth: ApiAuth,
    key: IdempotencyKey,
    body: Data<'_>,
    payments: &State<Payments>,
    client: &State<Option<MiniProgramClient>>,
) -> ApiResult {
    auth.require(ApiScope::Write)?;
    let bytes = read_body(body).await?;
    let work = || async {
        let request = parse_json::<MiniProgramSessionRequest>(&bytes)?;
        let shopper = payments.sign_in_mini_program(client.inner().as_ref(), &request.code).await?;
        let body = json!({
            "openid": shopper.openid,
            "unionid": shopper.unionid,
            "simulated": payments.config.simulator,
        });
        Ok(Answer::new(Status::Ok, body))
    };
    Ok(idempotency::run(payments, &auth, &key, "POST /api/v1/wechat/mini-program/session", &bytes, work).await)
}

/// The payment parameters of an order for a shopper in an app: one prepay per order, reused while
/// it lives (2 hours), under the appid of the app the payment started in.
#[utoipa::path(post, path = "/api/v1/orders/{out_trade_no}/payment", tag = "orders", security(("bearer" = [])),
    params(("out_trade_no" = String, Path, description = "The order number"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and request get the stored answer (24 h)")),
    request_body(content = PaymentRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The parameters, signed: pass `params` to wx.requestPayment or getBrandWCPayRequest", body = schema::Payment),
        (status = 403, description = "`insufficient_scope`: the token needs `write`", body = schema::Error),
        (status = 404, description = "No such order", body = schema::Error),
        (status = 409, description = "`conflict` with `reason`: `paid`, `closed` (closed or too close to its expiry), `taken` (another openid holds it), `other_app` (its payment started in the other app); or no Mini Program is configured", body = schema::Error),
        (status = 422, description = "An input is wrong (`field` names it; `openid` also when WeChat says it is not the app's)", body = schema::Error),
        (status = 502, description = "WeChat Pay did not answer or refused; retry", body = schema::Error),
    ))]
#[post("/orders/<out_trade_no>/payment", data = "<body>")]
pub(super) async fn post_payment(
    auth: ApiAuth,
    key: IdempotencyKey,
    out_trade_no: &str,
    body: Data<'_>,
    payments: &State<Payments>,
    ip: ClientIp,
) -> ApiResult {
    auth.require(ApiScope::Write)?;
    let bytes = read_body(body).await?;
    let request = format!("POST /api/v1/orders/{out_trade_no}/payment");
    let work = || async {
        let payer = parse_json::<PaymentRequest>(&bytes)?.payer(ip.0)?;
        let prepay = payments.jsapi_params(out_trade_no, &payer).await?;
        payment_answer(out_trade_no, payer.app, prepay, payments.config.simulator)
    };
    Ok(idempotency::run(payments, &auth, &key, &request, &bytes, work).await)
}

/// The parameters as the app's front end passes them on: `wx.requestPayment` takes no `appId`
/// (its `paySign` covers the Mini Program's all the same), `getBrandWCPayRequest` takes all six.
fn params_json(app: PaymentApp, p: &JsapiParams) -> Value {
    let mut params = json!({
        "timeStamp": p.time_stamp,
        "nonceStr": p.nonce_str,
        "package": p.package,
        "signType": p.sign_type,
        "paySign": p.pay_sign,
    });
    if app == PaymentApp::OfficialAccount {
        params["appId"] = json!(p.app_id);
    }
    params
}

fn payment_answer(out_trade_no: &str, app: PaymentApp, prepay: Prepay, simulated: bool) -> ApiResult {
    let conflict = |reason: &str, message: String| {
        Err(ApiError::new(Status::Conflict, "conflict", message).with("reason", json!(reason)))
    };
    match prepay {
        Prepay::Params(params) => Ok(Answer::new(
            Status::Ok,
            json!({
                "out_trade_no": out_trade_no,
                "app": app.as_str(),
                "params": params_json(app, &params),
                "simulated": simulated,
            }),
        )),
        Prepay::Paid(order) => conflict("paid", format!("order {} is paid already", order.out_trade_no)),
        Prepay::Closed(order) => conflict(
            "closed",
            format!(
                "order {} is closed, or too close to its expiry to be paid; create a new order",
                order.out_trade_no
            ),
        ),
        Prepay::TakenByAnother => conflict(
            "taken",
            format!(
                "order {out_trade_no} is held by another shopper: its payment was started for another openid, and a \
                 WeChat prepay belongs to one openid"
            ),
        ),
        Prepay::StartedInOtherApp(started) => conflict(
            "other_app",
            format!(
                "order {out_trade_no}'s payment was started in the {}: its prepay belongs to that appid, to which \
                 WeChat ties the order; pay it there, or create a new order for the {}",
                app_label(started),
                app_label(app)
            ),
        ),
    }
}
