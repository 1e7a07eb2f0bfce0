//! The simulator's v3 identity as WeChat Pay: platform certificates (self-signed,
//! `CN=Tenpay.com sign`, 20-byte serials written as 40 upper-case hex digits) whose keys sign
//! answers and notifies, their rotation, and the WeChat Pay public key (`PUB_KEY_ID_` + 28 digits)
//! of the public-key mode.
//!
//! It is generated on first use, since RSA key generation takes a noticeable moment and most
//! simulators never speak v3. Reset keeps it (merchants keep the certificates they downloaded),
//! and a state file saves it, so a restarted simulator still signs with the keys its merchants
//! pinned.

use std::sync::Arc;

use chrono::{Datelike, Days, NaiveDate, Utc};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_RSA_SHA256, SerialNumber};
use serde::{Deserialize, Serialize};

use crate::simulator::{Simulator, ids};
use crate::wxpay::v3::MerchantKey;
use crate::wxpay::v3::authorization::SCHEME;
use crate::wxpay::v3::certificates::PlatformCertificate;
use crate::wxpay::v3::verify::{
    HEADER_NONCE, HEADER_SERIAL, HEADER_SIGNATURE, HEADER_SIGNATURE_TYPE, HEADER_TIMESTAMP, PROBE_PREFIX,
    response_message,
};

/// Platform certificates are valid for five years, as WeChat's are.
const VALIDITY_DAYS: u64 = 5 * 365;

/// What a merchant configures to verify the simulator: the current platform certificate and
/// its serial, and the WeChat Pay public key with its ID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V3PlatformInfo {
    pub certificate_pem: String,
    /// 40 upper-case hex digits, the `Wechatpay-Serial` of certificate-signed messages.
    pub certificate_serial: String,
    /// `-----BEGIN PUBLIC KEY-----` (the `pub_key.pem` of the merchant platform).
    pub public_key_pem: String,
    /// `PUB_KEY_ID_` + 28 digits, the `Wechatpay-Serial` of public-key-signed messages.
    pub public_key_id: String,
}

/// One platform certificate and its private key.
pub(crate) struct PlatformCert {
    pub certificate: PlatformCertificate,
    pub key: Arc<MerchantKey>,
}

/// The platform identity; the last certificate is the one that signs.
pub(crate) struct Platform {
    pub certificates: Vec<PlatformCert>,
    pub public_key: Arc<MerchantKey>,
    pub public_key_id: String,
    persisted: PersistedPlatform,
}

/// The identity as the state file keeps it: PEMs only.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PersistedPlatform {
    certificates: Vec<PersistedCert>,
    public_key_id: String,
    /// PKCS#8 of the public-key mode's private key.
    public_key_private_pem: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PersistedCert {
    certificate_pem: String,
    private_key_pem: String,
}

/// A fresh key and a self-signed certificate for it, valid from yesterday for five years.
fn new_certificate() -> Result<PersistedCert, String> {
    let key = MerchantKey::generate().map_err(|e| e.to_string())?;
    let private_key_pem = key.to_pkcs8_pem();
    let pair = KeyPair::from_pkcs8_pem_and_sign_algo(&private_key_pem, &PKCS_RSA_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    let mut serial: [u8; 20] = rand::random();
    // A positive DER integer with no leading zero: its hex is always 40 digits.
    serial[0] = 0x10 | (serial[0] & 0x6F);
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Tenpay.com sign");
    name.push(DnType::OrganizationalUnitName, "Tenpay.com CA Center");
    name.push(DnType::OrganizationName, "Tenpay.com");
    name.push(DnType::LocalityName, "ShenZhen");
    name.push(DnType::CountryName, "CN");
    params.distinguished_name = name;
    let today = Utc::now().date_naive();
    // rcgen takes `time` dates, and only builds midnights: enough for a validity period.
    let midnight = |day: Option<NaiveDate>| {
        let day = day.ok_or("a date out of range")?;
        let (month, date) = (u8::try_from(day.month()), u8::try_from(day.day()));
        match (month, date) {
            (Ok(m), Ok(d)) => Ok(rcgen::date_time_ymd(day.year(), m, d)),
            _ => Err("a date out of range"),
        }
    };
    params.not_before = midnight(today.checked_sub_days(Days::new(1)))?;
    params.not_after = midnight(today.checked_add_days(Days::new(VALIDITY_DAYS)))?;
    let cert = params.self_signed(&pair).map_err(|e| e.to_string())?;
    Ok(PersistedCert { certificate_pem: cert.pem(), private_key_pem })
}

impl Platform {
    /// A new identity: one certificate and the public-key mode's key.
    pub fn generate() -> Result<Platform, String> {
        let public_key = MerchantKey::generate().map_err(|e| e.to_string())?;
        Platform::from_persisted(PersistedPlatform {
            certificates: vec![new_certificate()?],
            public_key_id: format!("PUB_KEY_ID_{}", ids::random_digits(28)),
            public_key_private_pem: public_key.to_pkcs8_pem(),
        })
    }

    /// This identity with one more certificate, which signs from now on.
    #[cfg(test)]
    pub fn rotated(&self) -> Result<Platform, String> {
        self.with_certificate(new_certificate()?)
    }

    fn with_certificate(&self, cert: PersistedCert) -> Result<Platform, String> {
        let mut persisted = self.persisted.clone();
        persisted.certificates.push(cert);
        Platform::from_persisted(persisted)
    }

    pub fn from_persisted(persisted: PersistedPlatform) -> Result<Platform, String> {
        let certificates = persisted
            .certificates
            .iter()
            .map(|c| {
                let certificate = PlatformCertificate::from_pem(&c.certificate_pem).map_err(|e| e.to_string())?;
                let key = MerchantKey::from_pem(&c.private_key_pem).map_err(|e| e.to_string())?;
                Ok(PlatformCert { certificate, key: Arc::new(key) })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if certificates.is_empty() {
            return Err("no platform certificate".into());
        }
        let public_key = MerchantKey::from_pem(&persisted.public_key_private_pem).map_err(|e| e.to_string())?;
        Ok(Platform {
            certificates,
            public_key: Arc::new(public_key),
            public_key_id: persisted.public_key_id.clone(),
            persisted,
        })
    }

    pub fn persisted(&self) -> &PersistedPlatform {
        &self.persisted
    }

    /// The certificate that signs.
    pub fn current(&self) -> &PlatformCert {
        self.certificates.last().expect("a platform has a certificate")
    }

    pub fn info(&self) -> V3PlatformInfo {
        let current = self.current();
        V3PlatformInfo {
            certificate_pem: current.certificate.pem.clone(),
            certificate_serial: current.certificate.serial_no.clone(),
            public_key_pem: self.public_key.public_key_pem(),
            public_key_id: self.public_key_id.clone(),
        }
    }

    /// The `Wechatpay-*` headers of a message: signed now (real clock, which the merchant checks
    /// against its own) by the public key when asked, by the current certificate otherwise; or a
    /// `WECHATPAY/SIGNTEST/` probe in place of the signature.
    pub fn sign(&self, public_key: bool, body: &[u8], probe: bool) -> Vec<(&'static str, String)> {
        self.sign_skewed(public_key, body, probe, 0)
    }

    /// [`Platform::sign`] with a timestamp `skew_seconds` off the real clock (a fault).
    pub fn sign_skewed(
        &self,
        public_key: bool,
        body: &[u8],
        probe: bool,
        skew_seconds: i64,
    ) -> Vec<(&'static str, String)> {
        let (serial, key) = if public_key {
            (self.public_key_id.as_str(), &self.public_key)
        } else {
            let current = self.current();
            (current.certificate.serial_no.as_str(), &current.key)
        };
        let timestamp = Utc::now().timestamp().saturating_add(skew_seconds).to_string();
        let nonce = ids::random_hex(32);
        let signature = if probe {
            format!("{PROBE_PREFIX}{}", crate::wxpay::nonce::random_alphanumeric(64))
        } else {
            key.sign(&response_message(&timestamp, &nonce, body))
        };
        vec![
            (HEADER_TIMESTAMP, timestamp),
            (HEADER_NONCE, nonce),
            (HEADER_SERIAL, serial.to_owned()),
            (HEADER_SIGNATURE, signature),
            (HEADER_SIGNATURE_TYPE, SCHEME.to_owned()),
        ]
    }
}

impl Simulator {
    /// The platform identity, created on first use.
    pub(crate) fn platform(&self) -> Arc<Platform> {
        if let Some(platform) = self.read(|s| s.v3_platform.clone()) {
            return platform;
        }
        // Generated outside the state lock (it takes a moment); the first to store it wins.
        let fresh = Arc::new(Platform::generate().expect("generating RSA keys and a certificate succeeds"));
        self.write(|s| s.v3_platform.get_or_insert(fresh).clone())
    }

    /// The current v3 platform certificate and the WeChat Pay public key, as a merchant
    /// configures them.
    pub fn v3_platform(&self) -> V3PlatformInfo {
        self.platform().info()
    }

    /// Adds a new platform certificate, which signs from now on; `/v3/certificates` lists the old
    /// one too. Returns the new identity.
    pub fn rotate_v3_certificate(&self) -> V3PlatformInfo {
        let base = self.platform();
        let cert = new_certificate().expect("generating RSA keys and a certificate succeeds");
        self.write(|s| {
            // Added to the identity in force now: a concurrent rotation is kept, not overwritten.
            let current = s.v3_platform.clone().unwrap_or(base);
            let next = Arc::new(current.with_certificate(cert).expect("a certificate made here reads back"));
            s.v3_platform = Some(next.clone());
            next.info()
        })
    }

    /// How many `GET /v3/certificates` were answered 200.
    pub fn v3_certificate_downloads(&self) -> u64 {
        self.read(|s| s.v3_certificate_downloads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::v3::verify::{KeySet, SignedHeaders, verify};

    #[test]
    fn certificates_look_like_wechats_and_sign() {
        let platform = Platform::generate().unwrap();
        let cert = &platform.current().certificate;
        assert_eq!(cert.serial_no.len(), 40, "{}", cert.serial_no);
        assert!(cert.serial_no.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        assert!(cert.is_valid_at(Utc::now()));
        assert!(platform.public_key_id.starts_with("PUB_KEY_ID_") && platform.public_key_id.len() == 39);
        let (_, der) = x509_parser::pem::parse_x509_pem(cert.pem.as_bytes()).unwrap();
        let parsed = der.parse_x509().unwrap();
        assert_eq!(parsed.subject().iter_common_name().next().unwrap().as_str().unwrap(), "Tenpay.com sign");

        for public_key in [false, true] {
            let headers = platform.sign(public_key, b"{}", false);
            let get = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
            let read = SignedHeaders::read(get).unwrap();
            let keys = if public_key {
                KeySet::single(&platform.public_key_id, platform.public_key.verifying_key())
            } else {
                KeySet::single(&cert.serial_no, cert.key.as_ref().clone())
            };
            assert_eq!(read.serial, if public_key { &platform.public_key_id } else { &cert.serial_no }.clone());
            verify(&read, b"{}", &keys, Utc::now().timestamp()).unwrap();
            assert!(verify(&read, b"{ }", &keys, Utc::now().timestamp()).is_err());
        }
        let probe = platform.sign(false, b"", true);
        assert!(probe.iter().any(|(n, v)| *n == HEADER_SIGNATURE && v.starts_with(PROBE_PREFIX)));
    }

    #[test]
    fn rotation_and_persistence_keep_every_key() {
        let platform = Platform::generate().unwrap();
        let rotated = platform.rotated().unwrap();
        assert_eq!(rotated.certificates.len(), 2);
        assert_ne!(rotated.current().certificate.serial_no, platform.current().certificate.serial_no);
        let json = serde_json::to_string(rotated.persisted()).unwrap();
        let back = Platform::from_persisted(serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back.info(), rotated.info());
        assert_eq!(back.certificates[0].certificate.serial_no, platform.current().certificate.serial_no);
    }
}
