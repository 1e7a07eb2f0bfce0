//! What both protocol clients share: the HTTP client (timeouts, roots, client certificate),
//! bounded retries with the backup host, reading bounded replies, and per-call metrics and logs.

use std::time::Duration;

use super::client::GatewayConfig;
use super::error::{TransportKind, WxError};
use super::tls::ClientIdentity;

/// Runs `attempt` until it succeeds, fails for good, or the attempts run out. A transport
/// failure moves the remaining attempts to the backup host, when there is one.
pub(crate) async fn with_retries<T, F, Fut>(config: &GatewayConfig, what: &str, mut attempt_at: F) -> Result<T, WxError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, WxError>>,
{
    let mut base = config.base_url.clone();
    let mut attempt = 1;
    loop {
        match attempt_at(base.clone()).await {
            Err(e) if e.is_retryable() && attempt < config.max_attempts => {
                tracing::warn!(what, attempt, error = %e, "WeChat Pay call failed; retrying with the same request");
                metrics::counter!("wechat_checkout_wechat_api_retries_total", "endpoint" => endpoint(what).to_owned())
                    .increment(1);
                if matches!(e, WxError::Transport { .. })
                    && let Some(backup) = &config.backup_url
                {
                    base.clone_from(backup);
                }
                tokio::time::sleep(backoff(config, attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn backoff(config: &GatewayConfig, attempt: u32) -> Duration {
    config.retry_backoff.saturating_mul(1 << (attempt - 1).min(6))
}

/// Records one call (its retries included) for `/metrics` and logs it: one line per call, in
/// the span of whatever made it (a request's id, a job).
pub(crate) fn observe<T>(path: &str, started: std::time::Instant, result: &Result<T, WxError>) {
    let (endpoint, outcome, elapsed) = (endpoint(path).to_owned(), outcome(result), started.elapsed());
    tracing::info!(endpoint = endpoint.as_str(), outcome, ms = elapsed.as_millis() as u64, "WeChat Pay call");
    metrics::histogram!("wechat_checkout_wechat_api_duration_seconds", "endpoint" => endpoint.clone()).record(elapsed);
    metrics::counter!("wechat_checkout_wechat_api_calls_total", "endpoint" => endpoint, "outcome" => outcome)
        .increment(1);
}

/// The API's name for a path: its last segment (`/secapi/pay/refund` is `refund`).
pub(crate) fn endpoint(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A bounded name for how a call ended: `success`, `business_<what to do>` for a business error
/// (by the class of its `err_code`, never the code itself: WeChat adds codes), or the kind of
/// failure.
pub fn outcome<T>(result: &Result<T, WxError>) -> &'static str {
    use super::err_code::ErrAction;
    match result {
        Ok(_) => "success",
        Err(WxError::Business { code, .. }) => match code.action() {
            ErrAction::RetrySame => "business_retry_same",
            ErrAction::TreatAsPaid => "business_treat_as_paid",
            ErrAction::NewOutTradeNo => "business_new_out_trade_no",
            ErrAction::FixConfiguration => "business_fix_configuration",
            ErrAction::FixRequest => "business_fix_request",
            ErrAction::NotFound => "business_not_found",
            ErrAction::RetryLater => "business_retry_later",
            ErrAction::NeedsAttention => "business_needs_attention",
        },
        Err(WxError::ReturnFail { .. }) => "return_fail",
        Err(WxError::Transport { .. }) => "transport_error",
        Err(WxError::HttpStatus { .. }) => "http_error",
        Err(
            WxError::MalformedReply(_)
            | WxError::BadReplySignature(_)
            | WxError::BadAnswerSignature(_)
            | WxError::ForeignReply { .. }
            | WxError::BadReplyField { .. },
        ) => "bad_reply",
        Err(WxError::BillCreating) => "bill_not_ready",
        Err(WxError::InvalidRequest(_) | WxError::CertificateRequired | WxError::Io(_)) => "local_error",
    }
}

pub(crate) fn build_client(
    config: &GatewayConfig,
    identity: Option<&ClientIdentity>,
) -> Result<reqwest::Client, WxError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.request_timeout)
        .use_rustls_tls()
        .user_agent(concat!("wechat-checkout/", env!("CARGO_PKG_VERSION")));
    for pem in &config.extra_root_pem {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| WxError::InvalidRequest(format!("bad root certificate: {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity.to_reqwest().map_err(|e| WxError::InvalidRequest(e.to_string()))?);
    }
    builder.build().map_err(|e| WxError::InvalidRequest(format!("HTTP client: {e}")))
}

pub(crate) fn transport_error(e: reqwest::Error) -> WxError {
    let kind = if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    };
    // reqwest hides the root cause (refused, reset, TLS) in the source chain.
    let mut detail = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail = format!(": {s}");
        source = s.source();
    }
    WxError::Transport { kind, message: format!("{}{detail}", e.without_url()) }
}

pub(crate) async fn read_limited(mut reply: reqwest::Response, limit: usize) -> Result<Vec<u8>, WxError> {
    let mut out = Vec::new();
    while let Some(chunk) = reply.chunk().await.map_err(transport_error)? {
        if out.len() + chunk.len() > limit {
            return Err(WxError::MalformedReply(super::xml::XmlError::TooLarge { limit }));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
