//! The reqwest implementation of [`PayGateway`]: configurable hosts, timeouts, bounded retries
//! with byte-identical requests, the backup host on network failures, mutual TLS for refunds.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::download_bill::{self, BillDownload, DownloadBill};
use super::error::WxError;
use super::gateway::PayGateway;
use super::merchant::Merchant;
use super::order_query::{self, CloseOrder, OrderQuery, OrderQueryReply};
use super::refund::{self, Refund, RefundQuery, RefundQueryReply, RefundReply};
use super::reply::check_reply_bound;
use super::tls::ClientIdentity;
use super::transport::{build_client, observe, read_limited, transport_error, with_retries};
use super::unified_order::{self, UnifiedOrder, UnifiedOrderReply};
use super::xml::{DEFAULT_MAX_BYTES, Fields};

pub const PRODUCTION_BASE: &str = "https://api.mch.weixin.qq.com";
/// The cross-city disaster-recovery host: same paths, used when the primary is unreachable.
pub const BACKUP_BASE: &str = "https://api2.mch.weixin.qq.com";
/// The current simulation system (signing key from `getsignkey`; refund without `secapi`).
pub const SANDBOX_BASE: &str = "https://api.mch.weixin.qq.com/xdc/apiv2sandbox";

/// Where and how to talk to WeChat Pay.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Origin plus optional path prefix, e.g. `https://api.mch.weixin.qq.com` or
    /// `http://127.0.0.1:8000/simulator`.
    pub base_url: String,
    pub backup_url: Option<String>,
    /// The sandbox serves refunds at `/pay/refund`.
    pub sandbox: bool,
    pub connect_timeout: Duration,
    /// Whole-request limit for API calls (not for bill downloads, which stream).
    pub request_timeout: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Pause before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    pub identity: Option<ClientIdentity>,
    /// Extra trusted roots (PEM), for a simulator or test double served over TLS.
    pub extra_root_pem: Vec<Vec<u8>>,
    /// Other appids bound to the merchant's mch_id (a Mini Program's): replies naming one are
    /// believed like the merchant's own.
    pub bound_appids: Vec<String>,
}

impl GatewayConfig {
    pub fn production() -> GatewayConfig {
        GatewayConfig {
            base_url: PRODUCTION_BASE.into(),
            backup_url: Some(BACKUP_BASE.into()),
            ..GatewayConfig::with_base(PRODUCTION_BASE)
        }
    }

    pub fn sandbox() -> GatewayConfig {
        GatewayConfig { sandbox: true, ..GatewayConfig::with_base(SANDBOX_BASE) }
    }

    /// A single host (a simulator or a test double) with default timeouts and retries.
    pub fn with_base(base_url: &str) -> GatewayConfig {
        GatewayConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            backup_url: None,
            sandbox: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(200),
            identity: None,
            extra_root_pem: Vec::new(),
            bound_appids: Vec::new(),
        }
    }
}

/// Talks to WeChat Pay over HTTPS (or HTTP for a local simulator).
#[derive(Clone, Debug)]
pub struct HttpPayGateway {
    merchant: Merchant,
    config: GatewayConfig,
    http: reqwest::Client,
    /// The client that presents the merchant certificate, when one is configured.
    cert_http: Option<reqwest::Client>,
}

impl HttpPayGateway {
    pub fn new(merchant: Merchant, config: GatewayConfig) -> Result<HttpPayGateway, WxError> {
        let http = build_client(&config, None)?;
        let cert_http = match &config.identity {
            Some(identity) => Some(build_client(&config, Some(identity))?),
            None => None,
        };
        Ok(HttpPayGateway { merchant, config, http, cert_http })
    }

    pub fn merchant(&self) -> &Merchant {
        &self.merchant
    }

    /// Signs (as `merchant`: ours, or ours under a bound appid), sends with retries, and checks
    /// the reply of one API call.
    async fn call(
        &self,
        merchant: &Merchant,
        path: &str,
        business: Vec<(&'static str, String)>,
        needs_cert: bool,
    ) -> Result<Fields, WxError> {
        let http = self.client_for(needs_cert)?;
        // Signed once: every retry sends these exact bytes, as WeChat requires for reentry.
        let body = merchant.signed_request(business).to_xml();
        let body = &body;
        let started = std::time::Instant::now();
        let result = with_retries(&self.config, path, |base| async move {
            let reply = self.send(http, &base, path, body, Some(self.config.request_timeout)).await?;
            let bytes = read_limited(reply, DEFAULT_MAX_BYTES).await?;
            check_reply_bound(&bytes, merchant, &self.config.bound_appids)
        })
        .await;
        observe(path, started, &result);
        result
    }

    fn client_for(&self, needs_cert: bool) -> Result<&reqwest::Client, WxError> {
        if !needs_cert {
            return Ok(&self.http);
        }
        match &self.cert_http {
            Some(c) => Ok(c),
            // A plain-HTTP base is a local simulator, which cannot check a certificate anyway.
            None if self.config.base_url.starts_with("http://") => Ok(&self.http),
            None => Err(WxError::CertificateRequired),
        }
    }

    async fn send(
        &self,
        http: &reqwest::Client,
        base: &str,
        path: &str,
        body: &str,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, WxError> {
        let mut request = http
            .post(format!("{base}{path}"))
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body.to_owned());
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        let reply = request.send().await.map_err(transport_error)?;
        let status = reply.status();
        if status != reqwest::StatusCode::OK {
            let body = read_limited(reply, 4096).await.unwrap_or_default();
            return Err(WxError::HttpStatus {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(reply)
    }

    async fn download_once(&self, base: &str, body: &str, dest: &Path) -> Result<BillDownload, WxError> {
        let mut reply = self.send(&self.http, base, download_bill::PATH, body, None).await?;
        let io = |e: std::io::Error| WxError::Io(e.to_string());
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut head: Vec<u8> = Vec::new();
        let mut written: u64 = 0;
        let mut kind: Option<bool> = None; // Some(gzip) once we know it is a bill.
        while let Some(chunk) = reply.chunk().await.map_err(transport_error)? {
            match kind {
                Some(_) => {
                    file.write_all(&chunk).await.map_err(io)?;
                    written += chunk.len() as u64;
                }
                None => {
                    head.extend_from_slice(&chunk);
                    if head.len() < 8 {
                        continue;
                    }
                    if download_bill::looks_like_xml_error(&head) {
                        if head.len() > DEFAULT_MAX_BYTES {
                            return Err(WxError::MalformedReply(super::xml::XmlError::TooLarge {
                                limit: DEFAULT_MAX_BYTES,
                            }));
                        }
                        continue;
                    }
                    kind = Some(download_bill::is_gzip(&head));
                    file.write_all(&head).await.map_err(io)?;
                    written += head.len() as u64;
                }
            }
        }
        match kind {
            Some(gzip) => {
                file.flush().await.map_err(io)?;
                file.sync_all().await.map_err(io)?;
                Ok(BillDownload::Written { bytes: written, gzip })
            }
            None if download_bill::looks_like_xml_error(&head) => download_bill::classify_error(&head),
            None if head.is_empty() => Err(WxError::MalformedReply(super::xml::XmlError::Empty)),
            None => {
                // A bill shorter than 8 bytes cannot hold even its header.
                Err(WxError::bad_field("bill", format!("{} bytes is too short for a bill", head.len())))
            }
        }
    }
}

#[async_trait]
impl PayGateway for HttpPayGateway {
    async fn unified_order(&self, req: &UnifiedOrder) -> Result<UnifiedOrderReply, WxError> {
        req.validate()?;
        let merchant = match &req.appid {
            Some(appid) => self.merchant.with_appid(appid),
            None => self.merchant.clone(),
        };
        let fields = self.call(&merchant, unified_order::PATH, req.business_fields(), false).await?;
        UnifiedOrderReply::from_fields(fields)
    }

    async fn order_query(&self, req: &OrderQuery) -> Result<OrderQueryReply, WxError> {
        req.validate()?;
        let fields = self.call(&self.merchant, order_query::QUERY_PATH, req.business_fields(), false).await?;
        OrderQueryReply::from_fields(fields)
    }

    async fn close_order(&self, req: &CloseOrder) -> Result<(), WxError> {
        req.validate()?;
        self.call(&self.merchant, order_query::CLOSE_PATH, req.business_fields(), false).await?;
        Ok(())
    }

    async fn refund(&self, req: &Refund) -> Result<RefundReply, WxError> {
        req.validate()?;
        let path = if self.config.sandbox { refund::SANDBOX_REFUND_PATH } else { refund::REFUND_PATH };
        let fields = self.call(&self.merchant, path, req.business_fields(), !self.config.sandbox).await?;
        RefundReply::from_fields(fields)
    }

    async fn refund_query(&self, req: &RefundQuery) -> Result<RefundQueryReply, WxError> {
        req.validate()?;
        let fields = self.call(&self.merchant, refund::REFUND_QUERY_PATH, req.business_fields(), false).await?;
        RefundQueryReply::from_fields(fields)
    }

    async fn download_bill(&self, req: &DownloadBill, dest: &Path) -> Result<BillDownload, WxError> {
        let body = self.merchant.signed_request(req.business_fields()).to_xml();
        let started = std::time::Instant::now();
        let result = with_retries(&self.config, download_bill::PATH, |base| {
            let body = &body;
            async move { self.download_once(&base, body, dest).await }
        })
        .await;
        observe(download_bill::PATH, started, &result);
        result
    }
}
