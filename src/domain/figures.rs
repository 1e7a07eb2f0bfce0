//! The dashboard's figures: money received per Beijing day, conversion of the orders created in
//! a period, orders still paying, open exceptions. Money is integer fen throughout.

use chrono::NaiveDate;

use crate::wxpay::money::Fen;

/// What was paid on one Beijing calendar day (by `paid_at`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayRevenue {
    pub day: NaiveDate,
    pub paid_count: i64,
    pub paid: Fen,
}

/// Orders created in a period, and how many of them are paid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conversion {
    pub created: i64,
    pub paid: i64,
}

/// Everything the dashboard shows, read in one go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overview {
    /// One entry per day, oldest first, ending with today; days without payments are zeros.
    pub days: Vec<DayRevenue>,
    pub today: Conversion,
    pub yesterday: Conversion,
    /// Today and the six days before it.
    pub week: Conversion,
    /// Orders in PAYING now.
    pub paying: i64,
    /// Exceptions nobody has resolved yet.
    pub open_exceptions: i64,
}
