//! The RSA keys of API v3: the merchant API private key (signs every request and the JSAPI
//! `paySign`) and the public keys WeChat signs with (a platform certificate's, or the WeChat Pay
//! public key). RSA comes from aws-lc-rs, already in the tree through rustls; the RustCrypto `rsa`
//! crate is avoided for its unfixed timing advisory on private-key operations (RUSTSEC-2023-0071).

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, ParsedPublicKey, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

/// WeChat Pay issues 2048-bit keys; anything shorter is refused as a configuration mistake.
const MIN_MODULUS_BYTES: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("not a PEM block: {0}")]
    Pem(String),
    #[error("expected a PEM block labelled {expected}, found \"{found}\"")]
    Label { expected: &'static str, found: String },
    #[error("not a usable RSA key: {0}")]
    Rejected(String),
    #[error("an RSA key of {0} bits; WeChat Pay keys have 2048 bits or more")]
    TooShort(usize),
}

/// The merchant API private key (`apiclient_key.pem`). Its Debug output never shows the key.
pub struct MerchantKey {
    pair: RsaKeyPair,
    rng: SystemRandom,
}

impl MerchantKey {
    /// Reads `-----BEGIN PRIVATE KEY-----` (PKCS#8, what the merchant platform's tool writes) or
    /// `-----BEGIN RSA PRIVATE KEY-----` (PKCS#1, what some conversions write).
    pub fn from_pem(text: &str) -> Result<MerchantKey, KeyError> {
        let block = pem::parse(text.trim()).map_err(|e| KeyError::Pem(e.to_string()))?;
        let pair = match block.tag() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(block.contents()),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(block.contents()),
            other => {
                return Err(KeyError::Label { expected: "PRIVATE KEY", found: other.to_owned() });
            }
        }
        .map_err(|e| KeyError::Rejected(e.to_string()))?;
        if pair.public_modulus_len() < MIN_MODULUS_BYTES {
            return Err(KeyError::TooShort(pair.public_modulus_len() * 8));
        }
        Ok(MerchantKey { pair, rng: SystemRandom::new() })
    }

    /// A new 2048-bit key pair (the simulator's platform key, the demo merchant's key).
    pub fn generate() -> Result<MerchantKey, KeyError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(MerchantKey { pair, rng: SystemRandom::new() })
    }

    /// The key as PKCS#8 PEM, the form [`MerchantKey::from_pem`] reads back.
    pub fn to_pkcs8_pem(&self) -> String {
        let der = self.pair.as_der().expect("an RSA key pair serializes to PKCS#8");
        pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()))
    }

    /// The public half, as a verifier.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey::from_der(self.pair.public_key().as_ref()).expect("a key pair's own public key parses")
    }

    /// The public half as `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo), the form of the
    /// WeChat Pay public key file (`pub_key.pem`).
    pub fn public_key_pem(&self) -> String {
        let spki = self.pair.public_key().as_der().expect("an RSA public key serializes to SPKI");
        pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()))
    }

    /// `Base64(RSASSA-PKCS1-v1_5(SHA-256, key, message))`: 344 characters for a 2048-bit key.
    pub fn sign(&self, message: &[u8]) -> String {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
            .expect("signing with a valid RSA key and a buffer of the modulus' size succeeds");
        STANDARD.encode(signature)
    }
}

impl fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MerchantKey(RSA-{}, private part hidden)", self.pair.public_modulus_len() * 8)
    }
}

/// A public key WeChat's signatures are checked with, parsed once.
#[derive(Clone)]
pub struct VerifyingKey {
    parsed: ParsedPublicKey,
}

impl VerifyingKey {
    /// Reads `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo, the WeChat Pay public key file)
    /// or `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1).
    pub fn from_pem(text: &str) -> Result<VerifyingKey, KeyError> {
        let block = pem::parse(text.trim()).map_err(|e| KeyError::Pem(e.to_string()))?;
        match block.tag() {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => VerifyingKey::from_der(block.contents()),
            other => Err(KeyError::Label { expected: "PUBLIC KEY", found: other.to_owned() }),
        }
    }

    /// From DER: SubjectPublicKeyInfo or PKCS#1 `RSAPublicKey`.
    pub fn from_der(der: &[u8]) -> Result<VerifyingKey, KeyError> {
        let parsed = ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der)
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(VerifyingKey { parsed })
    }

    /// Whether `signature` (standard Base64) is this key's RSA-SHA256 signature of `message`.
    /// Anything that is not Base64 (the `WECHATPAY/SIGNTEST/` probes) is simply not a signature.
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        match STANDARD.decode(signature) {
            Ok(bytes) => self.parsed.verify_sig(message, &bytes).is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyingKey(RSA)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFICIAL_KEY: &str = include_str!("vectors/official_doc_key.pem");
    const GO_KEY: &str = include_str!("vectors/go_signer_key.pem");
    const GO_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2VCTd91fnUn73Xy9DLvt
/V62TVxRTEEstVdeRaZ3B3leO0pldE806mXO4RwdHXagHQ4vGeZN0yqm++rDsGK+
U3AH7kejyD2pXshNP9Cq5YwbptiLGtjcquw4HNxJQUOmDeJf2vg6byms9RUipiq4
SzbJKqJFlUpbuIPDpSpWz10PYmyCNeDGUUK65E5h2B834uxl1zNLYQCrkdBzb8oU
xwYeP5a2DNxmjL5lsJML7DGr5znsevnoqGRwTm9fxCGfy8wus7hwKz6clt3Whmmd
a7UAdb1c08hEQFVRbF14AR73xbnd8N0obCWJPCbzMCtkaSef4FdEEgEXJiw0VAJT
8wIDAQAB
-----END PUBLIC KEY-----";

    /// GO `core/auth/signers/sha256withrsa_signer_test.go`: the six bytes `source`.
    #[test]
    fn go_signer_vector() {
        let key = MerchantKey::from_pem(GO_KEY).unwrap();
        assert_eq!(
            key.sign(b"source"),
            "BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9K6q9bLlDhPXuoVz+pp4hAm6pHU4ld815U4jsKu1RkyaII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyvD1vfpxrMT4SL536GLwvpUHlCqIMzoZUguLli/K8V29QiOhuH6IEqLNJn8e9b3nwNcQ7be3CzYGpDAKBfDGPCqCv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJbknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7DFD27EpSQEqA8bX9+8m1rLg=="
        );
    }

    /// GO `sha256withrsa_pubkey_verifier_test.go`'s public key is the signer key's public half.
    #[test]
    fn go_public_key_verifies_the_signer_vector() {
        let public = VerifyingKey::from_pem(GO_PUBLIC_KEY).unwrap();
        let key = MerchantKey::from_pem(GO_KEY).unwrap();
        let sig = key.sign(b"source");
        assert!(public.verify(b"source", &sig));
        assert!(!public.verify(b"sourcf", &sig));
        assert!(!public.verify(b"source", "WECHATPAY/SIGNTEST/abc"));
        // The same public key, written by us: the SPKI bytes are those of GO's file.
        let ours = pem::parse(key.public_key_pem()).unwrap();
        assert_eq!(ours.contents(), pem::parse(GO_PUBLIC_KEY).unwrap().contents());
    }

    #[test]
    fn generated_keys_round_trip_through_pem() {
        let key = MerchantKey::generate().unwrap();
        let again = MerchantKey::from_pem(&key.to_pkcs8_pem()).unwrap();
        let sig = again.sign(b"hello");
        assert_eq!(sig.len(), 344);
        assert!(VerifyingKey::from_pem(&key.public_key_pem()).unwrap().verify(b"hello", &sig));
        assert!(key.verifying_key().verify(b"hello", &sig));
        assert!(!format!("{key:?}").contains("MII"));
    }

    #[test]
    fn bad_pem_is_named() {
        assert!(matches!(MerchantKey::from_pem("not a key"), Err(KeyError::Pem(_))));
        let cert = include_str!("vectors/go_notify_certificate.pem");
        assert!(matches!(MerchantKey::from_pem(cert), Err(KeyError::Label { .. })));
        assert!(matches!(VerifyingKey::from_pem(OFFICIAL_KEY), Err(KeyError::Label { .. })));
        let garbage = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(matches!(MerchantKey::from_pem(&garbage), Err(KeyError::Rejected(_))));
    }
}
