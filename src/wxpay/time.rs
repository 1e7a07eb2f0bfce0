//! WeChat's clock: every v2 time is Beijing wall-clock time (UTC+8) without a zone marker.
//!
//! China has kept UTC+8 with no daylight saving since 1991, so a fixed offset is exact for any
//! date WeChat Pay can report and spares us a time-zone database.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("time {value:?} is not in the {format} format")]
pub struct TimeError {
    pub value: String,
    pub format: &'static str,
}

/// UTC+8, the offset of Asia/Shanghai.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

const COMPACT: &str = "%Y%m%d%H%M%S";
const DASHED: &str = "%Y-%m-%d %H:%M:%S";
const DATE: &str = "%Y%m%d";

/// Formats as `yyyyMMddHHmmss` in Beijing time (`time_start`, `time_expire`, `time_end`).
pub fn format_compact(t: DateTime<Utc>) -> String {
    t.with_timezone(&beijing()).format(COMPACT).to_string()
}

/// Parses `yyyyMMddHHmmss` Beijing time.
pub fn parse_compact(s: &str) -> Result<DateTime<Utc>, TimeError> {
    parse_local(s, COMPACT, "yyyyMMddHHmmss", 14)
}

/// Formats as `yyyy-MM-dd HH:mm:ss` Beijing time (bills, refund notify `success_time`).
pub fn format_dashed(t: DateTime<Utc>) -> String {
    t.with_timezone(&beijing()).format(DASHED).to_string()
}

/// Parses `yyyy-MM-dd HH:mm:ss` Beijing time.
pub fn parse_dashed(s: &str) -> Result<DateTime<Utc>, TimeError> {
    parse_local(s, DASHED, "yyyy-MM-dd HH:mm:ss", 19)
}

/// Formats a bill date as `yyyyMMdd`.
pub fn format_bill_date(d: NaiveDate) -> String {
    d.format(DATE).to_string()
}

/// Parses a `yyyyMMdd` bill date.
pub fn parse_bill_date(s: &str) -> Result<NaiveDate, TimeError> {
    let err = || TimeError { value: s.to_owned(), format: "yyyyMMdd" };
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    NaiveDate::parse_from_str(s, DATE).map_err(|_| err())
}

/// The Beijing calendar date of an instant.
pub fn beijing_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&beijing()).date_naive()
}

/// The UTC instant at which a Beijing calendar day begins.
pub fn beijing_day_start(d: NaiveDate) -> DateTime<Utc> {
    let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
    beijing().from_local_datetime(&midnight).single().expect("a fixed offset has no gaps").with_timezone(&Utc)
}

fn parse_local(s: &str, fmt: &str, name: &'static str, len: usize) -> Result<DateTime<Utc>, TimeError> {
    let err = || TimeError { value: s.to_owned(), format: name };
    // chrono tolerates missing zero padding; WeChat never sends it, and a wrong-length value is
    // the classic `yyyyMMddHHmms` typo, so insist on the exact width.
    if s.len() != len {
        return Err(err());
    }
    let naive = NaiveDateTime::parse_from_str(s, fmt).map_err(|_| err())?;
    Ok(beijing().from_local_datetime(&naive).single().ok_or_else(err)?.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_times_are_beijing_wall_clock() {
        let t = parse_compact("20091225091010").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2009, 12, 25, 1, 10, 10).unwrap());
        assert_eq!(format_compact(t), "20091225091010");
        assert_eq!(format_dashed(t), "2009-12-25 09:10:10");
        assert_eq!(parse_dashed("2009-12-25 09:10:10").unwrap(), t);
    }

    #[test]
    fn malformed_times_are_refused() {
        for bad in ["2009122509101", "200912250910100", "20091325091010", "2009-12-25", ""] {
            assert!(parse_compact(bad).is_err(), "{bad:?}");
        }
        assert!(parse_dashed("2014-11-1016：33：45").is_err());
        assert!(parse_bill_date("2024011").is_err());
        assert_eq!(parse_bill_date("20240131").unwrap(), NaiveDate::from_ymd_opt(2024, 1, 31).unwrap());
    }

    #[test]
    fn beijing_dates_cross_midnight_before_utc() {
        let t = Utc.with_ymd_and_hms(2024, 5, 1, 16, 30, 0).unwrap();
        assert_eq!(beijing_date(t), NaiveDate::from_ymd_opt(2024, 5, 2).unwrap());
        assert_eq!(
            beijing_day_start(NaiveDate::from_ymd_opt(2024, 5, 2).unwrap()),
            Utc.with_ymd_and_hms(2024, 5, 1, 16, 0, 0).unwrap()
        );
    }
}
