//! The merchant API certificate for the mutual-TLS APIs (refund): a PEM pair, or the PKCS#12
//! file WeChat issues (`apiclient_cert.p12`, password = mch_id).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentityError {
    #[error("the PKCS#12 file cannot be read: {0}")]
    Pkcs12(String),
    #[error("the PKCS#12 password is wrong (WeChat's apiclient_cert.p12 uses the mch_id)")]
    Pkcs12Password,
    #[error("the certificate or key is not usable: {0}")]
    Pem(String),
}

/// A client certificate chain with its private key, as one PEM bundle.
#[derive(Clone)]
pub struct ClientIdentity {
    pem: Vec<u8>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientIdentity(***)")
    }
}

impl ClientIdentity {
    /// `apiclient_cert.pem` + `apiclient_key.pem`.
    pub fn from_pem_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<ClientIdentity, IdentityError> {
        let mut pem = Vec::with_capacity(cert_pem.len() + key_pem.len() + 1);
        pem.extend_from_slice(key_pem);
        pem.push(b'\n');
        pem.extend_from_slice(cert_pem);
        let identity = ClientIdentity { pem };
        identity.to_reqwest()?;
        Ok(identity)
    }

    /// `apiclient_cert.p12`, in the legacy PKCS#12 encryption WeChat's certificate tool writes
    /// (RC2/3DES with a SHA-1 MAC).
    pub fn from_pkcs12(der: &[u8], password: &str) -> Result<ClientIdentity, IdentityError> {
        let pfx = p12::PFX::parse(der).map_err(|e| IdentityError::Pkcs12(format!("{e:?}")))?;
        if !pfx.verify_mac(password) {
            return Err(IdentityError::Pkcs12Password);
        }
        let unsupported = |what: &str| {
            IdentityError::Pkcs12(format!(
                "{what}; if the file uses modern AES encryption, convert it with `openssl pkcs12 -in apiclient_cert.p12 -nodes` and configure the PEM pair"
            ))
        };
        let keys = pfx.key_bags(password).map_err(|e| unsupported(&format!("{e:?}")))?;
        let certs = pfx.cert_x509_bags(password).map_err(|e| unsupported(&format!("{e:?}")))?;
        let key = keys.first().ok_or_else(|| unsupported("no private key inside"))?;
        if certs.is_empty() {
            return Err(unsupported("no certificate inside"));
        }
        let mut pem = pem_block("PRIVATE KEY", key);
        for cert in &certs {
            pem.push_str(&pem_block("CERTIFICATE", cert));
        }
        let identity = ClientIdentity { pem: pem.into_bytes() };
        identity.to_reqwest()?;
        Ok(identity)
    }

    pub(crate) fn to_reqwest(&self) -> Result<reqwest::Identity, IdentityError> {
        reqwest::Identity::from_pem(&self.pem).map_err(|e| IdentityError::Pem(e.to_string()))
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
