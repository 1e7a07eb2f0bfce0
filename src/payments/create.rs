//! Creating an order from the merchant's request, idempotently by `merchant_order_id`.
//!
//! The JSON API's body is [`ApiCreateOrder`]: the order itself ([`CreateOrder`], which in-process
//! callers such as the demo shop build directly) plus an optional `webhook_url`, where this
//! order's webhooks go instead of the global `WEBHOOK_URL`. An order may also name a
//! `return_url`, where the shopper is sent back to after the checkout.

use serde::Deserialize;

use super::{Payments, webhook_address};
use crate::config::{return_url_problem, webhook_url_problem};
use crate::db::orders::{self, NewOrder};
use crate::db::{audit, events};
use crate::domain::{Actor, AuditAction, Fen, Order, OrderState, TimelineKind, TimelineSource, ids};
use crate::error::AppError;

/// The merchant's request, as the JSON API takes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    pub amount_fen: i64,
    pub description: String,
    pub merchant_order_id: String,
    #[serde(default)]
    pub attach: Option<String>,
    #[serde(default)]
    pub expires_in_seconds: Option<i64>,
    /// Where the shopper is sent back to after the checkout (an empty string counts as none).
    #[serde(default)]
    pub return_url: Option<String>,
}

/// The JSON API's request body: an order and, optionally, its own webhook URL. `CreateOrder`'s
/// fields are repeated rather than flattened because serde cannot deny unknown fields through
/// `#[serde(flatten)]`, and a misspelt field must be refused.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    description = "An order to create. The same merchant_order_id with the same fields returns the same order.",
    example = json!({"amount_fen": 1990, "description": "演示商店-龙井茶", "merchant_order_id": "A-1001"})
)]
pub struct ApiCreateOrder {
    /// The amount in fen (1 yuan = 100 fen), at most `MAX_ORDER_FEN`.
    pub amount_fen: i64,
    /// What the shopper sees in WeChat, at most 128 bytes.
    pub description: String,
    /// Your own order id (1 to 64 of `A-Z a-z 0-9 _ - | * @`), unique: the creation's idempotency.
    pub merchant_order_id: String,
    /// Your data, given back in the order and webhooks, at most 127 bytes.
    #[serde(default)]
    pub attach: Option<String>,
    /// How long the shopper may pay, 120 to 604800 seconds (default `DEFAULT_EXPIRES_IN_SECONDS`).
    #[serde(default)]
    pub expires_in_seconds: Option<i64>,
    /// Where this order's webhooks go instead of `WEBHOOK_URL` (needs `WEBHOOK_SECRET`).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Where the shopper is sent back to after the checkout, with `out_trade_no` and
    /// `merchant_order_id` appended: absolute http(s), at most 512 bytes, a host of
    /// `RETURN_URL_HOSTS` when set. Never proof of payment.
    #[serde(default)]
    pub return_url: Option<String>,
}

impl ApiCreateOrder {
    pub fn into_parts(self) -> (CreateOrder, Option<String>) {
        let ApiCreateOrder {
            amount_fen,
            description,
            merchant_order_id,
            attach,
            expires_in_seconds,
            webhook_url,
            return_url,
        } = self;
        (
            CreateOrder { amount_fen, description, merchant_order_id, attach, expires_in_seconds, return_url },
            webhook_url,
        )
    }
}

#[derive(Debug)]
pub enum Created {
    New(Order),
    /// The same request was made before; here is that order.
    Existing(Order),
}

impl Payments {
    pub async fn create_order(&self, req: CreateOrder) -> Result<Created, AppError> {
        self.create_order_with_webhook(req, None, None).await
    }

    /// [`Payments::create_order`] for an order whose webhooks go to `webhook_url` (an empty
    /// string counts as none); `actor` (an API token) is audited in the transaction that inserts it.
    pub async fn create_order_with_webhook(
        &self,
        req: CreateOrder,
        webhook_url: Option<String>,
        actor: Option<Actor>,
    ) -> Result<Created, AppError> {
        let expires_in = self.validate(&req)?;
        let webhook_url = self.validate_webhook_url(webhook_url).await?;
        let return_url = self.validate_return_url(req.return_url.clone())?;
        let now = crate::db::now();
        let new = NewOrder {
            out_trade_no: ids::new_out_trade_no(now.and_utc()),
            merchant_order_id: req.merchant_order_id.clone(),
            amount_fen: req.amount_fen,
            description: req.description.clone(),
            attach: req.attach.clone().filter(|a| !a.is_empty()),
            state: OrderState::Created.as_str().to_owned(),
            sign_type: self.merchant.sign_type.as_str().to_owned(),
            created_at: now,
            updated_at: now,
            expires_at: now + chrono::Duration::seconds(expires_in),
            webhook_url: webhook_url.clone(),
            return_url: return_url.clone(),
        };
        // Creations are short and independent: on SQLite they share commits (group commit).
        let inserted = self
            .db
            .write_grouped(move |conn| {
                orders::insert(conn, &new)?;
                let detail = serde_json::json!({
                    "merchant_order_id": new.merchant_order_id,
                    "amount_fen": new.amount_fen,
                });
                let states = (None, Some(OrderState::Created));
                events::insert(conn, &new.out_trade_no, TimelineKind::Created, TimelineSource::Api, states, &detail)?;
                if let Some(actor) = &actor {
                    let no = Some(new.out_trade_no.as_str());
                    audit::record(conn, actor, AuditAction::OrderCreated, no, Some(&new.merchant_order_id), detail)?;
                }
                orders::find(conn, &new.out_trade_no)
            })
            .await;
        match inserted {
            Ok(Some(order)) => {
                tracing::info!(out_trade_no = %order.out_trade_no, amount_fen = order.amount.get(), "order created");
                Ok(Created::New(order))
            }
            Ok(None) => Err(AppError::Internal("the order vanished after insert".into())),
            Err(e) if e.is_unique_violation() => self.existing(req, expires_in, (webhook_url, return_url)).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The same `merchant_order_id` again: the same order if the request matches (its validated
    /// webhook and return URLs included), else 409.
    async fn existing(
        &self,
        req: CreateOrder,
        expires_in: i64,
        (webhook_url, return_url): (Option<String>, Option<String>),
    ) -> Result<Created, AppError> {
        let id = req.merchant_order_id.clone();
        let order = self
            .db
            .read(move |conn| orders::find_by_merchant_order_id(conn, &id))
            .await?
            .ok_or_else(|| AppError::Internal("unique violation without an existing order".into()))?;
        let same_expiry =
            req.expires_in_seconds.is_none() || (order.expires_at - order.created_at).num_seconds() == expires_in;
        if order.amount == Fen::new(req.amount_fen)
            && order.description == req.description
            && order.attach == req.attach.filter(|a| !a.is_empty())
            && same_expiry
            && order.webhook_url == webhook_url
            && order.return_url == return_url
        {
            Ok(Created::Existing(order))
        } else {
            Err(AppError::Conflict(format!(
                "merchant_order_id {:?} already names order {} with different fields",
                order.merchant_order_id, order.out_trade_no
            )))
        }
    }

    fn validate(&self, req: &CreateOrder) -> Result<i64, AppError> {
        if req.amount_fen <= 0 {
            return Err(AppError::invalid("amount_fen", "must be a positive number of fen"));
        }
        if Fen::new(req.amount_fen) > self.config.max_order {
            return Err(AppError::invalid(
                "amount_fen",
                format!("must not exceed {} fen (MAX_ORDER_FEN)", self.config.max_order.get()),
            ));
        }
        let d = &req.description;
        if d.trim().is_empty() {
            return Err(AppError::invalid("description", "must not be empty"));
        }
        if d.len() > 128 {
            return Err(AppError::invalid("description", "must be at most 128 bytes (WeChat's body limit)"));
        }
        if d.chars().any(char::is_control) {
            return Err(AppError::invalid("description", "must not contain control characters"));
        }
        if !ids::is_valid_merchant_order_id(&req.merchant_order_id) {
            return Err(AppError::invalid("merchant_order_id", "must be 1 to 64 letters, digits or _-|*@"));
        }
        if let Some(a) = &req.attach {
            if a.len() > 127 {
                return Err(AppError::invalid("attach", "must be at most 127 bytes"));
            }
            if a.chars().any(char::is_control) {
                return Err(AppError::invalid("attach", "must not contain control characters"));
            }
        }
        let default = self.config.default_expires_in.as_secs() as i64;
        let expires_in = req.expires_in_seconds.unwrap_or(default);
        if !(120..=7 * 24 * 3600).contains(&expires_in) {
            return Err(AppError::invalid("expires_in_seconds", "must be between 120 and 604800"));
        }
        Ok(expires_in)
    }

    /// Where the shopper is sent back to: the form of [`return_url_problem`], and a host of
    /// `RETURN_URL_HOSTS` when that is set. Taken as written (the checkout appends to it).
    fn validate_return_url(&self, url: Option<String>) -> Result<Option<String>, AppError> {
        let Some(url) = url.filter(|u| !u.is_empty()) else { return Ok(None) };
        let field = "return_url";
        if let Some(problem) = return_url_problem(&url) {
            return Err(AppError::invalid(field, problem));
        }
        let hosts = &self.config.return_url_hosts;
        if !hosts.allows(&url) {
            return Err(AppError::invalid(field, format!("its host must be one of RETURN_URL_HOSTS ({hosts})")));
        }
        Ok(Some(url))
    }

    /// An order's own webhook URL: one `WEBHOOK_URL` could be ([`webhook_url_problem`]), and only
    /// when this server signs webhooks, since a receiver cannot trust an unsigned one. Its host
    /// must be public ([`webhook_address::refusal_at_creation`]; delivery checks again).
    async fn validate_webhook_url(&self, url: Option<String>) -> Result<Option<String>, AppError> {
        let Some(url) = url.filter(|u| !u.is_empty()) else { return Ok(None) };
        let field = "webhook_url";
        if self.config.jobs.webhook_secret.is_none() {
            return Err(AppError::invalid(
                field,
                "webhooks are not enabled on this server (WEBHOOK_SECRET is not set), so they could not be signed",
            ));
        }
        if let Some(problem) = webhook_url_problem(&url) {
            return Err(AppError::invalid(field, problem));
        }
        match webhook_address::refusal_at_creation(&url, self.config.jobs.webhook_addresses).await {
            Some(refusal) => Err(AppError::invalid(field, format!("{refusal}: webhooks go only to public addresses"))),
            None => Ok(Some(url)),
        }
    }
}
