//! Notifies under v3: the signed headers checked first (never process an unverified notify), then
//! the JSON envelope read, its `resource` decrypted with the APIv3 key, and the plaintext read as
//! a payment (`transaction`) or a refund (`refund`). A refund becomes the same [`RefundNotify`]
//! a v2 refund notify does, so the product applies both the same way.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use thiserror::Error;

use super::aead::{AeadError, ApiV3Key};
use super::convert::{Ours, refund_status_v2};
use super::models::{NotifyEnvelope, RefundResource, Transaction, parse_time};
use super::verify::{self, PlatformKeys, SignatureError, SignedHeaders};
use crate::wxpay::Fen;
use crate::wxpay::refund_notify::RefundNotify;
use crate::wxpay::types::RefundStatus;
use crate::wxpay::xml::Fields;

/// The answer that acknowledges a notify (with HTTP 200; the official samples send it).
pub const SUCCESS_ANSWER: &str = r#"{"code":"SUCCESS","message":"成功"}"#;

/// The body of an answer that asks WeChat to deliver again (with a 4xx or 5xx status).
pub fn fail_answer(message: &str) -> String {
    serde_json::json!({ "code": "FAIL", "message": message }).to_string()
}

/// Why a v3 notify was refused. Each leaves everything untouched.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum V3NotifyError {
    #[error("signature rejected: {0}")]
    Signature(#[from] SignatureError),
    #[error("not a notify envelope: {0}")]
    Envelope(String),
    #[error("the resource cannot be decrypted: {0}")]
    Decrypt(#[from] AeadError),
    #[error("unexpected {field} {got:?} (expected {expected})")]
    Unexpected { field: &'static str, got: String, expected: &'static str },
    #[error("notify for another merchant: {field} is {got:?}")]
    ForeignMerchant { field: &'static str, got: String },
    #[error("field `{field}` is invalid: {reason}")]
    BadField { field: &'static str, reason: String },
}

impl V3NotifyError {
    /// The HTTP status of the refusal: 401 for a signature, 400 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            V3NotifyError::Signature(_) => 401,
            _ => 400,
        }
    }
}

/// A verified, decrypted notify: its envelope, its resource, and the plaintext (for the log).
#[derive(Clone, Debug)]
pub struct Opened<T> {
    pub envelope: NotifyEnvelope,
    pub resource: T,
    pub plaintext: String,
}

/// Verifies and opens one notify whose resource must be of `original_type` (`transaction` or
/// `refund`).
pub fn open<T: DeserializeOwned>(
    headers: &SignedHeaders,
    body: &[u8],
    keys: &dyn PlatformKeys,
    key: &ApiV3Key,
    now: i64,
    original_type: &'static str,
) -> Result<Opened<T>, V3NotifyError> {
    verify::verify(headers, body, keys, now)?;
    let envelope: NotifyEnvelope = serde_json::from_slice(body).map_err(|e| V3NotifyError::Envelope(e.to_string()))?;
    let got = envelope.resource.original_type.clone().unwrap_or_default();
    if got != original_type {
        return Err(V3NotifyError::Unexpected { field: "original_type", got, expected: original_type });
    }
    let plain = envelope.resource.open(key)?;
    let plaintext =
        String::from_utf8(plain).map_err(|_| V3NotifyError::Envelope("the resource is not UTF-8".into()))?;
    let resource = serde_json::from_str(&plaintext).map_err(|e| V3NotifyError::BadField {
        field: "resource",
        reason: format!("not the documented {original_type} JSON: {e}"),
    })?;
    Ok(Opened { envelope, resource, plaintext })
}

/// The payment a `TRANSACTION.SUCCESS` notify reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifiedPayment {
    pub out_trade_no: String,
    pub transaction_id: String,
    pub total_fee: Fen,
    pub paid_at: Option<DateTime<Utc>>,
}

/// Reads a payment notify's transaction: ours, `SUCCESS`, with its transaction id and amount.
pub fn payment(opened: &Opened<Transaction>, ours: &Ours<'_>) -> Result<NotifiedPayment, V3NotifyError> {
    let t = &opened.resource;
    if opened.envelope.event_type != "TRANSACTION.SUCCESS" {
        let got = opened.envelope.event_type.clone();
        return Err(V3NotifyError::Unexpected { field: "event_type", got, expected: "TRANSACTION.SUCCESS" });
    }
    if t.mchid != ours.mchid {
        return Err(V3NotifyError::ForeignMerchant { field: "mchid", got: t.mchid.clone() });
    }
    if !ours.appids.contains(&t.appid) {
        return Err(V3NotifyError::ForeignMerchant { field: "appid", got: t.appid.clone() });
    }
    if t.trade_state != "SUCCESS" {
        let got = t.trade_state.clone();
        return Err(V3NotifyError::Unexpected { field: "trade_state", got, expected: "SUCCESS" });
    }
    let bad = |field, reason: &str| V3NotifyError::BadField { field, reason: reason.to_owned() };
    let transaction_id = t.transaction_id.clone().filter(|s| !s.is_empty() && s.len() <= 32);
    let total = t.amount.as_ref().and_then(|a| a.total).filter(|fen| *fen > 0);
    let paid_at = match &t.success_time {
        Some(s) => Some(parse_time(s).ok_or_else(|| bad("success_time", "not RFC 3339"))?),
        None => None,
    };
    Ok(NotifiedPayment {
        out_trade_no: t.out_trade_no.clone(),
        transaction_id: transaction_id.ok_or_else(|| bad("transaction_id", "missing on a paid order"))?,
        total_fee: Fen::new(total.ok_or_else(|| bad("amount.total", "missing or not positive"))?),
        paid_at,
    })
}

/// Reads a refund notify as the product's [`RefundNotify`].
pub fn refund(opened: &Opened<RefundResource>, mchid: &str) -> Result<RefundNotify, V3NotifyError> {
    let r = &opened.resource;
    if r.mchid != mchid {
        return Err(V3NotifyError::ForeignMerchant { field: "mchid", got: r.mchid.clone() });
    }
    let bad = |field, reason: String| V3NotifyError::BadField { field, reason };
    let refund_status = RefundStatus::parse(refund_status_v2(&r.refund_status))
        .filter(|s| matches!(s, RefundStatus::Success | RefundStatus::RefundClose | RefundStatus::Change))
        .ok_or_else(|| bad("refund_status", format!("unknown value {:?}", r.refund_status)))?;
    if r.amount.refund <= 0 || r.amount.total <= 0 {
        return Err(bad("amount", "refund and total must be positive".into()));
    }
    let success_time = match &r.success_time {
        Some(s) => Some(parse_time(s).ok_or_else(|| bad("success_time", format!("not RFC 3339: {s:?}")))?),
        None => None,
    };
    let mut outer = Fields::new();
    outer.insert("id", opened.envelope.id.clone());
    outer.insert("event_type", opened.envelope.event_type.clone());
    outer.insert("create_time", opened.envelope.create_time.clone());
    let mut info = Fields::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&opened.plaintext) {
        for (k, v) in map {
            info.insert(k, v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        }
    }
    Ok(RefundNotify {
        transaction_id: r.transaction_id.clone(),
        out_trade_no: r.out_trade_no.clone(),
        refund_id: r.refund_id.clone(),
        out_refund_no: r.out_refund_no.clone(),
        total_fee: Fen::new(r.amount.total),
        refund_fee: Fen::new(r.amount.refund),
        settlement_refund_fee: None,
        refund_status,
        success_time,
        recv_account: r.user_received_account.clone(),
        refund_account: None,
        request_source: None,
        outer,
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::v3::aead::EncryptedResource;
    use crate::wxpay::v3::keys::MerchantKey;
    use crate::wxpay::v3::verify::KeySet;

    /// GO `core/notify/notify_test.go`, opened end to end (its key is 16 bytes, so the resource
    /// is checked with the test-only AES-128 helper after the signature passes).
    #[test]
    fn go_notify_vector_signature_and_envelope() {
        let body = include_bytes!("vectors/go_notify_body.json");
        let cert = crate::wxpay::v3::certificates::PlatformCertificate::from_pem(include_str!(
            "vectors/go_notify_certificate.pem"
        ))
        .unwrap();
        let keys = KeySet::single(&cert.serial_no, cert.key.as_ref().clone());
        let headers = SignedHeaders {
            timestamp: "1624523846".into(),
            nonce: "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz".into(),
            signature: "tJHIiIS9eB2hAYstmAmbbD3ZE5LiIm/Ug5tuL4fC0YOFRWIHV39UFIZXC0e9Wl6lBu6sKvkqDkzpqzBsVHyXFlbYZTOQrVdG4b6LfTnK4mikv9++ixJMd3vTf2yCqvBkh98zs3Ds5zsYQakzbcwhmw4fMJs4nPLws28H0UW9FjDR//rxELLwXvV1VEA1IBLX70xptjL8hrfUjEE8kkry6yNJTHZRU8CAc7qHli2Ng1V1qb9ARbK8A3ThmFmPQvRGrapI/jS2laKKgYUmfdEdkNO6B2Cke5e8VTxY406ArAmQ90GAihDwIcb16TQMnzCMBoutnwZKNiKRACrFmtxw2Q==".into(),
            serial: "D7CE59D1F522D701".into(),
            signature_type: None,
        };
        verify::verify(&headers, body, &keys, 1624523846).unwrap();
        let envelope: NotifyEnvelope = serde_json::from_slice(body).unwrap();
        let r = &envelope.resource;
        let plain = crate::wxpay::v3::aead::decrypt_aes128_for_vectors(
            b"testMchAPIv3Key0",
            &r.nonce,
            &r.associated_data,
            &r.ciphertext,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            r#"{"mchid":"1234567890","appid":"054aa7d7a2a54ab5898df65bd96f001c","create_time":"2020-06-30T12:12:00+08:00","out_contract_code":"21640bdbd08e473e828f3206a2741c6e"}"#
        );
    }

    fn signed(body: &str, key: &MerchantKey, serial: &str, ts: i64) -> SignedHeaders {
        let signature = key.sign(&verify::response_message(&ts.to_string(), "n", body.as_bytes()));
        SignedHeaders {
            timestamp: ts.to_string(),
            nonce: "n".into(),
            signature,
            serial: serial.into(),
            signature_type: None,
        }
    }

    #[test]
    fn a_payment_notify_opens_and_refusals_are_named() {
        let platform = MerchantKey::generate().unwrap();
        let keys = KeySet::single("S1", platform.verifying_key());
        let apiv3 = ApiV3Key::new("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        let transaction = r#"{"appid":"wx1","mchid":"16","out_trade_no":"o1","transaction_id":"4200","trade_state":"SUCCESS","success_time":"2024-10-09T09:33:13+08:00","amount":{"total":100,"payer_total":100}}"#;
        let resource = EncryptedResource::seal(&apiv3, "transaction", Some("transaction"), transaction.as_bytes());
        let body = serde_json::json!({"id":"e1","create_time":"2024-10-09T09:33:13+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","summary":"支付成功","resource":resource}).to_string();
        let now = 1_728_437_593;
        let appids = ["wx1".to_owned()];
        let ours = Ours { mchid: "16", appids: &appids };
        // Opens the body as a payment, signed by `key` as `serial` at `ts`, decrypted with `apiv3`.
        let as_payment = |key: &MerchantKey, serial: &str, ts: i64, apiv3: &ApiV3Key| {
            open::<Transaction>(&signed(&body, key, serial, ts), body.as_bytes(), &keys, apiv3, now, "transaction")
        };
        let opened = as_payment(&platform, "S1", now, &apiv3).unwrap();
        let paid = payment(&opened, &ours).unwrap();
        assert_eq!((paid.out_trade_no.as_str(), paid.total_fee), ("o1", Fen::new(100)));

        let e = as_payment(&MerchantKey::generate().unwrap(), "S1", now, &apiv3).unwrap_err();
        assert_eq!((e.status(), e), (401, V3NotifyError::Signature(SignatureError::Mismatch)));
        let e = as_payment(&platform, "S2", now, &apiv3).unwrap_err();
        assert!(matches!(e, V3NotifyError::Signature(SignatureError::UnknownSerial(_))));
        let e = as_payment(&platform, "S1", now - 600, &apiv3).unwrap_err();
        assert!(matches!(e, V3NotifyError::Signature(SignatureError::Stale { .. })));
        let other = ApiV3Key::new("b7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        let e = as_payment(&platform, "S1", now, &other).unwrap_err();
        assert_eq!(e, V3NotifyError::Decrypt(AeadError::Authentication));
        let e =
            open::<RefundResource>(&signed(&body, &platform, "S1", now), body.as_bytes(), &keys, &apiv3, now, "refund")
                .unwrap_err();
        assert!(matches!(e, V3NotifyError::Unexpected { field: "original_type", .. }));
        let theirs = Ours { mchid: "17", appids: &appids };
        assert!(matches!(payment(&opened, &theirs), Err(V3NotifyError::ForeignMerchant { field: "mchid", .. })));
    }
}
