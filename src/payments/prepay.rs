//! Issuing the JSAPI parameters, for our checkout page and for the merchant's own front ends (a
//! Mini Program, its own H5 pages) alike: one `unifiedorder` per order, under the appid of the app
//! that pays it, its prepay reused while young, every re-issue byte-for-byte the same request
//! (WeChat's reentry rule).

use chrono::{Duration, Utc};
use serde_json::json;

use super::Payments;
use super::apply::{Applied, Change, apply_change};
use crate::db::exceptions::{self, NewException};
use crate::db::orders;
use crate::domain::{ExceptionKind, Order, OrderState, PaymentApp, TimelineSource};
use crate::error::AppError;
use crate::wxpay::Merchant;
use crate::wxpay::jsapi::JsapiParams;
use crate::wxpay::types::is_valid_merchant_no;
use crate::wxpay::unified_order::UnifiedOrder;
use crate::wxpay::{ErrAction, ErrCode};

/// What a Mini Program payment asks for when none is configured.
pub const NO_MINI_PROGRAM: &str = "no Mini Program is configured: WECHAT_MINIPROGRAM_APPID is not set \
(set it and WECHAT_MINIPROGRAM_SECRET to take Mini Program payments)";

#[derive(Debug)]
pub enum Prepay {
    /// The parameters, signed over the app's appid (`appId`, which `wx.requestPayment` does not
    /// take but its `paySign` covers).
    Params(JsapiParams),
    /// The order is (now known to be) paid: show the paid page.
    Paid(Order),
    /// The order can no longer be paid.
    Closed(Order),
    /// Another shopper (another openid) already holds the order's prepay: nothing was asked of
    /// WeChat and nothing changed.
    TakenByAnother,
    /// The order's payment was started in this other app: its prepay (and out_trade_no) belongs
    /// to that app's appid. Nothing was asked of WeChat and nothing changed.
    StartedInOtherApp(PaymentApp),
}

/// Who is to pay, where: the app, the shopper's openid under that app's appid, the shopper's
/// address (WeChat's `spbill_create_ip`), and what the timeline names as the source.
#[derive(Clone, Debug)]
pub struct Payer {
    pub app: PaymentApp,
    pub openid: String,
    pub client_ip: String,
    pub source: TimelineSource,
}

impl Payments {
    /// The merchant identity payments in `app` are signed with: the Official Account's, or the
    /// same merchant (mch_id, key) under the Mini Program's appid. A conflict when the app is a
    /// Mini Program and none is configured.
    pub fn merchant_for(&self, app: PaymentApp) -> Result<Merchant, AppError> {
        match (app, &self.config.wechat.mini_program) {
            (PaymentApp::OfficialAccount, _) => Ok(self.merchant.clone()),
            (PaymentApp::MiniProgram, Some(mp)) => Ok(self.merchant.with_appid(&mp.appid)),
            (PaymentApp::MiniProgram, None) => Err(AppError::Conflict(NO_MINI_PROGRAM.into())),
        }
    }

    /// The front end's parameters for a prepay paid in `merchant`'s app: v2's `paySign` with the
    /// API key, or v3's RSA `paySign` with the merchant API private key.
    fn pay_params(&self, merchant: &Merchant, prepay_id: &str, now: chrono::DateTime<Utc>) -> JsapiParams {
        match &self.v3 {
            Some(v3) => crate::wxpay::v3::jsapi::params(
                &v3.merchant().signer.key,
                &merchant.appid,
                prepay_id,
                now.timestamp(),
                crate::wxpay::nonce::nonce_str(),
            ),
            None => JsapiParams::new(merchant, prepay_id, now),
        }
    }

    /// The payment parameters of an order for `payer`: the order's live prepay again, or a new
    /// one from `unifiedorder` under the app's appid.
    pub async fn jsapi_params(&self, out_trade_no: &str, payer: &Payer) -> Result<Prepay, AppError> {
        let merchant = self.merchant_for(payer.app)?;
        let order = self.load(out_trade_no).await?;
        match order.state {
            OrderState::Paid => return Ok(Prepay::Paid(order)),
            OrderState::Closed => return Ok(Prepay::Closed(order)),
            _ => {}
        }
        let now = Utc::now();
        if order.too_late_to_pay(now) {
            return Ok(Prepay::Closed(order));
        }
        // Before the openid: another app's shopper has another openid, but the reason is the app.
        if let Some(started) = order.started_in_other_app(payer.app) {
            return Ok(Prepay::StartedInOtherApp(started));
        }
        if order.taken_by_another(&payer.openid) {
            return Ok(Prepay::TakenByAnother);
        }
        if let Some(prepay_id) = order.reusable_prepay(now) {
            return Ok(Prepay::Params(self.pay_params(&merchant, prepay_id, now)));
        }
        self.issue_prepay(order, payer, &merchant).await
    }

    /// Asks WeChat for a prepay and records it on the order.
    async fn issue_prepay(&self, order: Order, payer: &Payer, merchant: &Merchant) -> Result<Prepay, AppError> {
        let client_ip = order.client_ip.clone().unwrap_or_else(|| payer.client_ip.clone());
        let request = self.unified_order_request(&order, payer, merchant, &client_ip);
        let reply = match self.gateway.unified_order(&request).await {
            Ok(reply) => reply,
            Err(e) => return self.prepay_failed(order, payer, e).await,
        };
        let no = order.out_trade_no.clone();
        let issued_at = crate::db::now().and_utc();
        // The poller's schedule counts from the prepay (a renewed prepay starts it over).
        let first_query = self
            .config
            .jobs
            .poll_schedule
            .first()
            .map_or(Duration::seconds(5), |d| Duration::from_std(*d).unwrap_or(Duration::seconds(5)));
        let change = Change::PrepayIssued {
            app: payer.app,
            openid: payer.openid.clone(),
            client_ip,
            prepay_id: reply.prepay_id.clone(),
            issued_at,
            first_query_at: issued_at + first_query,
        };
        let detail = json!({ "prepay_id": reply.prepay_id, "app": payer.app.as_str() });
        let (outbox, source) = (self.outbox.clone(), payer.source);
        let applied = self.db.write(move |c| apply_change(c, &no, change, source, detail, &outbox)).await?;
        match applied {
            Applied::Changed { .. } => {
                tracing::info!(out_trade_no = %order.out_trade_no, app = %payer.app, "prepay issued");
                Ok(Prepay::Params(self.pay_params(merchant, &reply.prepay_id, Utc::now())))
            }
            // Paid or closed while we were asking WeChat.
            Applied::Refused { order, .. } | Applied::AlreadyDone { order } => Ok(settled(*order)),
            Applied::UnknownOrder => Err(AppError::NotFound("order")),
        }
    }

    async fn prepay_failed(&self, order: Order, payer: &Payer, e: crate::wxpay::WxError) -> Result<Prepay, AppError> {
        let no = order.out_trade_no.clone();
        if e.is_openid_mismatch() {
            tracing::info!(out_trade_no = %order.out_trade_no, app = %payer.app, error = %e, "unifiedorder: foreign openid");
            let why = format!("WeChat Pay says this openid is not a {} openid ({e})", app_label(payer.app));
            return Err(AppError::invalid("openid", why));
        }
        match e.err_code().map(|c| (c.action(), c)) {
            Some((ErrAction::TreatAsPaid, _)) => {
                // Never trust ORDERPAID alone: confirm with a signed orderquery.
                let order = self.refresh_from_wechat(&no, true).await?.order;
                Ok(settled(order))
            }
            Some((_, ErrCode::ORDERCLOSED)) => {
                let (detail, outbox, source) = (json!({"reason": "ORDERCLOSED"}), self.outbox.clone(), payer.source);
                let applied =
                    self.db.write(move |c| apply_change(c, &no, Change::Closed, source, detail, &outbox)).await?;
                match applied {
                    Applied::Changed { order, .. }
                    | Applied::AlreadyDone { order }
                    | Applied::Refused { order, .. } => Ok(settled(*order)),
                    _ => Err(AppError::NotFound("order")),
                }
            }
            Some((ErrAction::NewOutTradeNo | ErrAction::FixRequest | ErrAction::FixConfiguration, code)) => {
                let exception = NewException {
                    kind: ExceptionKind::PrepayRefused,
                    dedupe_key: format!("prepay_refused:{no}:{}", code.as_str()),
                    out_trade_no: Some(no),
                    detail: json!({ "err_code": code.as_str(), "error": e.to_string() }),
                };
                self.db.write(move |c| exceptions::raise(c, &exception)).await?;
                tracing::error!(out_trade_no = %order.out_trade_no, error = %e, "unifiedorder refused");
                Err(AppError::Gateway(e))
            }
            _ => {
                tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "unifiedorder failed");
                Err(AppError::Gateway(e))
            }
        }
    }

    /// The unifiedorder request for an order: derived only from stored fields and the app (which
    /// the order keeps), so every re-issue is identical.
    fn unified_order_request(
        &self,
        order: &Order,
        payer: &Payer,
        merchant: &Merchant,
        client_ip: &str,
    ) -> UnifiedOrder {
        let mut req = UnifiedOrder::jsapi(
            order.description.clone(),
            order.out_trade_no.clone(),
            order.amount,
            client_ip,
            self.config.notify_url(),
            payer.openid.clone(),
        );
        // Only another app's appid is named: the Official Account's request stays as it always was.
        req.appid = (merchant.appid != self.merchant.appid).then(|| merchant.appid.clone());
        req.attach = order.attach.clone();
        req.device_info = Some("WEB".into());
        req.time_start = Some(order.created_at);
        req.time_expire = Some(order.expires_at);
        req
    }

    /// The order named by a URL or a request. A number that cannot be one of ours is not found
    /// without asking the database (PostgreSQL would refuse a NUL in it with an error).
    pub async fn load(&self, out_trade_no: &str) -> Result<Order, AppError> {
        if !is_valid_merchant_no(out_trade_no, 32) {
            return Err(AppError::NotFound("order"));
        }
        let no = out_trade_no.to_owned();
        self.db.read(move |c| orders::find(c, &no)).await?.ok_or(AppError::NotFound("order"))
    }
}

/// How an app is named to a developer.
pub fn app_label(app: PaymentApp) -> &'static str {
    match app {
        PaymentApp::OfficialAccount => "Official Account (WECHAT_APPID)",
        PaymentApp::MiniProgram => "Mini Program (WECHAT_MINIPROGRAM_APPID)",
    }
}

fn settled(order: Order) -> Prepay {
    match order.state {
        OrderState::Paid => Prepay::Paid(order),
        _ => Prepay::Closed(order),
    }
}
