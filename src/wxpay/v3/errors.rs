//! v3 failures read onto the product's one vocabulary: an error answer (HTTP status and
//! `{"code","message","detail"}`) becomes the same [`WxError`] and [`ErrCode`] a v2 `err_code`
//! would, so every caller's "what to do" ([`ErrAction`](crate::wxpay::ErrAction)) is unchanged.

use crate::wxpay::err_code::ErrCode;
use crate::wxpay::error::WxError;
use crate::wxpay::xml::Fields;

use super::models::ErrorAnswer;

/// The operation a failure came from: one code (`RESOURCE_NOT_EXISTS`) means an unknown order
/// on refund and an unknown refund on refund query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Prepay,
    Query,
    Close,
    Refund,
    RefundQuery,
    TradeBill,
    Certificates,
}

impl Operation {
    /// The metric and log name: the v2 operation's, so dashboards read the same under both.
    pub fn endpoint(self) -> &'static str {
        match self {
            Operation::Prepay => "unifiedorder",
            Operation::Query => "orderquery",
            Operation::Close => "closeorder",
            Operation::Refund => "refund",
            Operation::RefundQuery => "refundquery",
            Operation::TradeBill => "downloadbill",
            Operation::Certificates => "certificates",
        }
    }
}

/// The code a v3 `code` stands for. Old v3 tables use the v2 spellings, so both are read.
pub fn normalize(code: &str, status: u16, op: Operation) -> ErrCode {
    let known = match code {
        "SYSTEM_ERROR" | "SYSTEMERROR" | "BANK_ERROR" | "BANKERROR" | "SERVICE_UNAVAILABLE" => ErrCode::SYSTEMERROR,
        "ORDER_NOT_EXIST" | "ORDERNOTEXIST" => ErrCode::ORDERNOTEXIST,
        "RESOURCE_NOT_EXISTS" | "NOT_FOUND" if op == Operation::RefundQuery => ErrCode::REFUNDNOTEXIST,
        "RESOURCE_NOT_EXISTS" | "NOT_FOUND" => ErrCode::ORDERNOTEXIST,
        "ORDER_CLOSED" | "ORDERCLOSED" => ErrCode::ORDERCLOSED,
        "ORDER_PAID" | "ORDERPAID" => ErrCode::ORDERPAID,
        "SIGN_ERROR" => ErrCode::SIGNERROR,
        "NO_AUTH" => ErrCode::NOAUTH,
        "MCH_NOT_EXISTS" => ErrCode::MCHID_NOT_EXIST,
        "NOT_ENOUGH" => ErrCode::NOTENOUGH,
        "ACCOUNTERROR" => ErrCode::ACCOUNT_ERROR,
        "RULELIMIT" => ErrCode::RULE_LIMIT,
        "OPENID_MISMATCH" => ErrCode::OPENID_MISMATCH,
        other => ErrCode::parse(other),
    };
    match known {
        // The rules page: a 5xx is retried with the original parameters, whatever its code; a
        // 429 is a rate limit.
        ErrCode::Other(_) if status >= 500 => ErrCode::SYSTEMERROR,
        ErrCode::Other(_) if status == 429 => ErrCode::FREQUENCY_LIMITED,
        known => known,
    }
}

/// The [`WxError`] of a non-2xx answer. A body that is not the documented error JSON keeps its
/// status (5xx still retried).
pub fn from_answer(status: u16, body: &[u8], op: Operation) -> WxError {
    let Ok(answer) = serde_json::from_slice::<ErrorAnswer>(body) else {
        return WxError::HttpStatus {
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned(),
        };
    };
    if answer.code == "STATEMENT_CREATING" {
        return WxError::BillCreating;
    }
    let mut reply = Fields::new();
    reply.insert("http_status", status.to_string());
    reply.insert("code", answer.code.clone());
    reply.insert("message", answer.message.clone());
    if let Some(detail) = &answer.detail {
        reply.insert("detail", detail.to_string());
    }
    WxError::Business {
        code: normalize(&answer.code, status, op),
        description: format!("{} (HTTP {status}): {}", answer.code, answer.message),
        reply: Box::new(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::ErrAction;

    #[test]
    fn v3_codes_carry_the_v2_actions() {
        let action = |code, status, op| normalize(code, status, op).action();
        assert_eq!(action("SYSTEM_ERROR", 500, Operation::Prepay), ErrAction::RetrySame);
        assert_eq!(action("BANK_ERROR", 500, Operation::Prepay), ErrAction::RetrySame);
        assert_eq!(action("ORDER_CLOSED", 400, Operation::Prepay), ErrAction::NewOutTradeNo);
        assert_eq!(action("OUT_TRADE_NO_USED", 403, Operation::Prepay), ErrAction::NewOutTradeNo);
        assert_eq!(action("ORDER_PAID", 403, Operation::Close), ErrAction::TreatAsPaid);
        assert_eq!(action("SIGN_ERROR", 401, Operation::Query), ErrAction::FixConfiguration);
        assert_eq!(action("APPID_MCHID_NOT_MATCH", 400, Operation::Prepay), ErrAction::FixConfiguration);
        assert_eq!(action("MCH_NOT_EXISTS", 400, Operation::Query), ErrAction::FixConfiguration);
        assert_eq!(action("NO_AUTH", 403, Operation::Prepay), ErrAction::FixConfiguration);
        assert_eq!(action("ORDER_NOT_EXIST", 404, Operation::Query), ErrAction::NotFound);
        assert_eq!(action("PARAM_ERROR", 400, Operation::Prepay), ErrAction::FixRequest);
        assert_eq!(action("FREQUENCY_LIMITED", 429, Operation::Refund), ErrAction::RetryLater);
        assert_eq!(action("NOT_ENOUGH", 403, Operation::Refund), ErrAction::NeedsAttention);
        assert_eq!(action("USER_ACCOUNT_ABNORMAL", 403, Operation::Refund), ErrAction::NeedsAttention);
        assert_eq!(normalize("RESOURCE_NOT_EXISTS", 404, Operation::Refund), ErrCode::ORDERNOTEXIST);
        assert_eq!(normalize("RESOURCE_NOT_EXISTS", 404, Operation::RefundQuery), ErrCode::REFUNDNOTEXIST);
        // Unknown codes: by status class.
        assert_eq!(normalize("NEW_THING", 503, Operation::Query), ErrCode::SYSTEMERROR);
        assert_eq!(normalize("NEW_THING", 429, Operation::Query), ErrCode::FREQUENCY_LIMITED);
        assert_eq!(normalize("NEW_THING", 400, Operation::Query), ErrCode::Other("NEW_THING".into()));
    }

    #[test]
    fn answers_become_errors() {
        let e = from_answer(404, r#"{"code":"ORDER_NOT_EXIST","message":"订单不存在"}"#.as_bytes(), Operation::Query);
        assert!(matches!(&e, WxError::Business { code: ErrCode::ORDERNOTEXIST, .. }));
        assert!(e.to_string().contains("ORDER_NOT_EXIST"));
        let e = from_answer(500, r#"{"code":"SYSTEM_ERROR","message":"系统错误"}"#.as_bytes(), Operation::Prepay);
        assert!(e.is_retryable());
        let e = from_answer(502, b"<html>bad gateway</html>", Operation::Prepay);
        assert!(matches!(e, WxError::HttpStatus { status: 502, .. }) && e.is_retryable());
        let e = from_answer(
            400,
            r#"{"code":"STATEMENT_CREATING","message":"账单生成中"}"#.as_bytes(),
            Operation::TradeBill,
        );
        assert!(matches!(e, WxError::BillCreating));
        let e = from_answer(
            400,
            r#"{"code":"OPENID_MISMATCH","message":"openid和appid不匹配"}"#.as_bytes(),
            Operation::Prepay,
        );
        assert!(e.is_openid_mismatch());
    }
}
