//! The v3 trade bill: `GET /v3/bill/tradebill` writes the day's file from the shared bill rows
//! (the same file as v2's, behind a UTF-8 BOM as WeChat's v3 files have one), keeps it under a
//! token for five minutes (simulated clock, so a test can let it expire), and answers its SHA1
//! and a `download_url`; `GET /v3/billdownload/file?token=…` (signed request, unsigned answer)
//! serves it, gzipped when `tar_type=GZIP` was asked.
//!
//! The `download_url` is absolute and points where the tradebill call came: its Host header (or
//! the listening address), `https` when the simulator serves TLS or `X-Forwarded-Proto` says so,
//! and the mount base of the v3 routes (`/simulator` inside the app). An unknown or expired token
//! is `400 INVALID_REQUEST`, another merchant's `403 NO_AUTH` (the reference is silent on both).

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;

use super::answer::{Answer, V3Error};
use super::request::V3Call;
use crate::simulator::Simulator;
use crate::simulator::api::{check_day, day_bill};
use crate::simulator::bill_text::{self, BillLayout};
use crate::simulator::config::SimV3Merchant;
use crate::simulator::sim::clock;
use crate::wxpay::nonce::random_alphanumeric;
use crate::wxpay::types::BillType;
use crate::wxpay::v3::models::TradeBillAnswer;

pub(crate) const DOWNLOAD_PATH: &str = "/v3/billdownload/file";
const TOKEN_TTL: Duration = Duration::minutes(5);
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A bill waiting for its download.
#[derive(Clone, Debug)]
pub(crate) struct BillFile {
    pub mch_id: String,
    /// The uncompressed file.
    pub bytes: Arc<Vec<u8>>,
    pub gzip: bool,
    pub expires_at: DateTime<Utc>,
}

/// Lower-case hex SHA1, the bill's `hash_value`.
pub(crate) fn sha1_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_date(raw: &str) -> Option<NaiveDate> {
    (raw.len() == 10).then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()).flatten()
}

/// The query of tradebill: the date, the bill type, whether to gzip.
fn read_query(call: &V3Call) -> Result<(NaiveDate, BillType, bool), V3Error> {
    let raw = call.require_query("bill_date")?;
    let date = parse_date(&raw).ok_or_else(|| V3Error::param("/query/bill_date", "须为YYYY-MM-DD"))?;
    let bill_type = match call.query("bill_type") {
        None => BillType::All,
        Some(t) => BillType::parse(&t)
            .ok_or_else(|| V3Error::param("/query/bill_type", "仅支持ALL、SUCCESS、REFUND、RECHARGE_REFUND"))?,
    };
    let gzip = match call.query("tar_type").as_deref() {
        None => false,
        Some("GZIP") => true,
        Some(_) => return Err(V3Error::param("/query/tar_type", "仅支持GZIP")),
    };
    Ok((date, bill_type, gzip))
}

/// `GET /v3/bill/tradebill?bill_date=YYYY-MM-DD[&bill_type=][&tar_type=GZIP]`.
pub(crate) fn trade_bill(sim: &Simulator, merchant: &SimV3Merchant, call: &V3Call) -> Result<Answer, V3Error> {
    let (date, bill_type, gzip) = read_query(call)?;
    let (bill_creating, ready_hour) = (sim.faults().bill_creating, sim.config().bill_ready_hour);
    let (records, now) = sim.read(|state| {
        let now = clock(state.clock_offset_ms);
        match check_day(date, now, ready_hour) {
            Err((_, "20001")) => Err(V3Error::param("/query/bill_date", "须为三个月内已结束的一天")),
            Err(_) => Err(V3Error::new(400, "STATEMENT_CREATING", "账单生成中")),
            Ok(_) if bill_creating => Err(V3Error::new(400, "STATEMENT_CREATING", "账单生成中")),
            Ok(day) => Ok((day_bill(state.orders.values(), &merchant.mch_id, day, bill_type, None), now)),
        }
    })?;
    if records.is_empty() {
        return Err(V3Error::new(400, "NO_STATEMENT_EXIST", "账单文件不存在"));
    }
    let mut file = BOM.to_vec();
    bill_text::write_bill(&mut file, bill_type, BillLayout::Current, &records).map_err(|_| V3Error::system())?;
    let hash_value = sha1_hex(&file);
    let token = random_alphanumeric(32);
    let stored = BillFile { mch_id: merchant.mch_id.clone(), bytes: Arc::new(file), gzip, expires_at: now + TOKEN_TTL };
    sim.write(|state| {
        state.bill_files.retain(|_, f| f.expires_at > now);
        state.bill_files.insert(token.clone(), stored);
    });
    let tartype = if gzip { "&tartype=GZIP" } else { "" };
    let download_url = format!("{}{}{DOWNLOAD_PATH}?token={token}{tartype}", call.origin, call.base);
    Ok(Answer::json(&TradeBillAnswer { hash_type: "SHA1".into(), hash_value, download_url }))
}

/// `GET /v3/billdownload/file?token=…`: the raw file, gzipped when the tradebill call asked.
pub(crate) fn download(sim: &Simulator, merchant: &SimV3Merchant, call: &V3Call) -> Result<Answer, V3Error> {
    let token = call.require_query("token")?;
    let file = sim.read(|state| {
        let now = clock(state.clock_offset_ms);
        state.bill_files.get(&token).filter(|f| f.expires_at > now).cloned()
    });
    let file = file.ok_or_else(|| V3Error::new(400, "INVALID_REQUEST", "下载链接无效或已过期，请重新申请账单"))?;
    if file.mch_id != merchant.mch_id {
        return Err(V3Error::new(403, "NO_AUTH", "无权下载该账单"));
    }
    let bytes = if file.gzip {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&file.bytes).and_then(|_| encoder.finish()).map_err(|_| V3Error::system())?
    } else {
        file.bytes.as_ref().clone()
    };
    Ok(Answer::File { gzip: file.gzip, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_is_lower_hex_and_dates_are_dashed() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(parse_date("2024-05-09"), NaiveDate::from_ymd_opt(2024, 5, 9));
        assert_eq!(parse_date("20240509"), None);
        assert_eq!(parse_date("2024-5-9"), None);
    }
}
