//! `err_code` values of business failures (v2's, and v3's codes read onto them), and what each
//! one tells the caller to do.

use std::fmt;

/// What a failed call asks of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrAction {
    /// A transient WeChat-side failure: send the very same request again (same ids, same values).
    RetrySame,
    /// The order is already paid: do not charge again; confirm with `orderquery` and mark it paid.
    TreatAsPaid,
    /// This `out_trade_no` can no longer be used: close it and pay under a new one.
    NewOutTradeNo,
    /// The merchant set-up is wrong (key, appid/mch_id binding, permissions): an operator must act.
    FixConfiguration,
    /// The request itself is wrong (a bug or bad input): retrying it unchanged cannot help.
    FixRequest,
    /// The order or refund does not exist at WeChat.
    NotFound,
    /// Rate limited: try again after a pause (at least a minute for refunds).
    RetryLater,
    /// A money problem someone must look at (balance, account, refund window).
    NeedsAttention,
}

macro_rules! err_codes {
    ($($variant:ident => $code:literal, $action:ident;)*) => {
        /// A v2 `err_code`. Unknown codes are kept verbatim, because WeChat adds codes over time.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        pub enum ErrCode {
            $($variant,)*
            Other(String),
        }

        impl ErrCode {
            pub fn parse(code: &str) -> ErrCode {
                match code {
                    $($code => ErrCode::$variant,)*
                    other => ErrCode::Other(other.to_owned()),
                }
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrCode::$variant => $code,)*
                    ErrCode::Other(s) => s,
                }
            }

            pub fn action(&self) -> ErrAction {
                match self {
                    $(ErrCode::$variant => ErrAction::$action,)*
                    ErrCode::Other(_) => ErrAction::FixRequest,
                }
            }
        }
    };
}

err_codes! {
    SYSTEMERROR => "SYSTEMERROR", RetrySame;
    BIZERR_NEED_RETRY => "BIZERR_NEED_RETRY", RetrySame;
    ORDERPAID => "ORDERPAID", TreatAsPaid;
    ORDERCLOSED => "ORDERCLOSED", NewOutTradeNo;
    OUT_TRADE_NO_USED => "OUT_TRADE_NO_USED", NewOutTradeNo;
    INVALID_REQUEST => "INVALID_REQUEST", FixRequest;
    PARAM_ERROR => "PARAM_ERROR", FixRequest;
    LACK_PARAMS => "LACK_PARAMS", FixRequest;
    XML_FORMAT_ERROR => "XML_FORMAT_ERROR", FixRequest;
    REQUIRE_POST_METHOD => "REQUIRE_POST_METHOD", FixRequest;
    POST_DATA_EMPTY => "POST_DATA_EMPTY", FixRequest;
    NOT_UTF8 => "NOT_UTF8", FixRequest;
    INVALID_TRANSACTIONID => "INVALID_TRANSACTIONID", FixRequest;
    TRADE_STATE_ERROR => "TRADE_STATE_ERROR", FixRequest;
    SIGNERROR => "SIGNERROR", FixConfiguration;
    NOAUTH => "NOAUTH", FixConfiguration;
    APPID_NOT_EXIST => "APPID_NOT_EXIST", FixConfiguration;
    MCHID_NOT_EXIST => "MCHID_NOT_EXIST", FixConfiguration;
    APPID_MCHID_NOT_MATCH => "APPID_MCHID_NOT_MATCH", FixConfiguration;
    ORDERNOTEXIST => "ORDERNOTEXIST", NotFound;
    REFUNDNOTEXIST => "REFUNDNOTEXIST", NotFound;
    INVALID_REQ_TOO_MUCH => "INVALID_REQ_TOO_MUCH", RetryLater;
    FREQUENCY_LIMITED => "FREQUENCY_LIMITED", RetryLater;
    NOTENOUGH => "NOTENOUGH", NeedsAttention;
    USER_ACCOUNT_ABNORMAL => "USER_ACCOUNT_ABNORMAL", NeedsAttention;
    TRADE_OVERDUE => "TRADE_OVERDUE", NeedsAttention;
    ERROR => "ERROR", NeedsAttention;
    // v3 names without a v2 twin (the v3 names that have one are read as the v2 name).
    OPENID_MISMATCH => "OPENID_MISMATCH", FixRequest;
    ACCOUNT_ERROR => "ACCOUNT_ERROR", NeedsAttention;
    RULE_LIMIT => "RULE_LIMIT", NeedsAttention;
    TRADE_ERROR => "TRADE_ERROR", NeedsAttention;
}

impl fmt::Display for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_carry_their_action() {
        for code in ["SYSTEMERROR", "ORDERPAID", "ORDERCLOSED", "OUT_TRADE_NO_USED", "SIGNERROR", "NOAUTH"] {
            assert_eq!(ErrCode::parse(code).as_str(), code);
        }
        assert_eq!(ErrCode::parse("SYSTEMERROR").action(), ErrAction::RetrySame);
        assert_eq!(ErrCode::parse("BIZERR_NEED_RETRY").action(), ErrAction::RetrySame);
        assert_eq!(ErrCode::parse("ORDERPAID").action(), ErrAction::TreatAsPaid);
        assert_eq!(ErrCode::parse("ORDERCLOSED").action(), ErrAction::NewOutTradeNo);
        assert_eq!(ErrCode::parse("OUT_TRADE_NO_USED").action(), ErrAction::NewOutTradeNo);
        assert_eq!(ErrCode::parse("APPID_MCHID_NOT_MATCH").action(), ErrAction::FixConfiguration);
        assert_eq!(ErrCode::parse("NEW_CODE_2030"), ErrCode::Other("NEW_CODE_2030".into()));
    }
}
