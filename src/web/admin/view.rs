//! Formatting for admin pages: money in yuan and Beijing time (names of states live in `labels`).

use chrono::{DateTime, Utc};

use crate::domain::Fen;
use crate::wxpay::time::beijing;

/// `¥1,234.50` style, exact from fen.
pub fn yuan(fen: Fen) -> String {
    let s = fen.to_yuan_string();
    let (sign, body) = s.strip_prefix('-').map_or(("", s.as_str()), |b| ("-", b));
    let (int, frac) = body.split_once('.').unwrap_or((body, "00"));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}¥{grouped}.{frac}")
}

/// `2026-11-27 18:05:09` in Beijing time.
pub fn beijing_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&beijing()).format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(beijing_time).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped_and_exact() {
        assert_eq!(yuan(Fen::new(0)), "¥0.00");
        assert_eq!(yuan(Fen::new(1)), "¥0.01");
        assert_eq!(yuan(Fen::new(123_456_789)), "¥1,234,567.89");
        assert_eq!(yuan(Fen::new(-100_000)), "-¥1,000.00");
    }
}
