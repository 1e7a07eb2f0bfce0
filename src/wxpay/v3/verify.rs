//! Verifying what WeChat signs (API answers and notifies): the `Wechatpay-*` headers, the
//! three-line message `timestamp\nnonce\nbody\n`, the key chosen by `Wechatpay-Serial` (a platform
//! certificate serial or a `PUB_KEY_ID_…`), a 5-minute clock window, and the deliberate
//! `WECHATPAY/SIGNTEST/` probes, which are never accepted.

use std::sync::Arc;

use thiserror::Error;

use super::authorization::SCHEME;
use super::keys::VerifyingKey;

pub const HEADER_TIMESTAMP: &str = "Wechatpay-Timestamp";
pub const HEADER_NONCE: &str = "Wechatpay-Nonce";
pub const HEADER_SIGNATURE: &str = "Wechatpay-Signature";
pub const HEADER_SERIAL: &str = "Wechatpay-Serial";
pub const HEADER_SIGNATURE_TYPE: &str = "Wechatpay-Signature-Type";

/// The prefix of WeChat's deliberately wrong signatures.
pub const PROBE_PREFIX: &str = "WECHATPAY/SIGNTEST/";

/// The SDKs refuse a timestamp 5 minutes or more away from now, either way.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("unsupported signature type {0:?}")]
    SignatureType(String),
    #[error("a WECHATPAY/SIGNTEST/ probe: a deliberately wrong signature, refused")]
    Probe,
    #[error("Wechatpay-Timestamp {0:?} is not a Unix time in seconds")]
    BadTimestamp(String),
    #[error("Wechatpay-Timestamp is {skew} s away from now (at most {MAX_CLOCK_SKEW_SECONDS} s is accepted)")]
    Stale { skew: i64 },
    #[error("no WeChat Pay key with serial {0:?} is known")]
    UnknownSerial(String),
    #[error("the signature does not match the message")]
    Mismatch,
}

/// The signature headers of one answer or notify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
    pub signature_type: Option<String>,
}

impl SignedHeaders {
    /// Reads the headers through `get` (a case-insensitive lookup of the transport in use).
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<SignedHeaders, SignatureError> {
        let need = |name: &'static str| get(name).map(str::to_owned).ok_or(SignatureError::MissingHeader(name));
        Ok(SignedHeaders {
            timestamp: need(HEADER_TIMESTAMP)?,
            nonce: need(HEADER_NONCE)?,
            signature: need(HEADER_SIGNATURE)?,
            serial: need(HEADER_SERIAL)?,
            signature_type: get(HEADER_SIGNATURE_TYPE).map(str::to_owned),
        })
    }
}

impl SignedHeaders {
    /// The headers and body as one text, the way a delivery is kept: `Name: value` lines, a blank
    /// line, then the body exactly as received. [`SignedHeaders::split_stored`] reads it back.
    pub fn stored(headers: Option<&SignedHeaders>, body: &[u8]) -> String {
        let mut text = String::new();
        if let Some(h) = headers {
            for (name, value) in [
                (HEADER_TIMESTAMP, &h.timestamp),
                (HEADER_NONCE, &h.nonce),
                (HEADER_SERIAL, &h.serial),
                (HEADER_SIGNATURE, &h.signature),
            ] {
                text.push_str(&format!("{name}: {value}\n"));
            }
            if let Some(kind) = &h.signature_type {
                text.push_str(&format!("{HEADER_SIGNATURE_TYPE}: {kind}\n"));
            }
        }
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(body));
        text
    }

    /// The headers and body of a delivery kept by [`SignedHeaders::stored`].
    pub fn split_stored(text: &str) -> (Result<SignedHeaders, SignatureError>, &str) {
        let (head, body) = match text.strip_prefix('\n') {
            Some(body) => ("", body),
            None => text.split_once("\n\n").unwrap_or(("", text)),
        };
        let lines: Vec<(&str, &str)> = head.lines().filter_map(|l| l.split_once(": ")).collect();
        let headers = SignedHeaders::read(|name| lines.iter().find(|(n, _)| *n == name).map(|(_, v)| *v));
        (headers, body)
    }
}

/// `timestamp\nnonce\nbody\n`: the message of an answer or notify (an empty body gives
/// `timestamp\nnonce\n\n`).
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(nonce.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// Where the keys WeChat signs with are looked up by `Wechatpay-Serial`.
pub trait PlatformKeys: Send + Sync {
    fn key(&self, serial: &str) -> Option<Arc<VerifyingKey>>;
}

/// Checks one signed answer or notify at `now` (Unix seconds). The probe is refused before any
/// key is looked up, and the clock before the (costly) RSA check.
pub fn verify(headers: &SignedHeaders, body: &[u8], keys: &dyn PlatformKeys, now: i64) -> Result<(), SignatureError> {
    if let Some(kind) = headers.signature_type.as_deref().filter(|t| *t != SCHEME) {
        return Err(SignatureError::SignatureType(kind.to_owned()));
    }
    if headers.signature.starts_with(PROBE_PREFIX) {
        return Err(SignatureError::Probe);
    }
    let ts: i64 = headers
        .timestamp
        .parse()
        .ok()
        .filter(|_| headers.timestamp.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| SignatureError::BadTimestamp(headers.timestamp.clone()))?;
    let skew = now - ts;
    if skew.abs() >= MAX_CLOCK_SKEW_SECONDS {
        return Err(SignatureError::Stale { skew });
    }
    let key = keys.key(&headers.serial).ok_or_else(|| SignatureError::UnknownSerial(headers.serial.clone()))?;
    if key.verify(&response_message(&headers.timestamp, &headers.nonce, body), &headers.signature) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// A fixed set of keys by serial: the WeChat Pay public key under its ID, or certificates.
#[derive(Clone, Debug, Default)]
pub struct KeySet(pub std::collections::HashMap<String, Arc<VerifyingKey>>);

impl KeySet {
    pub fn single(serial: &str, key: VerifyingKey) -> KeySet {
        KeySet([(serial.to_owned(), Arc::new(key))].into_iter().collect())
    }
}

impl PlatformKeys for KeySet {
    fn key(&self, serial: &str) -> Option<Arc<VerifyingKey>> {
        self.0.get(serial).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::v3::certificates::PlatformCertificate;

    const GO_SIGNATURE: &str = "tJHIiIS9eB2hAYstmAmbbD3ZE5LiIm/Ug5tuL4fC0YOFRWIHV39UFIZXC0e9Wl6lBu6sKvkqDkzpqzBsVHyXFlbYZTOQrVdG4b6LfTnK4mikv9++ixJMd3vTf2yCqvBkh98zs3Ds5zsYQakzbcwhmw4fMJs4nPLws28H0UW9FjDR//rxELLwXvV1VEA1IBLX70xptjL8hrfUjEE8kkry6yNJTHZRU8CAc7qHli2Ng1V1qb9ARbK8A3ThmFmPQvRGrapI/jS2laKKgYUmfdEdkNO6B2Cke5e8VTxY406ArAmQ90GAihDwIcb16TQMnzCMBoutnwZKNiKRACrFmtxw2Q==";
    const GO_TIME: i64 = 1624523846;

    fn go_headers() -> SignedHeaders {
        SignedHeaders {
            timestamp: "1624523846".into(),
            nonce: "EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz".into(),
            signature: GO_SIGNATURE.into(),
            serial: "D7CE59D1F522D701".into(),
            signature_type: None,
        }
    }

    fn go_keys() -> KeySet {
        let cert = PlatformCertificate::from_pem(include_str!("vectors/go_notify_certificate.pem")).unwrap();
        KeySet::single(&cert.serial_no, cert.key.as_ref().clone())
    }

    /// GO `core/notify/notify_test.go`: a complete notification, clock frozen at its time.
    #[test]
    fn go_notify_vector_verifies() {
        let body = include_bytes!("vectors/go_notify_body.json");
        verify(&go_headers(), body, &go_keys(), GO_TIME).unwrap();
        let mut typed = go_headers();
        typed.signature_type = Some(SCHEME.into());
        verify(&typed, body, &go_keys(), GO_TIME + MAX_CLOCK_SKEW_SECONDS - 1).unwrap();
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let body = include_bytes!("vectors/go_notify_body.json");
        let keys = go_keys();
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        assert_eq!(verify(&go_headers(), &tampered, &keys, GO_TIME), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(&go_headers(), body, &keys, GO_TIME + MAX_CLOCK_SKEW_SECONDS),
            Err(SignatureError::Stale { skew: MAX_CLOCK_SKEW_SECONDS })
        );
        assert!(matches!(verify(&go_headers(), body, &keys, GO_TIME - 301), Err(SignatureError::Stale { .. })));
        let mut h = go_headers();
        h.serial = "PUB_KEY_ID_0114232134912410000000000000".into();
        assert!(matches!(verify(&h, body, &keys, GO_TIME), Err(SignatureError::UnknownSerial(_))));
        let mut h = go_headers();
        h.signature = format!("{PROBE_PREFIX}{GO_SIGNATURE}");
        assert_eq!(verify(&h, body, &keys, GO_TIME), Err(SignatureError::Probe));
        let mut h = go_headers();
        h.timestamp = "+1624523846".into();
        assert!(matches!(verify(&h, body, &keys, GO_TIME), Err(SignatureError::BadTimestamp(_))));
        let mut h = go_headers();
        h.nonce.push('x');
        assert_eq!(verify(&h, body, &keys, GO_TIME), Err(SignatureError::Mismatch));
        let mut h = go_headers();
        h.signature_type = Some("WECHATPAY2-SM2-WITH-SM3".into());
        assert!(matches!(verify(&h, body, &keys, GO_TIME), Err(SignatureError::SignatureType(_))));
        let missing = SignedHeaders::read(|name| (name != HEADER_SERIAL).then_some("x"));
        assert_eq!(missing, Err(SignatureError::MissingHeader(HEADER_SERIAL)));
    }

    #[test]
    fn a_kept_delivery_reads_back_exactly() {
        let mut h = go_headers();
        h.signature_type = Some(SCHEME.into());
        let body = include_bytes!("vectors/go_notify_body.json");
        let text = SignedHeaders::stored(Some(&h), body);
        let (again, rest) = SignedHeaders::split_stored(&text);
        assert_eq!((again.unwrap(), rest.as_bytes()), (h, body.as_slice()));
        let unsigned = SignedHeaders::stored(None, b"{}");
        let (missing, rest) = SignedHeaders::split_stored(&unsigned);
        assert_eq!((missing, rest), (Err(SignatureError::MissingHeader(HEADER_TIMESTAMP)), "{}"));
    }

    #[test]
    fn empty_bodies_sign_as_an_empty_line() {
        assert_eq!(response_message("1", "n", b""), b"1\nn\n\n");
    }
}
