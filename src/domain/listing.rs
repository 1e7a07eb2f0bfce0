//! What the console's order list can be asked for (filters and keyset positions) and the rows it
//! shows; the list page and the CSV export both read these.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::order::OrderState;
use crate::wxpay::money::Fen;

/// What the list is narrowed to. Times are UTC; the web layer turns Beijing days into them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub state: Option<OrderState>,
    /// `created_at >= created_from`.
    pub created_from: Option<NaiveDateTime>,
    /// `created_at < created_before` (exclusive, so a Beijing day ends exactly at the next one's start).
    pub created_before: Option<NaiveDateTime>,
    /// `amount_fen >= min_fen`.
    pub min_fen: Option<i64>,
    /// `amount_fen <= max_fen`.
    pub max_fen: Option<i64>,
    /// `paid_at >= paid_from` (only paid orders have one).
    pub paid_from: Option<NaiveDateTime>,
    /// `paid_at < paid_before`.
    pub paid_before: Option<NaiveDateTime>,
    /// Exactly this merchant_order_id (the API's filter; a point read on its unique index).
    pub merchant_order_id: Option<String>,
    /// An exact out_trade_no, transaction_id, merchant_order_id or out_refund_no.
    pub search: Option<String>,
}

/// A position in the list order: the sort key of one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub created_at: NaiveDateTime,
    pub out_trade_no: String,
}

/// Where a page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seek {
    /// The newest rows.
    First,
    /// The rows that come after (are older than) this key.
    After(Key),
    /// The rows that come just before (are newer than) this key: the previous page.
    Before(Key),
}

/// One order as the list and the export show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedOrder {
    pub out_trade_no: String,
    pub merchant_order_id: String,
    pub description: String,
    pub amount: Fen,
    pub state: OrderState,
    pub paid: Option<Fen>,
    pub paid_at: Option<DateTime<Utc>>,
    pub transaction_id: Option<String>,
    pub refunded: Fen,
    pub created_at: DateTime<Utc>,
}

impl ListedOrder {
    pub fn key(&self) -> Key {
        Key { created_at: self.created_at.naive_utc(), out_trade_no: self.out_trade_no.clone() }
    }
}

/// One page of the list, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub rows: Vec<ListedOrder>,
    /// Whether newer rows exist before the first one shown (a "previous page").
    pub has_newer: bool,
    /// Whether older rows exist after the last one shown (a "next page").
    pub has_older: bool,
}
