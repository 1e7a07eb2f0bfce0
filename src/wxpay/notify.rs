//! The asynchronous payment notify WeChat POSTs to `notify_url`: verification, typed reading,
//! and the exact replies WeChat expects.

use chrono::{DateTime, Utc};
use thiserror::Error;

use super::err_code::ErrCode;
use super::merchant::Merchant;
use super::money::Fen;
use super::sign::{self, SignType, VerifyError};
use super::time;
use super::xml::{self, Fields, XmlError};

/// The one reply that stops WeChat's retries. Written byte for byte; any wrapping or escaping
/// makes WeChat deliver the notify again and again.
pub const SUCCESS_REPLY: &str =
    "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// A FAIL reply; WeChat will deliver the notify again on its retry schedule.
pub fn fail_reply(message: &str) -> String {
    xml::write_document("xml", [("return_code", "FAIL"), ("return_msg", message)])
}

/// Why a notify was not accepted. Every variant leaves the order untouched.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NotifyError {
    #[error("unreadable XML: {0}")]
    Xml(#[from] XmlError),
    #[error("return_code is not SUCCESS: {0}")]
    ReturnFail(String),
    #[error("signature rejected: {0}")]
    Signature(#[from] VerifyError),
    #[error("notify for another merchant: {field} is {got:?}")]
    ForeignMerchant { field: &'static str, got: String },
    #[error("field `{0}` is missing")]
    MissingField(String),
    #[error("field `{field}` is invalid: {reason}")]
    BadField { field: String, reason: String },
    #[error("req_info cannot be decrypted: {0}")]
    Decrypt(String),
    /// A v2 notify reached a checkout configured for API v3, which has no APIv2 key to check it.
    #[error("an API v2 notify, but this checkout is configured for API v3 (WECHAT_API_VERSION=v3)")]
    WrongVersion,
}

/// Whether the payment succeeded, per `result_code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyOutcome {
    Paid,
    Failed { err_code: ErrCode, description: String },
}

/// A verified payment notify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentNotify {
    pub outcome: NotifyOutcome,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub total_fee: Fen,
    pub cash_fee: Option<Fen>,
    pub fee_type: Option<String>,
    pub openid: Option<String>,
    pub trade_type: Option<String>,
    pub bank_type: Option<String>,
    pub attach: Option<String>,
    pub time_end: Option<DateTime<Utc>>,
    /// The algorithm the signature verified with: always the merchant's configured one.
    pub sign_type: SignType,
    /// Every field as received, for the audit log.
    pub raw: Fields,
}

/// Parses and verifies a payment notify body: XXE-safe parse, `return_code`, signature over all
/// fields with the configured algorithm only (WeChat omits `sign_type`; one naming the other
/// algorithm is refused), then appid and mch_id.
pub fn parse_payment_notify(body: &[u8], merchant: &Merchant) -> Result<PaymentNotify, NotifyError> {
    let raw = xml::parse(body)?;
    match raw.get("return_code") {
        Some("SUCCESS") => {}
        other => {
            return Err(NotifyError::ReturnFail(
                raw.get("return_msg").or(other).unwrap_or("missing return_code").to_owned(),
            ));
        }
    }
    sign::verify(raw.pairs(), &merchant.key, merchant.sign_type)?;
    check_merchant(&raw, merchant)?;

    let outcome = match raw.get("result_code") {
        Some("SUCCESS") => NotifyOutcome::Paid,
        Some("FAIL") => NotifyOutcome::Failed {
            err_code: ErrCode::parse(raw.get("err_code").unwrap_or_default()),
            description: raw.get("err_code_des").unwrap_or_default().to_owned(),
        },
        _ => return Err(bad("result_code", "missing or not SUCCESS/FAIL")),
    };
    let total_fee = Fen::parse_api(require(&raw, "total_fee")?).map_err(|e| bad("total_fee", e.to_string()))?;
    let cash_fee = match optional(&raw, "cash_fee") {
        None => None,
        Some(v) => Some(Fen::parse_api(&v).map_err(|e| bad("cash_fee", e.to_string()))?),
    };
    let time_end = match optional(&raw, "time_end") {
        None => None,
        Some(v) => Some(time::parse_compact(&v).map_err(|e| bad("time_end", e.to_string()))?),
    };
    let transaction_id = match outcome {
        NotifyOutcome::Paid => require(&raw, "transaction_id")?.to_owned(),
        NotifyOutcome::Failed { .. } => optional(&raw, "transaction_id").unwrap_or_default(),
    };
    Ok(PaymentNotify {
        outcome,
        out_trade_no: require(&raw, "out_trade_no")?.to_owned(),
        transaction_id,
        total_fee,
        cash_fee,
        fee_type: optional(&raw, "fee_type"),
        openid: optional(&raw, "openid"),
        trade_type: optional(&raw, "trade_type"),
        bank_type: optional(&raw, "bank_type"),
        attach: optional(&raw, "attach"),
        time_end,
        sign_type: merchant.sign_type,
        raw,
    })
}

pub(crate) fn check_merchant(raw: &Fields, merchant: &Merchant) -> Result<(), NotifyError> {
    for (field, ours) in [("appid", &merchant.appid), ("mch_id", &merchant.mch_id)] {
        let got = require(raw, field)?;
        if got != ours {
            return Err(NotifyError::ForeignMerchant { field, got: got.to_owned() });
        }
    }
    Ok(())
}

pub(crate) fn require<'a>(raw: &'a Fields, field: &str) -> Result<&'a str, NotifyError> {
    raw.require(field).map_err(|_| NotifyError::MissingField(field.to_owned()))
}

pub(crate) fn optional(raw: &Fields, field: &str) -> Option<String> {
    raw.get(field).filter(|v| !v.is_empty()).map(str::to_owned)
}

pub(crate) fn bad(field: &str, reason: impl Into<String>) -> NotifyError {
    NotifyError::BadField { field: field.to_owned(), reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::sign::ApiKey;

    fn merchant(sign_type: SignType) -> Merchant {
        Merchant {
            appid: "wx2421b1c4370ec43b".into(),
            mch_id: "10000100".into(),
            key: ApiKey::new("192006250b4c09247ec02edce69f6a2d").unwrap(),
            sign_type,
        }
    }

    fn notify_fields() -> Fields {
        [
            ("appid", "wx2421b1c4370ec43b"),
            ("attach", "支付测试"),
            ("bank_type", "CFT"),
            ("fee_type", "CNY"),
            ("is_subscribe", "Y"),
            ("mch_id", "10000100"),
            ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
            ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
            ("out_trade_no", "1409811653"),
            ("result_code", "SUCCESS"),
            ("return_code", "SUCCESS"),
            ("time_end", "20140903131540"),
            ("total_fee", "1"),
            ("coupon_fee_0", "10"),
            ("coupon_count", "1"),
            ("coupon_type", "CASH"),
            ("coupon_id", "10000"),
            ("trade_type", "JSAPI"),
            ("transaction_id", "1004400740201409030005092168"),
        ]
        .into_iter()
        .collect()
    }

    fn signed_body(m: &Merchant, mut f: Fields) -> Vec<u8> {
        f.insert("sign", m.sign(&f));
        f.to_xml().into_bytes()
    }

    #[test]
    fn verifies_md5_and_hmac_notifies_without_sign_type() {
        // WeChat's notifies omit sign_type even for HMAC orders: the configured algorithm applies.
        for st in [SignType::Md5, SignType::HmacSha256] {
            let m = merchant(st);
            let n = parse_payment_notify(&signed_body(&m, notify_fields()), &m).unwrap();
            assert_eq!(n.outcome, NotifyOutcome::Paid);
            assert_eq!(n.total_fee, Fen::new(1));
            assert_eq!(n.sign_type, st);
            assert_eq!(n.transaction_id, "1004400740201409030005092168");
            // Unknown fields (coupon_*) were kept and signed over.
            assert_eq!(n.raw.get("coupon_fee_0"), Some("10"));
        }
    }

    /// A notify signed with the algorithm we are not configured for is a bad signature, whatever
    /// its `sign_type` says: accepting both would let MD5 stand in where HMAC-SHA256 is chosen.
    #[test]
    fn refuses_a_notify_signed_with_the_other_algorithm() {
        for (configured, other) in [(SignType::HmacSha256, SignType::Md5), (SignType::Md5, SignType::HmacSha256)] {
            let ours = merchant(configured);
            let body = signed_body(&merchant(other), notify_fields());
            let err = parse_payment_notify(&body, &ours).unwrap_err();
            assert!(matches!(err, NotifyError::Signature(_)), "{configured} accepted {other}: {err:?}");

            // The same, declaring the other algorithm in a signed sign_type.
            let mut declared = notify_fields();
            declared.insert("sign_type", other.as_str());
            let err = parse_payment_notify(&signed_body(&merchant(other), declared), &ours).unwrap_err();
            assert!(matches!(err, NotifyError::Signature(_)), "{configured} accepted declared {other}: {err:?}");

            // A sign_type contradicting the configured one, even over a sign of our algorithm.
            let mut contradicting = notify_fields();
            contradicting.insert("sign_type", other.as_str());
            let err = parse_payment_notify(&signed_body(&ours, contradicting), &ours).unwrap_err();
            assert!(matches!(err, NotifyError::Signature(_)), "{configured} accepted sign_type {other}: {err:?}");

            // Our own algorithm, declared or not, verifies.
            let mut same = notify_fields();
            same.insert("sign_type", configured.as_str());
            assert_eq!(parse_payment_notify(&signed_body(&ours, same), &ours).unwrap().sign_type, configured);
        }
    }

    #[test]
    fn refuses_forged_foreign_and_fail_notifies() {
        let m = merchant(SignType::Md5);
        let body = String::from_utf8(signed_body(&m, notify_fields())).unwrap();
        let forged = body.replace("<total_fee>1</total_fee>", "<total_fee>100</total_fee>");
        assert!(matches!(parse_payment_notify(forged.as_bytes(), &m), Err(NotifyError::Signature(_))));

        let mut foreign = notify_fields();
        foreign.insert("mch_id", "99999999");
        assert!(matches!(
            parse_payment_notify(&signed_body(&m, foreign), &m),
            Err(NotifyError::ForeignMerchant { field: "mch_id", .. })
        ));

        let fail = b"<xml><return_code>FAIL</return_code><return_msg>x</return_msg></xml>";
        assert!(matches!(parse_payment_notify(fail, &m), Err(NotifyError::ReturnFail(_))));
        assert!(matches!(parse_payment_notify(b"<xml><a>", &m), Err(NotifyError::Xml(_))));
    }

    #[test]
    fn replies_are_exact() {
        assert_eq!(
            SUCCESS_REPLY,
            "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
        );
        let fail = xml::parse(fail_reply("签名失败").as_bytes()).unwrap();
        assert_eq!(fail.get("return_code"), Some("FAIL"));
        assert_eq!(fail.get("return_msg"), Some("签名失败"));
    }
}
