//! Creating an order from the merchant's request, idempotently by `merchant_order_id`.

use serde::Deserialize;

use super::Payments;
use crate::db::events;
use crate::db::orders::{self, NewOrder, Order};
use crate::domain::{Fen, OrderState, ids};
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
}

#[derive(Debug)]
pub enum Created {
    New(Order),
    /// The same request was made before; here is that order.
    Existing(Order),
}

impl Payments {
    pub async fn create_order(&self, req: CreateOrder) -> Result<Created, AppError> {
        let expires_in = self.validate(&req)?;
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
        };
        let inserted = self
            .db
            .write(move |conn| {
                orders::insert(conn, &new)?;
                events::insert(
                    conn,
                    &events::NewEvent {
                        out_trade_no: &new.out_trade_no,
                        kind: "created",
                        from_state: None,
                        to_state: Some(OrderState::Created.as_str()),
                        source: "api",
                        detail: serde_json::json!({
                            "merchant_order_id": new.merchant_order_id,
                            "amount_fen": new.amount_fen,
                        })
                        .to_string(),
                        created_at: now,
                    },
                )?;
                orders::find(conn, &new.out_trade_no)
            })
            .await;
        match inserted {
            Ok(Some(order)) => {
                tracing::info!(out_trade_no = %order.out_trade_no, amount_fen = order.amount.get(), "order created");
                Ok(Created::New(order))
            }
            Ok(None) => Err(AppError::Internal("the order vanished after insert".into())),
            Err(e) if e.is_unique_violation() => self.existing(req, expires_in).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The same `merchant_order_id` again: the same order if the request matches, else 409.
    async fn existing(&self, req: CreateOrder, expires_in: i64) -> Result<Created, AppError> {
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
}
