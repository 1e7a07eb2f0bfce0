//! What the merchant API reads: pages of orders with their full view, an order's refunds, one
//! refund.

use super::Payments;
use crate::db::{DbError, order_list, orders, refunds};
use crate::domain::listing::{Key, ListFilter, Seek};
use crate::domain::{Order, Refund};
use crate::error::AppError;

/// A page of the merchant's order list, newest first.
#[derive(Debug)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// Where the next page starts, when there are older orders.
    pub next: Option<Key>,
}

impl Payments {
    /// Up to `limit` orders matching `filter` after `seek`: the console's keyset query picks the
    /// page, then one primary-key read loads those orders whole.
    pub async fn orders_page(&self, filter: ListFilter, seek: Seek, limit: usize) -> Result<OrderPage, DbError> {
        self.db
            .read(move |c| {
                let page = order_list::page(c, &filter, &seek, limit)?;
                let next = if page.has_older { page.rows.last().map(|r| r.key()) } else { None };
                let numbers: Vec<String> = page.rows.into_iter().map(|r| r.out_trade_no).collect();
                Ok(OrderPage { orders: orders::find_many(c, &numbers)?, next })
            })
            .await
    }

    /// An order's refunds, oldest first (404 when there is no such order).
    pub async fn refunds_of(&self, out_trade_no: &str) -> Result<Vec<Refund>, AppError> {
        let no = out_trade_no.to_owned();
        let found = self
            .db
            .read(move |c| -> Result<_, DbError> {
                if orders::find(c, &no)?.is_none() {
                    return Ok(None);
                }
                refunds::for_order(c, &no).map(Some)
            })
            .await?;
        found.ok_or(AppError::NotFound("order"))
    }

    /// One refund by its number.
    pub async fn refund(&self, out_refund_no: &str) -> Result<Refund, AppError> {
        let no = out_refund_no.to_owned();
        self.db.read(move |c| refunds::find(c, &no)).await?.ok_or(AppError::NotFound("refund"))
    }
}
