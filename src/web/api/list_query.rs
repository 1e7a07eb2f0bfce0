//! `GET /api/v1/orders`'s query string: each filter checked and named when wrong (an unknown
//! parameter too, so a typo never silently lists everything), and the opaque cursor.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as CURSOR_B64;
use chrono::{DateTime, NaiveDateTime};

use super::error::ApiError;
use crate::domain::OrderState;
use crate::domain::listing::{Key, ListFilter, Seek};

/// Rows per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// The parameters, as the API reference lists them.
pub const PARAMETERS: [&str; 10] = [
    "state",
    "created_from",
    "created_before",
    "paid_from",
    "paid_before",
    "merchant_order_id",
    "amount_min_fen",
    "amount_max_fen",
    "limit",
    "cursor",
];

/// A checked list request.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub filter: ListFilter,
    pub seek: Option<Key>,
    pub limit: usize,
}

impl ListQuery {
    pub fn seek(&self) -> Seek {
        self.seek.clone().map_or(Seek::First, Seek::After)
    }
}

/// Parses the raw query string (`None` when there is none).
pub fn parse(query: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery { limit: DEFAULT_LIMIT, ..ListQuery::default() };
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if seen.contains(&name.to_string()) {
            return Err(ApiError::invalid(name, "given more than once"));
        }
        seen.push(name.to_string());
        let f = &mut q.filter;
        match name.as_ref() {
            "state" => {
                let state = OrderState::parse(&value)
                    .ok_or_else(|| ApiError::invalid("state", "one of CREATED, PAYING, PAID, CLOSED, PAYERROR"))?;
                f.state = Some(state);
            }
            "created_from" => f.created_from = Some(time("created_from", &value)?),
            "created_before" => f.created_before = Some(time("created_before", &value)?),
            "paid_from" => f.paid_from = Some(time("paid_from", &value)?),
            "paid_before" => f.paid_before = Some(time("paid_before", &value)?),
            "merchant_order_id" => {
                if value.is_empty() || value.len() > 64 {
                    return Err(ApiError::invalid("merchant_order_id", "1 to 64 characters"));
                }
                f.merchant_order_id = Some(value.into_owned());
            }
            "amount_min_fen" => f.min_fen = Some(fen("amount_min_fen", &value)?),
            "amount_max_fen" => f.max_fen = Some(fen("amount_max_fen", &value)?),
            "limit" => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| ApiError::invalid("limit", format!("a whole number from 1 to {MAX_LIMIT}")))?;
            }
            "cursor" => q.seek = Some(decode_cursor(&value)?),
            other => {
                let known = PARAMETERS.join(", ");
                return Err(ApiError::invalid(other, format!("unknown parameter; the list takes {known}")));
            }
        }
    }
    Ok(q)
}

/// An RFC 3339 time (`2026-12-03T08:00:00+08:00`), as UTC.
fn time(field: &str, value: &str) -> Result<NaiveDateTime, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.naive_utc())
        .map_err(|_| ApiError::invalid(field, "an RFC 3339 time with its offset, e.g. 2026-12-03T08:00:00+08:00"))
}

fn fen(field: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::invalid(field, "a whole number of fen, 0 or more"))
}

/// The cursor after `key`: opaque to the merchant, `v1:<created_at µs>:<out_trade_no>` inside.
pub fn encode_cursor(key: &Key) -> String {
    CURSOR_B64.encode(format!("v1:{}:{}", key.created_at.and_utc().timestamp_micros(), key.out_trade_no))
}

fn decode_cursor(value: &str) -> Result<Key, ApiError> {
    let bad = || ApiError::invalid("cursor", "not a cursor this API gave out (pass next_cursor unchanged)");
    let text = CURSOR_B64.decode(value).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad)?;
    let mut parts = text.splitn(3, ':');
    let (Some("v1"), Some(micros), Some(no)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let created_at = micros.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(bad)?;
    if no.is_empty() || !crate::wxpay::types::is_valid_merchant_no(no, 32) {
        return Err(bad());
    }
    Ok(Key { created_at: created_at.naive_utc(), out_trade_no: no.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        let key = Key {
            created_at: DateTime::from_timestamp_micros(1_764_720_000_123_456).unwrap().naive_utc(),
            out_trade_no: "WC20261203ABC".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&key)).unwrap(), key);
        for bad in
            ["", "!!", &CURSOR_B64.encode("v2:1:WC1"), &CURSOR_B64.encode("v1:x:WC1"), &CURSOR_B64.encode("v1:1:a b")]
        {
            assert_eq!(decode_cursor(bad).unwrap_err().field.as_deref(), Some("cursor"), "{bad}");
        }
    }

    #[test]
    fn every_parameter_is_checked_and_named() {
        let q = parse(Some("state=PAID&amount_min_fen=100&amount_max_fen=200&limit=5&merchant_order_id=M-1&created_from=2026-12-01T00:00:00%2B08:00")).unwrap();
        assert_eq!(q.filter.state, Some(OrderState::Paid));
        assert_eq!((q.filter.min_fen, q.filter.max_fen, q.limit), (Some(100), Some(200), 5));
        assert_eq!(q.filter.merchant_order_id.as_deref(), Some("M-1"));
        assert_eq!(q.filter.created_from.unwrap().to_string(), "2026-11-30 16:00:00");
        assert_eq!(parse(None).unwrap().limit, DEFAULT_LIMIT);
        for (query, field) in [
            ("state=paid", "state"),
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("amount_min_fen=-1", "amount_min_fen"),
            ("amount_max_fen=1.5", "amount_max_fen"),
            ("paid_from=2026-12-01", "paid_from"),
            ("created_before=yesterday", "created_before"),
            ("colour=red", "colour"),
            ("limit=5&limit=6", "limit"),
        ] {
            assert_eq!(parse(Some(query)).unwrap_err().field.as_deref(), Some(field), "{query}");
        }
    }
}
