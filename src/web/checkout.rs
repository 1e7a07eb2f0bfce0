//! The shopper's pages: the checkout (with OAuth `snsapi_base` for the openid), the JSAPI
//! parameters, the status endpoint `pay.js` polls, and the final pages.

use std::sync::Arc;

use askama::Template;
use chrono::Utc;
use rocket::http::{Cookie, CookieJar, SameSite, Status};
use rocket::response::Redirect;
use rocket::response::content::RawHtml;
use rocket::serde::json::{Json, Value, json};
use rocket::{Either, State, get, post, routes};

use crate::config::AppConfig;
use crate::domain::{Order, OrderState, PaymentApp, TimelineSource};
use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::prepay::{Payer, Prepay};
use crate::payments::shopper::ShopperSignIn;
use crate::web::assets::VERSION;
use crate::web::client::{ClientIp, InWeChat, SameOrigin};
use crate::web::oauth_state::StateSigner;
use crate::web::page::render;
use crate::wxpay::oauth::{OAuthClient, authorize_url};

const OPENID_COOKIE: &str = "wx_openid";
const NONCE_COOKIE: &str = "wx_oauth_nonce";
/// What another shopper is told when the first one holds the order.
const TAKEN: &str = "此订单已由其他微信用户发起支付";
/// How long the paid page counts down before sending the shopper back to the merchant.
const AUTO_RETURN_SECONDS: u32 = 3;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_checkout, get_oauth_callback, post_jsapi, get_status]
}

#[derive(Template)]
#[template(path = "checkout/pay.html")]
struct PayPage<'a> {
    merchant: &'a str,
    order: &'a Order,
    amount: String,
    bridge_script: Option<String>,
    /// The way back to the merchant, offered once a payment has failed.
    return_link: Option<String>,
    /// The order's last payment failed (PAYERROR): the way back is offered from the start.
    failed: bool,
    version: crate::web::assets::Assets,
}

#[derive(Template)]
#[template(path = "checkout/open_in_wechat.html")]
struct OpenInWeChatPage<'a> {
    merchant: &'a str,
    order: &'a Order,
    amount: String,
    link: String,
    qr_svg: String,
    version: crate::web::assets::Assets,
}

#[derive(Template)]
#[template(path = "checkout/done.html")]
struct DonePage<'a> {
    merchant: &'a str,
    order: &'a Order,
    amount: String,
    paid: bool,
    /// The way back to the merchant; the paid page takes it by itself after
    /// [`AUTO_RETURN_SECONDS`], the closed page only offers it.
    return_link: Option<String>,
    auto_return_seconds: u32,
    version: crate::web::assets::Assets,
}

/// Shown to a shopper other than the one the order's prepay was issued to.
#[derive(Template)]
#[template(path = "checkout/taken.html")]
struct TakenPage<'a> {
    merchant: &'a str,
    order: &'a Order,
    amount: String,
    version: crate::web::assets::Assets,
}

type Page = Either<(Status, RawHtml<String>), Redirect>;

fn page(t: &impl Template) -> Result<Page, AppError> {
    Ok(Either::Left((Status::Ok, render(t)?)))
}

/// The openid remembered for this browser and appid, if any.
fn remembered_openid(cookies: &CookieJar<'_>, appid: &str) -> Option<String> {
    let cookie = cookies.get_private(OPENID_COOKIE)?;
    let (cookie_appid, openid) = cookie.value().split_once(':')?;
    (cookie_appid == appid && !openid.is_empty()).then(|| openid.to_owned())
}

#[get("/pay/<out_trade_no>")]
async fn get_checkout(
    out_trade_no: &str,
    payments: &State<Payments>,
    signer: &State<StateSigner>,
    cookies: &CookieJar<'_>,
    in_wechat: InWeChat,
) -> Result<Page, AppError> {
    let config = &payments.config;
    let order = payments.load(out_trade_no).await?;
    let amount = order.amount.to_yuan_string();
    let merchant = config.merchant_name.as_str();
    let expired = order.is_expired(Utc::now());
    if matches!(order.state, OrderState::Paid | OrderState::Closed) || expired {
        let paid = order.state == OrderState::Paid;
        let return_link = order.return_link();
        let auto_return_seconds = AUTO_RETURN_SECONDS;
        return page(&DonePage {
            merchant,
            order: &order,
            amount,
            paid,
            return_link,
            auto_return_seconds,
            version: VERSION,
        });
    }
    if !config.simulator && !in_wechat.0 {
        let link = config.checkout_url(&order.out_trade_no);
        let qr_svg = qr_svg(&link);
        return page(&OpenInWeChatPage { merchant, order: &order, amount, link, qr_svg, version: VERSION });
    }
    let Some(openid) = remembered_openid(cookies, &config.wechat.appid) else {
        let (state, nonce) = signer.issue(&order.out_trade_no, Utc::now().timestamp());
        let mut cookie = Cookie::new(NONCE_COOKIE, nonce);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_http_only(true);
        cookie.set_secure(config.is_https());
        cookie.set_path("/pay");
        cookies.add_private(cookie);
        let url = authorize_url(&config.wechat.open_base, &config.wechat.appid, &config.oauth_callback_url(), &state)?;
        return Ok(Either::Right(Redirect::to(url)));
    };
    if order.taken_by_another(&openid) {
        // 409: the link is fine, but this order is held by the shopper who opened it first.
        let taken = render(&TakenPage { merchant, order: &order, amount, version: VERSION })?;
        return Ok(Either::Left((Status::Conflict, taken)));
    }
    let bridge_script = config.simulator.then(|| "/simulator/bridge.js".to_owned());
    let (return_link, failed) = (order.return_link(), order.state == OrderState::PayError);
    page(&PayPage { merchant, order: &order, amount, bridge_script, return_link, failed, version: VERSION })
}

#[get("/pay/oauth/callback?<code>&<state>")]
async fn get_oauth_callback(
    code: Option<&str>,
    state: Option<&str>,
    payments: &State<Payments>,
    signer: &State<StateSigner>,
    oauth: &State<OAuthClient>,
    cookies: &CookieJar<'_>,
) -> Result<Redirect, AppError> {
    let config = &payments.config;
    let verified = state
        .and_then(|s| signer.verify(s, Utc::now().timestamp()))
        .ok_or_else(|| AppError::invalid("state", "登录链接已失效，请重新打开支付链接"))?;
    let cookie_nonce = cookies.get_private(NONCE_COOKIE).map(|c| c.value().to_owned());
    if cookie_nonce.as_deref() != Some(verified.nonce.as_str()) {
        return Err(AppError::invalid("state", "登录请求不是从本浏览器发起的，请重新打开支付链接"));
    }
    let signed_in = payments.sign_in_shopper(&verified.nonce, code, oauth).await?;
    if signed_in == ShopperSignIn::Replayed {
        return Err(AppError::invalid("state", "登录链接已使用过，请重新打开支付链接"));
    }
    cookies.remove_private(Cookie::build(NONCE_COOKIE).path("/pay"));
    let ShopperSignIn::Openid(openid) = signed_in else {
        return Err(AppError::invalid("code", "微信未返回授权码"));
    };
    let mut cookie = Cookie::new(OPENID_COOKIE, format!("{}:{}", config.wechat.appid, openid));
    cookie.set_same_site(SameSite::Lax);
    cookie.set_http_only(true);
    cookie.set_secure(config.is_https());
    cookie.set_path("/");
    cookie.set_max_age(rocket::time::Duration::days(30));
    cookies.add_private(cookie);
    Ok(Redirect::to(format!("/pay/{}", verified.out_trade_no)))
}

#[post("/pay/<out_trade_no>/jsapi")]
async fn post_jsapi(
    out_trade_no: &str,
    _same_origin: SameOrigin,
    payments: &State<Payments>,
    cookies: &CookieJar<'_>,
    ip: ClientIp,
) -> Result<Json<Value>, (Status, Json<Value>)> {
    let config: &Arc<AppConfig> = &payments.config;
    let Some(openid) = remembered_openid(cookies, &config.wechat.appid) else {
        return Err((Status::Unauthorized, Json(json!({ "error": "请重新打开支付链接完成微信授权" }))));
    };
    let json_error = |e: AppError| {
        e.log();
        (e.status(), Json(json!({ "error": e.public_message() })))
    };
    let payer = Payer {
        app: PaymentApp::OfficialAccount,
        openid,
        client_ip: ip.0.to_string(),
        source: TimelineSource::Checkout,
    };
    match payments.jsapi_params(out_trade_no, &payer).await.map_err(json_error)? {
        Prepay::Params(params) => Ok(Json(json!({ "state": "PAYING", "params": params }))),
        Prepay::Paid(order) | Prepay::Closed(order) => Ok(Json(json!({ "state": order.state.as_str() }))),
        // The page reloads on TAKEN and shows the taken page (a payment started in the Mini
        // Program is another shopper's here: its openid is the Mini Program's).
        Prepay::TakenByAnother | Prepay::StartedInOtherApp(_) => {
            Err((Status::Conflict, Json(json!({ "state": "TAKEN", "error": TAKEN }))))
        }
    }
}

#[get("/pay/<out_trade_no>/status")]
async fn get_status(out_trade_no: &str, payments: &State<Payments>) -> Result<Json<Value>, (Status, Json<Value>)> {
    match payments.status(out_trade_no).await {
        Ok(order) => Ok(Json(json!({ "state": order.state.as_str() }))),
        // WeChat unreachable: report what we know; the page keeps polling.
        Err(AppError::Gateway(e)) => {
            tracing::warn!(out_trade_no, error = %e, "status query failed");
            let order = payments
                .load(out_trade_no)
                .await
                .map_err(|e| (e.status(), Json(json!({"error": e.public_message()}))))?;
            Ok(Json(json!({ "state": order.state.as_str() })))
        }
        Err(e) => Err((e.status(), Json(json!({ "error": e.public_message() })))),
    }
}

fn qr_svg(link: &str) -> String {
    match qrcode::QrCode::new(link.as_bytes()) {
        Ok(code) => code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build(),
        Err(_) => String::new(),
    }
}
