//! Issuing the JSAPI parameters: one `unifiedorder` per order, its prepay reused while young,
//! every re-issue byte-for-byte the same request (WeChat's reentry rule).

use chrono::{Duration, Utc};
use serde_json::json;

use super::Payments;
use super::apply::{Applied, Change, apply_change};
use crate::db::exceptions::{self, NewException};
use crate::db::orders;
use crate::domain::{ExceptionKind, Order, OrderState, TimelineSource};
use crate::error::AppError;
use crate::wxpay::jsapi::JsapiParams;
use crate::wxpay::types::is_valid_merchant_no;
use crate::wxpay::unified_order::UnifiedOrder;
use crate::wxpay::{ErrAction, ErrCode};

#[derive(Debug)]
pub enum Prepay {
    Params(JsapiParams),
    /// The order is (now known to be) paid: show the paid page.
    Paid(Order),
    /// The order can no longer be paid.
    Closed(Order),
    /// Another shopper (another openid) already holds the order's prepay: nothing was asked of
    /// WeChat and nothing changed.
    TakenByAnother,
}

impl Payments {
    pub async fn jsapi_params(&self, out_trade_no: &str, openid: &str, client_ip: &str) -> Result<Prepay, AppError> {
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
        if order.taken_by_another(openid) {
            return Ok(Prepay::TakenByAnother);
        }
        if let Some(prepay_id) = order.reusable_prepay(now) {
            return Ok(Prepay::Params(JsapiParams::new(&self.merchant, prepay_id, now)));
        }

        let client_ip = order.client_ip.clone().unwrap_or_else(|| client_ip.to_owned());
        let request = self.unified_order_request(&order, openid, &client_ip);
        match self.gateway.unified_order(&request).await {
            Ok(reply) => {
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
                    openid: openid.to_owned(),
                    client_ip,
                    prepay_id: reply.prepay_id.clone(),
                    issued_at,
                    first_query_at: issued_at + first_query,
                };
                let (detail, outbox) = (json!({ "prepay_id": reply.prepay_id }), self.outbox.clone());
                let source = TimelineSource::Checkout;
                let applied = self.db.write(move |c| apply_change(c, &no, change, source, detail, &outbox)).await?;
                match applied {
                    Applied::Changed { .. } => {
                        tracing::info!(out_trade_no, "prepay issued");
                        Ok(Prepay::Params(JsapiParams::new(&self.merchant, &reply.prepay_id, Utc::now())))
                    }
                    // Paid or closed while we were asking WeChat.
                    Applied::Refused { order, .. } | Applied::AlreadyDone { order } => Ok(settled(*order)),
                    Applied::UnknownOrder => Err(AppError::NotFound("order")),
                }
            }
            Err(e) => self.prepay_failed(order, e).await,
        }
    }

    async fn prepay_failed(&self, order: Order, e: crate::wxpay::WxError) -> Result<Prepay, AppError> {
        let no = order.out_trade_no.clone();
        match e.err_code().map(|c| (c.action(), c)) {
            Some((ErrAction::TreatAsPaid, _)) => {
                // Never trust ORDERPAID alone: confirm with a signed orderquery.
                let order = self.refresh_from_wechat(&no, true).await?.order;
                Ok(settled(order))
            }
            Some((_, ErrCode::ORDERCLOSED)) => {
                let (detail, outbox) = (json!({"reason": "ORDERCLOSED"}), self.outbox.clone());
                let applied = self
                    .db
                    .write(move |c| apply_change(c, &no, Change::Closed, TimelineSource::Checkout, detail, &outbox))
                    .await?;
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

    /// The unifiedorder request for an order: derived only from stored fields, so every
    /// re-issue is identical.
    fn unified_order_request(&self, order: &Order, openid: &str, client_ip: &str) -> UnifiedOrder {
        let mut req = UnifiedOrder::jsapi(
            order.description.clone(),
            order.out_trade_no.clone(),
            order.amount,
            client_ip,
            self.config.notify_url(),
            openid,
        );
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

fn settled(order: Order) -> Prepay {
    match order.state {
        OrderState::Paid => Prepay::Paid(order),
        _ => Prepay::Closed(order),
    }
}
