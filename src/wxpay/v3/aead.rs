//! AES-256-GCM of API v3: the encrypted `resource` of every notify and the platform certificates
//! of `/v3/certificates`, under the merchant's APIv3 key (32 ASCII bytes used as the raw key).
//! The ciphertext is standard Base64 of the encrypted bytes followed by the 16-byte tag.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, Algorithm, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The only `algorithm` WeChat uses; anything else is refused, as the official SDKs do.
pub const ALGORITHM: &str = "AEAD_AES_256_GCM";

/// Why a resource could not be opened. A wrong key and a tampered ciphertext look the same.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AeadError {
    #[error("unsupported algorithm {0:?} (expected AEAD_AES_256_GCM)")]
    Algorithm(String),
    #[error("the nonce must be 12 bytes, got {0}")]
    Nonce(usize),
    #[error("the ciphertext is not Base64")]
    Base64,
    #[error("authentication failed: a wrong APIv3 key, or a tampered ciphertext, nonce or associated data")]
    Authentication,
}

/// The APIv3 key (APIv3密钥), set by the merchant in the merchant platform. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiV3Key([u8; 32]);

impl ApiV3Key {
    /// Exactly 32 bytes (the merchant platform only accepts 32 letters and digits).
    pub fn new(key: &str) -> Result<ApiV3Key, String> {
        let bytes: [u8; 32] = key
            .as_bytes()
            .try_into()
            .map_err(|_| format!("must be exactly 32 characters, got {}", key.chars().count()))?;
        Ok(ApiV3Key(bytes))
    }

    /// The key's bytes, for deriving other keys from it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn decrypt(&self, nonce: &str, associated_data: &str, ciphertext: &str) -> Result<Vec<u8>, AeadError> {
        open(&AES_256_GCM, &self.0, nonce, associated_data, ciphertext)
    }

    /// The inverse of [`ApiV3Key::decrypt`] (the simulator writes what WeChat would).
    pub fn encrypt(&self, nonce: &str, associated_data: &str, plaintext: &[u8]) -> Result<String, AeadError> {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).map_err(|_| AeadError::Authentication)?);
        let mut in_out = plaintext.to_vec();
        key.seal_in_place_append_tag(nonce_of(nonce)?, Aad::from(associated_data.as_bytes()), &mut in_out)
            .map_err(|_| AeadError::Authentication)?;
        Ok(STANDARD.encode(in_out))
    }
}

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key(hidden)")
    }
}

fn nonce_of(nonce: &str) -> Result<Nonce, AeadError> {
    let bytes: [u8; NONCE_LEN] = nonce.as_bytes().try_into().map_err(|_| AeadError::Nonce(nonce.len()))?;
    Ok(Nonce::assume_unique_for_key(bytes))
}

fn open(
    algorithm: &'static Algorithm,
    key: &[u8],
    nonce: &str,
    associated_data: &str,
    ciphertext: &str,
) -> Result<Vec<u8>, AeadError> {
    let nonce = nonce_of(nonce)?;
    let mut in_out = STANDARD.decode(ciphertext).map_err(|_| AeadError::Base64)?;
    let key = LessSafeKey::new(UnboundKey::new(algorithm, key).map_err(|_| AeadError::Authentication)?);
    let plain = key
        .open_in_place(nonce, Aad::from(associated_data.as_bytes()), &mut in_out)
        .map_err(|_| AeadError::Authentication)?
        .len();
    in_out.truncate(plain);
    Ok(in_out)
}

/// An encrypted `resource` (notify) or `encrypt_certificate` (certificates), as on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedResource {
    pub algorithm: String,
    pub ciphertext: String,
    /// May be empty; `transaction`, `refund` or `certificate` in practice.
    #[serde(default)]
    pub associated_data: String,
    pub nonce: String,
    /// `transaction` or `refund` on notifies; absent on certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_type: Option<String>,
}

impl EncryptedResource {
    /// Decrypts after checking the algorithm.
    pub fn open(&self, key: &ApiV3Key) -> Result<Vec<u8>, AeadError> {
        if self.algorithm != ALGORITHM {
            return Err(AeadError::Algorithm(self.algorithm.clone()));
        }
        key.decrypt(&self.nonce, &self.associated_data, &self.ciphertext)
    }

    /// Encrypts `plaintext` under `key` with a fresh 12-character nonce.
    pub fn seal(
        key: &ApiV3Key,
        associated_data: &str,
        original_type: Option<&str>,
        plaintext: &[u8],
    ) -> EncryptedResource {
        let nonce = crate::wxpay::nonce::random_alphanumeric(NONCE_LEN);
        let ciphertext = key.encrypt(&nonce, associated_data, plaintext).expect("a 12-byte nonce seals");
        EncryptedResource {
            algorithm: ALGORITHM.to_owned(),
            ciphertext,
            associated_data: associated_data.to_owned(),
            nonce,
            original_type: original_type.map(str::to_owned),
        }
    }
}

#[cfg(test)]
pub(crate) fn decrypt_aes128_for_vectors(
    key: &[u8; 16],
    nonce: &str,
    aad: &str,
    ct: &str,
) -> Result<Vec<u8>, AeadError> {
    open(&aws_lc_rs::aead::AES_128_GCM, key, nonce, aad, ct)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JAVA `AeadAesCipherTest` with `TestConfig.API_V3_KEY`.
    #[test]
    fn java_vector() {
        let key = ApiV3Key::new("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        let plain = key.decrypt("uluk4a9R25RW", "associatedData", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=").unwrap();
        assert_eq!(plain, b"message");
        assert_eq!(
            key.encrypt("uluk4a9R25RW", "associatedData", b"message").unwrap(),
            "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
        );
    }

    /// GO `utils/aes_test.go` uses a 16-byte key (AES-128-GCM), which production refuses.
    #[test]
    fn go_vector_with_its_16_byte_key() {
        let plain = decrypt_aes128_for_vectors(
            b"testAPIv3Key0000",
            "wCq51qZv4Yfg",
            "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8",
            "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC",
        )
        .unwrap();
        assert_eq!(plain, b"Hello World");
        assert!(ApiV3Key::new("testAPIv3Key0000").is_err());
    }

    #[test]
    fn tampering_and_wrong_keys_fail_authentication() {
        let key = ApiV3Key::new("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        let other = ApiV3Key::new("b7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
        let sealed = EncryptedResource::seal(&key, "transaction", Some("transaction"), b"{\"a\":1}");
        assert_eq!(sealed.open(&key).unwrap(), b"{\"a\":1}");
        assert_eq!(sealed.open(&other), Err(AeadError::Authentication));
        let mut bad = sealed.clone();
        bad.associated_data = "refund".into();
        assert_eq!(bad.open(&key), Err(AeadError::Authentication));
        let mut bad = sealed.clone();
        let mut bytes = STANDARD.decode(&bad.ciphertext).unwrap();
        bytes[0] ^= 1;
        bad.ciphertext = STANDARD.encode(bytes);
        assert_eq!(bad.open(&key), Err(AeadError::Authentication));
        let mut bad = sealed.clone();
        bad.algorithm = "AEAD_AES_128_GCM".into();
        assert!(matches!(bad.open(&key), Err(AeadError::Algorithm(_))));
        let mut bad = sealed;
        bad.nonce = "short".into();
        assert_eq!(bad.open(&key), Err(AeadError::Nonce(5)));
        assert!(!format!("{key:?}").contains("a7cde"));
    }
}
