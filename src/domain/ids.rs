//! Identifiers we create: the channel order number (`out_trade_no`) WeChat sees, kept apart from
//! the merchant's own order id so one business order could be paid under a new number later.

use chrono::{DateTime, Utc};
use rand::RngExt;

use crate::wxpay::time;
use crate::wxpay::types::is_valid_merchant_no;

/// `WC` + Beijing `yyyyMMddHHmmss` + 12 random digits: 28 characters, sortable by time, unique
/// without coordination between instances (10^12 values per second).
pub fn new_out_trade_no(now: DateTime<Utc>) -> String {
    let n: u64 = rand::rng().random_range(0..1_000_000_000_000);
    format!("WC{}{n:012}", time::format_compact(now))
}

/// A merchant order id must be safe to show, log and put in URLs: 1–64 of `[A-Za-z0-9_-|*@]`.
pub fn is_valid_merchant_order_id(id: &str) -> bool {
    is_valid_merchant_no(id, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_trade_numbers_are_valid_and_distinct() {
        let now = Utc::now();
        let a = new_out_trade_no(now);
        let b = new_out_trade_no(now);
        assert_eq!(a.len(), 28);
        assert!(is_valid_merchant_no(&a, 32));
        assert_ne!(a, b);
    }
}
