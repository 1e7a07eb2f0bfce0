//! The v3 trade bill: `GET /v3/bill/tradebill` names a short-lived `download_url` and the SHA1 of
//! the file; the file itself comes unsigned, so the hash (over the uncompressed bytes) is what
//! vouches for it. The URL must be on WeChat's own host: a download is never sent elsewhere.

use std::path::Path;

use aws_lc_rs::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY};
use tokio::io::AsyncWriteExt;

use super::client::V3PayGateway;
use super::errors::{self, Operation};
use super::models::{TRADE_BILL_PATH, TradeBillAnswer};
use crate::wxpay::download_bill::{BillDownload, DownloadBill};
use crate::wxpay::error::WxError;
use crate::wxpay::transport::{observe, read_limited, transport_error, with_retries};

/// Asks for the bill of `req.bill_date`, downloads it into `dest` as sent (GZIP or text), and
/// checks its hash. A day without trades is [`BillDownload::NoBill`].
pub(super) async fn download(gw: &V3PayGateway, req: &DownloadBill, dest: &Path) -> Result<BillDownload, WxError> {
    let mut path = format!(
        "{TRADE_BILL_PATH}?bill_date={}&bill_type={}",
        req.bill_date.format("%Y-%m-%d"),
        req.bill_type.as_str()
    );
    if req.gzip {
        path.push_str("&tar_type=GZIP");
    }
    let answer = match gw.call(Operation::TradeBill, reqwest::Method::GET, &path, None).await {
        Err(WxError::Business { reply, .. }) if reply.get("code") == Some("NO_STATEMENT_EXIST") => {
            return Ok(BillDownload::NoBill);
        }
        other => other?,
    };
    let bill: TradeBillAnswer = serde_json::from_slice(&answer.body)
        .map_err(|e| WxError::bad_field("download_url", format!("not the documented JSON: {e}")))?;
    if !bill.hash_type.eq_ignore_ascii_case("SHA1") {
        return Err(WxError::bad_field("hash_type", format!("unsupported {:?}", bill.hash_type)));
    }
    let url = checked_url(gw, &bill.download_url)?;
    let started = std::time::Instant::now();
    let result = with_retries(&gw.config, "billdownload", |_| {
        let (url, hash) = (url.clone(), bill.hash_value.as_str());
        async move { fetch(gw, url, dest, req.gzip, hash).await }
    })
    .await;
    observe("billdownload", started, &result);
    result.map(|bytes| BillDownload::Written { bytes, gzip: req.gzip })
}

/// `download_url` parsed, and only if it is on the host of our base URL or of the backup.
fn checked_url(gw: &V3PayGateway, download_url: &str) -> Result<reqwest::Url, WxError> {
    let url = reqwest::Url::parse(download_url)
        .map_err(|e| WxError::bad_field("download_url", format!("{download_url:?}: {e}")))?;
    let ours = std::iter::once(&gw.config.base_url).chain(gw.config.backup_url.as_ref());
    let allowed = ours.filter_map(|b| reqwest::Url::parse(b).ok()).any(|b| b.origin() == url.origin());
    if !allowed {
        return Err(WxError::bad_field("download_url", format!("{download_url:?} is not on WeChat Pay's host")));
    }
    Ok(url)
}

/// One download attempt: streamed into `dest`, then the SHA1 of the uncompressed bytes checked.
async fn fetch(gw: &V3PayGateway, url: reqwest::Url, dest: &Path, gzip: bool, hash: &str) -> Result<u64, WxError> {
    // A whole bill may take a while; the per-read timeout of the client still applies.
    let mut reply = gw
        .signed(&reqwest::Method::GET, url, None)
        .timeout(gw.config.request_timeout * 30)
        .send()
        .await
        .map_err(transport_error)?;
    if !reply.status().is_success() {
        let status = reply.status().as_u16();
        let body = read_limited(reply, 4096).await.unwrap_or_default();
        return Err(errors::from_answer(status, &body, Operation::TradeBill));
    }
    let io = |e: std::io::Error| WxError::Io(e.to_string());
    let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
    let mut digest = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
    let mut written = 0u64;
    while let Some(chunk) = reply.chunk().await.map_err(transport_error)? {
        file.write_all(&chunk).await.map_err(io)?;
        if !gzip {
            digest.update(&chunk);
        }
        written += chunk.len() as u64;
    }
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    let actual = if gzip { gunzip_sha1(dest).await? } else { hex(digest.finish().as_ref()) };
    if !actual.eq_ignore_ascii_case(hash) {
        return Err(WxError::bad_field("hash_value", format!("the bill's SHA1 is {actual}, WeChat said {hash}")));
    }
    Ok(written)
}

/// The SHA1 of a GZIP file's uncompressed content.
async fn gunzip_sha1(path: &Path) -> Result<String, WxError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let mut decoder = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
        let mut digest = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = std::io::Read::read(&mut decoder, &mut buf)?;
            if n == 0 {
                break;
            }
            digest.update(&buf[..n]);
        }
        Ok::<_, std::io::Error>(hex(digest.finish().as_ref()))
    })
    .await
    .map_err(|e| WxError::Io(e.to_string()))?
    .map_err(|e| WxError::bad_field("bill", format!("not a readable GZIP file: {e}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
