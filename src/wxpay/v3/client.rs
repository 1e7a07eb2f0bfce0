//! The reqwest implementation of [`PayGateway`] over API v3: every request signed, every answer's
//! signature checked (platform certificates refreshed on an unknown serial), errors read onto
//! the v2 vocabulary, the same retries, backup host, timeouts and metrics as v2.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap};

use super::aead::ApiV3Key;
use super::authorization::RequestSigner;
use super::certificate_refresh::Refresh;
use super::convert::{self, Ours};
use super::errors::{self, Operation};
use super::models::{self, CloseRequest, PrepayAnswer, RefundObject, Transaction};
use super::notify::{self, Opened, V3NotifyError};
use super::platform_keys::{CertificateCache, PlatformKeySource};
use super::verify::{self, SignatureError, SignedHeaders};
use crate::wxpay::client::GatewayConfig;
use crate::wxpay::download_bill::{BillDownload, DownloadBill};
use crate::wxpay::error::WxError;
use crate::wxpay::gateway::PayGateway;
use crate::wxpay::order_query::{CloseOrder, OrderQuery, OrderQueryReply};
use crate::wxpay::refund::{Refund, RefundQuery, RefundQueryReply, RefundRef, RefundReply};
use crate::wxpay::transport::{build_client, observe, read_limited, transport_error, with_retries};
use crate::wxpay::types::{OrderRef, TradeType};
use crate::wxpay::unified_order::{UnifiedOrder, UnifiedOrderReply};
use crate::wxpay::xml::{DEFAULT_MAX_BYTES, Fields};

/// A v3 merchant: who signs, the APIv3 key, the Official Account's appid and the other appids
/// bound to the mchid, and how WeChat is verified.
#[derive(Clone)]
pub struct V3Merchant {
    pub signer: RequestSigner,
    pub apiv3_key: ApiV3Key,
    pub appid: String,
    pub bound_appids: Vec<String>,
    pub platform: PlatformKeySource,
}

impl V3Merchant {
    /// The Official Account's appid and every bound one (answers about them are ours).
    pub fn appids(&self) -> Vec<String> {
        std::iter::once(self.appid.clone()).chain(self.bound_appids.iter().cloned()).collect()
    }
}

/// A signed, verified answer.
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Talks to WeChat Pay API v3.
#[derive(Clone)]
pub struct V3PayGateway {
    pub(crate) merchant: Arc<V3Merchant>,
    pub(crate) config: GatewayConfig,
    pub(crate) http: reqwest::Client,
    /// Where instances share downloaded platform certificates (none: each downloads its own).
    pub(crate) cache: Option<Arc<dyn CertificateCache>>,
}

impl V3PayGateway {
    pub fn new(merchant: V3Merchant, config: GatewayConfig) -> Result<V3PayGateway, WxError> {
        // v3 needs no client certificate: every call is authenticated by its signature.
        let http = build_client(&config, None)?;
        Ok(V3PayGateway { merchant: Arc::new(merchant), config, http, cache: None })
    }

    /// The same client sharing its platform certificates through `cache`.
    pub fn with_certificate_cache(self, cache: Arc<dyn CertificateCache>) -> V3PayGateway {
        V3PayGateway { cache: Some(cache), ..self }
    }

    pub fn merchant(&self) -> &V3Merchant {
        &self.merchant
    }

    /// Sends one call (its retries included), checks the answer's signature, and turns a non-2xx
    /// answer into its error. The body is serialized once, so every retry sends the same bytes.
    pub(crate) async fn call(
        &self,
        op: Operation,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, WxError> {
        self.ensure_certificates().await?;
        let started = std::time::Instant::now();
        let (method, body) = (&method, &body);
        let result = with_retries(&self.config, op.endpoint(), |base| async move {
            let answer = self.send(&base, method, path_and_query, body.as_deref()).await?;
            if !(200..300).contains(&answer.0) {
                // WeChat signs its error answers too: one that carries a signature must verify,
                // so a forged ORDER_PAID cannot steer us. One without (a proxy's 502) is read as is.
                if answer.1.contains_key(verify::HEADER_SIGNATURE) {
                    self.verify_answer(&answer.1, &answer.2).await?;
                }
                return Err(errors::from_answer(answer.0, &answer.2, op));
            }
            self.verify_answer(&answer.1, &answer.2).await?;
            Ok(Answer { status: answer.0, body: answer.2 })
        })
        .await;
        observe(op.endpoint(), started, &result);
        result
    }

    /// One signed request to `base` + `path_and_query`: status, headers and body (bounded).
    pub(crate) async fn send(
        &self,
        base: &str,
        method: &reqwest::Method,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, HeaderMap, Vec<u8>), WxError> {
        let url = reqwest::Url::parse(&format!("{base}{path_and_query}"))
            .map_err(|e| WxError::InvalidRequest(format!("bad URL {base}{path_and_query}: {e}")))?;
        let reply = self.signed(method, url, body).send().await.map_err(transport_error)?;
        let status = reply.status().as_u16();
        let headers = reply.headers().clone();
        let bytes = read_limited(reply, DEFAULT_MAX_BYTES).await?;
        Ok((status, headers, bytes))
    }

    /// A request to `url` with `Authorization` over exactly the path, query and body sent.
    pub(crate) fn signed(
        &self,
        method: &reqwest::Method,
        url: reqwest::Url,
        body: Option<&[u8]>,
    ) -> reqwest::RequestBuilder {
        let canonical = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let authorization = self.merchant.signer.authorization(method.as_str(), &canonical, body.unwrap_or_default());
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(self.config.request_timeout)
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json");
        if let Some(serial) = self.merchant.platform.request_serial() {
            request = request.header(verify::HEADER_SERIAL, serial);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body.to_vec());
        }
        request
    }

    /// Checks an answer's signature. An unknown certificate serial (a rotation) triggers one
    /// certificate refresh before the answer is refused.
    pub(crate) async fn verify_answer(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), WxError> {
        let signed = SignedHeaders::read(|name| headers.get(name).and_then(|v| v.to_str().ok()))
            .map_err(WxError::BadAnswerSignature)?;
        let now = Utc::now().timestamp();
        match verify::verify(&signed, body, &self.merchant.platform, now) {
            Err(SignatureError::UnknownSerial(serial))
                if matches!(self.merchant.platform, PlatformKeySource::Certificates(_)) =>
            {
                tracing::info!(%serial, "an answer names an unknown platform certificate; refreshing the certificates");
                self.refresh_certificates(Refresh::AnswerSerial(&serial)).await?;
                verify::verify(&signed, body, &self.merchant.platform, now).map_err(WxError::BadAnswerSignature)
            }
            other => other.map_err(WxError::BadAnswerSignature),
        }
    }

    /// Verifies and opens a notify at `now` (Unix seconds; a stored delivery re-processed is checked
    /// as of when it arrived). An unknown certificate serial triggers one refresh (at most one a
    /// minute, whoever sends the notify) before the notify is refused.
    pub async fn open_notify<T: serde::de::DeserializeOwned>(
        &self,
        headers: &SignedHeaders,
        body: &[u8],
        original_type: &'static str,
        now: i64,
    ) -> Result<Opened<T>, V3NotifyError> {
        let m = &self.merchant;
        let open = || notify::open(headers, body, &m.platform, &m.apiv3_key, now, original_type);
        match open() {
            Err(V3NotifyError::Signature(SignatureError::UnknownSerial(serial)))
                if matches!(m.platform, PlatformKeySource::Certificates(_)) =>
            {
                if let Err(e) = self.refresh_certificates(Refresh::NotifySerial(&serial)).await {
                    tracing::warn!(%serial, error = %e, "a notify names an unknown certificate and the refresh failed");
                }
                open()
            }
            other => other,
        }
    }

    /// Our mchid, and the appids that are ours.
    pub fn ours(&self) -> (String, Vec<String>) {
        (self.merchant.signer.mchid.clone(), self.merchant.appids())
    }

    fn json<T: serde::de::DeserializeOwned>(answer: &Answer, what: &str) -> Result<T, WxError> {
        serde_json::from_slice(&answer.body)
            .map_err(|e| WxError::bad_field(what, format!("not the documented JSON: {e}")))
    }
}

#[async_trait]
impl PayGateway for V3PayGateway {
    async fn unified_order(&self, req: &UnifiedOrder) -> Result<UnifiedOrderReply, WxError> {
        req.validate()?;
        if req.trade_type != TradeType::Jsapi {
            return Err(WxError::InvalidRequest(format!(
                "the v3 client places JSAPI orders only, not {}",
                req.trade_type
            )));
        }
        let appid = req.appid.as_deref().unwrap_or(&self.merchant.appid);
        let body = serde_json::to_vec(&convert::prepay_request(req, appid, &self.merchant.signer.mchid)?)
            .expect("a prepay request serializes");
        let answer = self.call(Operation::Prepay, reqwest::Method::POST, models::PREPAY_PATH, Some(body)).await?;
        let prepay: PrepayAnswer = Self::json(&answer, "prepay_id")?;
        if prepay.prepay_id.is_empty() {
            return Err(WxError::bad_field("prepay_id", "empty"));
        }
        let mut raw = Fields::new();
        raw.insert("prepay_id", prepay.prepay_id.clone());
        Ok(UnifiedOrderReply {
            prepay_id: prepay.prepay_id,
            trade_type: TradeType::Jsapi,
            code_url: None,
            mweb_url: None,
            raw,
        })
    }

    async fn order_query(&self, req: &OrderQuery) -> Result<OrderQueryReply, WxError> {
        req.validate()?;
        let mchid = &self.merchant.signer.mchid;
        let path = match &req.order {
            OrderRef::OutTradeNo(no) => models::query_path(no, mchid),
            OrderRef::TransactionId(id) => models::query_by_id_path(id, mchid),
        };
        let answer = self.call(Operation::Query, reqwest::Method::GET, &path, None).await?;
        let transaction: Transaction = Self::json(&answer, "transaction")?;
        let (mchid, appids) = self.ours();
        convert::order_query_reply(transaction, &Ours { mchid: &mchid, appids: &appids })
    }

    async fn close_order(&self, req: &CloseOrder) -> Result<(), WxError> {
        req.validate()?;
        let body = serde_json::to_vec(&CloseRequest { mchid: self.merchant.signer.mchid.clone() }).expect("serializes");
        let path = models::close_path(&req.out_trade_no);
        let answer = self.call(Operation::Close, reqwest::Method::POST, &path, Some(body)).await?;
        match answer.status {
            204 | 200 => Ok(()),
            other => Err(WxError::bad_field("status", format!("close answered HTTP {other}, expected 204"))),
        }
    }

    async fn refund(&self, req: &Refund) -> Result<RefundReply, WxError> {
        req.validate()?;
        let body = serde_json::to_vec(&convert::refund_request(req)).expect("a refund request serializes");
        let answer = self.call(Operation::Refund, reqwest::Method::POST, models::REFUND_PATH, Some(body)).await?;
        convert::refund_reply(Self::json::<RefundObject>(&answer, "refund")?)
    }

    async fn refund_query(&self, req: &RefundQuery) -> Result<RefundQueryReply, WxError> {
        req.validate()?;
        let RefundRef::OutRefundNo(no) = &req.by else {
            return Err(WxError::InvalidRequest("API v3 looks refunds up by out_refund_no only".into()));
        };
        let path = models::refund_query_path(no);
        let answer = self.call(Operation::RefundQuery, reqwest::Method::GET, &path, None).await?;
        convert::refund_query_reply(Self::json::<RefundObject>(&answer, "refund")?)
    }

    async fn download_bill(&self, req: &DownloadBill, dest: &Path) -> Result<BillDownload, WxError> {
        super::bill_download::download(self, req, dest).await
    }
}
