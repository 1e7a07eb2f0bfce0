//! `WxError`: every way a call to WeChat Pay can fail, and whether retrying can help.

use thiserror::Error;

use super::err_code::{ErrAction, ErrCode};
use super::sign::VerifyError;
use super::xml::{Fields, XmlError};

/// How a request failed to get an answer at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    Connect,
    Timeout,
    Other,
}

#[derive(Debug, Error)]
pub enum WxError {
    /// Our own request broke a documented rule; nothing was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No reply: connection refused, timed out, reset.
    #[error("transport error ({kind:?}): {message}")]
    Transport { kind: TransportKind, message: String },
    /// A reply that is not HTTP 200.
    #[error("HTTP status {status} from WeChat Pay")]
    HttpStatus { status: u16, body: String },
    /// A reply we could not read as a v2 XML message.
    #[error("malformed reply: {0}")]
    MalformedReply(XmlError),
    /// A reply whose signature does not verify: possibly forged, never trusted.
    #[error("reply signature rejected: {0}")]
    BadReplySignature(VerifyError),
    /// A v3 answer whose `Wechatpay-*` signature does not verify: possibly forged, never trusted.
    #[error("answer signature rejected: {0}")]
    BadAnswerSignature(super::v3::verify::SignatureError),
    /// A signed reply about another merchant (appid or mch_id differs from ours).
    #[error("reply for a different merchant: {field} is {got:?}")]
    ForeignReply { field: &'static str, got: String },
    /// `return_code=FAIL`: refused at the protocol layer (signature, format, parameters).
    #[error("WeChat Pay refused the request: {return_msg}")]
    ReturnFail { return_msg: String },
    /// `result_code=FAIL`: a business failure with its `err_code`.
    #[error("WeChat Pay business error {code}: {description}")]
    Business { code: ErrCode, description: String, reply: Box<Fields> },
    /// A successful reply that lacks a field or carries one we cannot read.
    #[error("unexpected reply field `{field}`: {reason}")]
    BadReplyField { field: String, reason: String },
    /// `downloadbill`: the bill is still being generated; try again later (after 10:00 Beijing).
    #[error("the bill is still being generated")]
    BillCreating,
    /// The call needs the merchant API certificate and none is configured.
    #[error("this API needs the merchant API certificate, and none is configured")]
    CertificateRequired,
    /// Local I/O while streaming a reply (writing a bill file).
    #[error("I/O error: {0}")]
    Io(String),
}

impl WxError {
    /// Whether sending the identical request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            WxError::Transport { .. } | WxError::MalformedReply(_) => true,
            // WeChat's deliberate probes: the same request answered again is signed correctly.
            WxError::BadAnswerSignature(super::v3::verify::SignatureError::Probe) => true,
            WxError::HttpStatus { status, .. } => *status >= 500,
            WxError::Business { code, .. } => code.action() == ErrAction::RetrySame,
            _ => false,
        }
    }

    /// The `err_code` WeChat gave, or the one a protocol-layer FAIL stands for: those replies carry
    /// only a `return_msg` such as `签名错误`, and callers should not have to match on Chinese text.
    pub fn err_code(&self) -> Option<ErrCode> {
        match self {
            WxError::Business { code, .. } => Some(code.clone()),
            WxError::ReturnFail { return_msg } => code_of_return_msg(return_msg),
            _ => None,
        }
    }

    /// WeChat refused the openid as not belonging to the request's appid (`appid and openid not
    /// match`, also worded `appid和openid不匹配`): an openid of another app.
    pub fn is_openid_mismatch(&self) -> bool {
        match self {
            WxError::Business { code: ErrCode::OPENID_MISMATCH, .. } => true,
            WxError::ReturnFail { return_msg: m } | WxError::Business { description: m, .. } => {
                let m = m.to_lowercase();
                m.contains("openid") && (m.contains("not match") || m.contains("不匹配"))
            }
            _ => false,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, WxError::Transport { kind: TransportKind::Timeout, .. })
    }

    pub(crate) fn bad_field(field: &str, reason: impl Into<String>) -> WxError {
        WxError::BadReplyField { field: field.to_owned(), reason: reason.into() }
    }
}

/// Known `return_msg` texts of protocol-layer failures, by the code they correspond to.
fn code_of_return_msg(msg: &str) -> Option<ErrCode> {
    const KNOWN: &[(&str, ErrCode)] = &[
        ("签名错误", ErrCode::SIGNERROR),
        ("sign error", ErrCode::SIGNERROR),
        ("post数据为空", ErrCode::POST_DATA_EMPTY),
        ("empty post data", ErrCode::POST_DATA_EMPTY),
        ("xml格式错误", ErrCode::XML_FORMAT_ERROR),
        ("编码格式错误", ErrCode::NOT_UTF8),
        ("请使用post方法", ErrCode::REQUIRE_POST_METHOD),
        ("require post method", ErrCode::REQUIRE_POST_METHOD),
        ("appid和mch_id不匹配", ErrCode::APPID_MCHID_NOT_MATCH),
        ("mch_id参数格式错误", ErrCode::MCHID_NOT_EXIST),
        ("appid参数长度有误", ErrCode::APPID_NOT_EXIST),
        ("invalid appid", ErrCode::APPID_NOT_EXIST),
    ];
    let lower = msg.to_lowercase();
    KNOWN.iter().find(|(text, _)| lower.contains(text)).map(|(_, code)| code.clone())
}
