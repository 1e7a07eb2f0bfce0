//! Money: integer fen, and exact decimal parsing of the yuan figures WeChat prints in bills.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An amount of Chinese yuan in fen (1 CNY = 100 fen), the unit of every v2 API amount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fen(i64);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmountError {
    #[error("amount {0:?} is not a whole number of fen")]
    NotInteger(String),
    #[error("amount {0:?} is not a decimal number with at most {1} fractional digits")]
    NotDecimal(String, u32),
    #[error("amount {0:?} is out of range")]
    OutOfRange(String),
}

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub const fn new(fen: i64) -> Fen {
        Fen(fen)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }

    pub fn checked_sub(self, other: Fen) -> Option<Fen> {
        self.0.checked_sub(other.0).map(Fen)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Parses an API amount (`total_fee`, `refund_fee`…): ASCII digits only, as WeChat sends and
    /// expects them. `"0.01"`, `"+1"`, `"-1"`, `" 1"` and empty strings are refused.
    pub fn parse_api(s: &str) -> Result<Fen, AmountError> {
        if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::NotInteger(s.to_owned()));
        }
        s.parse::<i64>().map(Fen).map_err(|_| AmountError::OutOfRange(s.to_owned()))
    }

    /// Parses a yuan figure such as `"19.90"`, `"0.1"`, `"-3.00"` or `"12"` exactly.
    pub fn parse_yuan(s: &str) -> Result<Fen, AmountError> {
        parse_scaled_decimal(s, 2).map(Fen)
    }

    /// Formats as yuan with two decimals, e.g. `19.90`, `-0.05`.
    pub fn to_yuan_string(self) -> String {
        format_scaled_decimal(self.0, 2)
    }
}

impl fmt::Display for Fen {
    /// Displays the API form: the integer number of fen.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Parses a decimal string into an integer count of `10^-scale` units, without floating point.
///
/// Accepts an optional leading `-`, at least one integer digit, and at most `scale` fractional
/// digits (`"0.1"` with scale 2 is 10). Anything else, including exponents, spaces and `+`, is an
/// error, because a bill figure we cannot read exactly must stop reconciliation, not be rounded.
pub fn parse_scaled_decimal(s: &str, scale: u32) -> Result<i64, AmountError> {
    let bad = || AmountError::NotDecimal(s.to_owned(), scale);
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int_part, frac_part) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if int_part.is_empty()
        || int_part.len() > 15
        || frac_part.len() > scale as usize
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || (body.contains('.') && frac_part.is_empty())
    {
        return Err(bad());
    }
    let unit = 10i64.pow(scale);
    let int_value: i64 = int_part.parse().map_err(|_| bad())?;
    let mut frac_value: i64 = 0;
    for (i, digit) in frac_part.bytes().enumerate() {
        frac_value += i64::from(digit - b'0') * 10i64.pow(scale - 1 - i as u32);
    }
    let magnitude = int_value
        .checked_mul(unit)
        .and_then(|v| v.checked_add(frac_value))
        .ok_or_else(|| AmountError::OutOfRange(s.to_owned()))?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// Formats an integer count of `10^-scale` units as a decimal with exactly `scale` digits.
pub fn format_scaled_decimal(value: i64, scale: u32) -> String {
    let unit = 10u64.pow(scale);
    let magnitude = value.unsigned_abs();
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{magnitude}");
    }
    format!("{sign}{}.{:0width$}", magnitude / unit, magnitude % unit, width = scale as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_amounts_are_digits_only() {
        assert_eq!(Fen::parse_api("1990"), Ok(Fen(1990)));
        assert_eq!(Fen::parse_api("0"), Ok(Fen(0)));
        for bad in ["", "0.01", "-1", "+1", " 1", "1e3", "１", "9999999999999999999"] {
            assert!(Fen::parse_api(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn yuan_parsing_is_exact() {
        assert_eq!(Fen::parse_yuan("0.01"), Ok(Fen(1)));
        assert_eq!(Fen::parse_yuan("0.1"), Ok(Fen(10)));
        assert_eq!(Fen::parse_yuan("19.9"), Ok(Fen(1990)));
        assert_eq!(Fen::parse_yuan("19.99"), Ok(Fen(1999)));
        assert_eq!(Fen::parse_yuan("12"), Ok(Fen(1200)));
        assert_eq!(Fen::parse_yuan("-3.05"), Ok(Fen(-305)));
        assert_eq!(Fen::parse_yuan("0.00"), Ok(Fen(0)));
        // The float trap: 0.1 + 0.2 must be 0.3 exactly.
        let sum = Fen::parse_yuan("0.1").unwrap().checked_add(Fen::parse_yuan("0.2").unwrap()).unwrap();
        assert_eq!(sum, Fen::parse_yuan("0.3").unwrap());
        for bad in ["", ".5", "1.", "1.001", "1,00", "1e2", "+1", "--1", " 1", "abc", "1.0.0"] {
            assert!(Fen::parse_yuan(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn scaled_decimals_round_trip() {
        assert_eq!(parse_scaled_decimal("0.32000", 5), Ok(32000));
        assert_eq!(parse_scaled_decimal("-0.00006", 5), Ok(-6));
        assert_eq!(format_scaled_decimal(-6, 5), "-0.00006");
        assert_eq!(Fen(1990).to_yuan_string(), "19.90");
        assert_eq!(Fen(-5).to_yuan_string(), "-0.05");
        for v in [-123456789i64, -1, 0, 1, 99, 100, 987654321] {
            assert_eq!(parse_scaled_decimal(&format_scaled_decimal(v, 2), 2), Ok(v));
        }
    }
}
