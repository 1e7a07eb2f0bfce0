//! Enumerations shared by several messages: trade types, trade states, refund states, and the
//! two ways of naming an order.

use std::fmt;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),* }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($wire => Some($name::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// `trade_type`.
    TradeType {
        Jsapi => "JSAPI",
        Native => "NATIVE",
        App => "APP",
        Mweb => "MWEB",
    }
}

wire_enum! {
    /// `trade_state` of `orderquery`.
    TradeState {
        Success => "SUCCESS",
        Refund => "REFUND",
        NotPay => "NOTPAY",
        Closed => "CLOSED",
        Revoked => "REVOKED",
        UserPaying => "USERPAYING",
        PayError => "PAYERROR",
        Accept => "ACCEPT",
    }
}

impl TradeState {
    /// Whether the shopper's money has moved to the merchant (a refund may have followed).
    pub fn is_paid(self) -> bool {
        matches!(self, TradeState::Success | TradeState::Refund)
    }
}

wire_enum! {
    /// `refund_status` of refundquery and the refund notify.
    RefundStatus {
        Success => "SUCCESS",
        Processing => "PROCESSING",
        RefundClose => "REFUNDCLOSE",
        Change => "CHANGE",
        Fail => "FAIL",
    }
}

wire_enum! {
    /// `bill_type` of downloadbill.
    BillType {
        All => "ALL",
        Success => "SUCCESS",
        Refund => "REFUND",
        RechargeRefund => "RECHARGE_REFUND",
    }
}

/// Names an order: WeChat's `transaction_id` wins when both are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderRef {
    OutTradeNo(String),
    TransactionId(String),
}

impl OrderRef {
    pub(crate) fn field(&self) -> (&'static str, String) {
        match self {
            OrderRef::OutTradeNo(v) => ("out_trade_no", v.clone()),
            OrderRef::TransactionId(v) => ("transaction_id", v.clone()),
        }
    }
}

/// Whether `s` is a valid `out_trade_no` / `out_refund_no`: 1..=max characters of letters,
/// digits and `_ - | * @`.
pub fn is_valid_merchant_no(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for t in TradeType::ALL {
            assert_eq!(TradeType::parse(t.as_str()), Some(*t));
        }
        for s in TradeState::ALL {
            assert_eq!(TradeState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(TradeState::parse("success"), None);
        assert!(TradeState::Refund.is_paid());
        assert!(!TradeState::NotPay.is_paid());
    }

    #[test]
    fn merchant_numbers() {
        assert!(is_valid_merchant_no("S20210128170702357723", 32));
        assert!(is_valid_merchant_no("a-b_c|d*e@f", 32));
        assert!(!is_valid_merchant_no("", 32));
        assert!(!is_valid_merchant_no("has space", 32));
        assert!(!is_valid_merchant_no("订单1", 32));
        assert!(!is_valid_merchant_no(&"1".repeat(33), 32));
    }
}
