//! `AppError`: the one error type of the web and use-case layers, with its HTTP meaning.
//!
//! Policy: bad input is the client's to fix (4xx, with the field named and nothing changed);
//! WeChat being unreachable or refusing is a 502 with a message a shopper can act on; anything
//! else is ours (5xx), logged with detail and shown without it.

use rocket::http::Status;
use thiserror::Error;

use crate::db::DbError;
use crate::wxpay::WxError;

#[derive(Debug, Error)]
pub enum AppError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("WeChat Pay: {0}")]
    Gateway(#[from] WxError),
    #[error("WeChat sign-in: {0}")]
    OAuth(#[from] crate::wxpay::oauth::OAuthError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> AppError {
        AppError::Invalid { field: field.into(), message: message.into() }
    }

    pub fn status(&self) -> Status {
        match self {
            AppError::NotFound(_) => Status::NotFound,
            AppError::Invalid { .. } => Status::UnprocessableEntity,
            AppError::Conflict(_) => Status::Conflict,
            AppError::Forbidden(_) => Status::Forbidden,
            AppError::Unauthorized => Status::Unauthorized,
            AppError::Gateway(_) | AppError::OAuth(_) => Status::BadGateway,
            AppError::Db(DbError::Unavailable(_)) => Status::ServiceUnavailable,
            AppError::Db(_) | AppError::Internal(_) => Status::InternalServerError,
        }
    }

    /// A message safe to show to the person who made the request.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Gateway(_) => "微信支付暂时无法完成请求，请稍后重试".into(),
            AppError::OAuth(_) => "微信登录未完成，请重新打开支付链接".into(),
            AppError::Db(_) | AppError::Internal(_) => "服务暂时不可用，请稍后重试".into(),
            other => other.to_string(),
        }
    }

    /// A message for staff: like [`AppError::public_message`], but with the WeChat detail that
    /// the public message hides.
    pub fn staff_message(&self) -> String {
        match self {
            AppError::Gateway(w) => describe_wechat(w),
            AppError::OAuth(o) if o.is_retryable() => format!("{o}; retry in a moment"),
            AppError::OAuth(o) => o.to_string(),
            other => other.public_message(),
        }
    }

    /// Logs server-side failures with their detail.
    pub fn log(&self) {
        match self.status().code {
            500.. => tracing::error!(error = %self, "request failed"),
            _ => tracing::debug!(error = %self, "request refused"),
        }
    }
}

/// A WeChat error as staff read it (and as it is kept with a refund or a close attempt): the
/// code and WeChat's own description when there is one.
pub fn describe_wechat(e: &WxError) -> String {
    match e {
        WxError::Business { code, description, .. } => format!("{code}：{description}"),
        WxError::ReturnFail { return_msg } => format!("通信失败：{return_msg}"),
        WxError::Transport { .. } => format!("无法连接微信支付（{e}）"),
        other => other.to_string(),
    }
}

/// An outgoing HTTP request's failure in words, with its causes and without its URL (a webhook's
/// URL is shown beside it already; an alert robot's carries its key): `connection failed: …` or
/// `request failed: …`. Timeouts are the caller's to word, since it knows its own limit.
pub fn transport_failure(e: &reqwest::Error) -> String {
    let mut text = if e.is_connect() { "connection failed".to_owned() } else { "request failed".to_owned() };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
