//! Platform certificates (平台证书): reading one (serial, validity, public key) and the answer of
//! `GET /v3/certificates`, whose entries are AES-GCM-encrypted under the APIv3 key. That
//! encryption is what makes the first download trustworthy: nothing else can vouch for it yet.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::aead::{AeadError, ApiV3Key, EncryptedResource};
use super::keys::{KeyError, VerifyingKey};

pub const PATH: &str = "/v3/certificates";

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CertificateError {
    #[error("not a PEM certificate: {0}")]
    Pem(String),
    #[error("not an X.509 certificate: {0}")]
    X509(String),
    #[error("the certificate's key: {0}")]
    Key(#[from] KeyError),
    #[error("the certificates answer is not the documented JSON: {0}")]
    Json(String),
    #[error("certificate {0}: {1}")]
    Decrypt(String, AeadError),
    #[error("the entry says serial {claimed} but its certificate has serial {actual}")]
    SerialMismatch { claimed: String, actual: String },
    #[error("the answer holds no certificate")]
    Empty,
}

/// One platform certificate, parsed.
#[derive(Clone, Debug)]
pub struct PlatformCertificate {
    /// Upper-case hex without leading zeros, as `Wechatpay-Serial` names it.
    pub serial_no: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub key: Arc<VerifyingKey>,
    pub pem: String,
}

impl PlatformCertificate {
    pub fn from_pem(text: &str) -> Result<PlatformCertificate, CertificateError> {
        let block = pem::parse(text.trim()).map_err(|e| CertificateError::Pem(e.to_string()))?;
        if block.tag() != "CERTIFICATE" {
            return Err(CertificateError::Pem(format!("a PEM block labelled {:?}", block.tag())));
        }
        let (_, cert) =
            x509_parser::parse_x509_certificate(block.contents()).map_err(|e| CertificateError::X509(e.to_string()))?;
        let time = |t: &x509_parser::time::ASN1Time| {
            DateTime::from_timestamp(t.timestamp(), 0)
                .ok_or_else(|| CertificateError::X509("a date out of range".into()))
        };
        Ok(PlatformCertificate {
            serial_no: serial_hex(cert.raw_serial()),
            not_before: time(&cert.validity().not_before)?,
            not_after: time(&cert.validity().not_after)?,
            key: Arc::new(VerifyingKey::from_der(cert.public_key().raw)?),
            pem: text.trim().to_owned(),
        })
    }

    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// A DER serial as WeChat writes it: upper-case hex, the sign byte's leading zeros dropped.
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len().saturating_sub(1));
    raw[start..].iter().map(|b| format!("{b:02X}")).collect()
}

/// The answer of `GET /v3/certificates`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CertificatesAnswer {
    pub data: Vec<CertificateEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CertificateEntry {
    pub serial_no: String,
    pub effective_time: String,
    pub expire_time: String,
    pub encrypt_certificate: EncryptedResource,
}

/// Decrypts and parses every entry; each certificate must carry the serial its entry claims.
pub fn open_certificates(body: &[u8], key: &ApiV3Key) -> Result<Vec<PlatformCertificate>, CertificateError> {
    let answer: CertificatesAnswer = serde_json::from_slice(body).map_err(|e| CertificateError::Json(e.to_string()))?;
    if answer.data.is_empty() {
        return Err(CertificateError::Empty);
    }
    answer
        .data
        .iter()
        .map(|entry| {
            let pem = entry
                .encrypt_certificate
                .open(key)
                .map_err(|e| CertificateError::Decrypt(entry.serial_no.clone(), e))?;
            let cert = PlatformCertificate::from_pem(&String::from_utf8_lossy(&pem))?;
            if cert.serial_no != entry.serial_no {
                return Err(CertificateError::SerialMismatch {
                    claimed: entry.serial_no.clone(),
                    actual: cert.serial_no,
                });
            }
            Ok(cert)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JAVA `TestConfig.DOWNLOAD_CERTIFICATE_RESPONSE` under `TestConfig.API_V3_KEY`.
    #[test]
    fn java_certificates_vector() {
        let key = ApiV3Key::new("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        let certs = open_certificates(include_bytes!("vectors/java_certificates_response.json"), &key).unwrap();
        assert_eq!(certs.len(), 1);
        let cert = &certs[0];
        assert_eq!(cert.serial_no, "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC");
        assert_eq!(cert.not_before.to_rfc3339(), "2023-09-19T15:15:58+00:00");
        assert_eq!(cert.not_after.to_rfc3339(), "2028-09-17T15:15:58+00:00");
        assert!(cert.pem.starts_with("-----BEGIN CERTIFICATE-----"));

        let wrong = ApiV3Key::new("b7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        let err = open_certificates(include_bytes!("vectors/java_certificates_response.json"), &wrong).unwrap_err();
        assert!(matches!(err, CertificateError::Decrypt(_, AeadError::Authentication)));
    }

    #[test]
    fn serials_drop_the_sign_byte() {
        let cert = PlatformCertificate::from_pem(include_str!("vectors/go_notify_certificate.pem")).unwrap();
        assert_eq!(cert.serial_no, "D7CE59D1F522D701");
        assert_eq!(serial_hex(&[0x00, 0x0A, 0xFF]), "0AFF");
        assert_eq!(serial_hex(&[0]), "00");
    }

    #[test]
    fn a_lying_entry_is_refused() {
        let key = ApiV3Key::new("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        let mut answer: CertificatesAnswer =
            serde_json::from_slice(include_bytes!("vectors/java_certificates_response.json")).unwrap();
        answer.data[0].serial_no = "D7CE59D1F522D701".into();
        let body = serde_json::to_vec(&answer).unwrap();
        assert!(matches!(open_certificates(&body, &key), Err(CertificateError::SerialMismatch { .. })));
        assert!(matches!(open_certificates(b"{\"data\":[]}", &key), Err(CertificateError::Empty)));
        assert!(matches!(open_certificates(b"<xml/>", &key), Err(CertificateError::Json(_))));
    }
}
