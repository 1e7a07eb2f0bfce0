//! The v2 signature: MD5 or HMAC-SHA256 over the sorted, non-empty fields plus `&key=API_KEY`.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The two v2 signature algorithms, as named in `sign_type` / `signType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SignType {
    #[default]
    Md5,
    HmacSha256,
}

impl SignType {
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    pub fn parse(s: &str) -> Option<SignType> {
        match s {
            "MD5" => Some(SignType::Md5),
            "HMAC-SHA256" => Some(SignType::HmacSha256),
            _ => None,
        }
    }

    /// Length in hex characters of a signature made with this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            SignType::Md5 => 32,
            SignType::HmacSha256 => 64,
        }
    }
}

impl fmt::Display for SignType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The merchant's 32-character APIv2 key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the WeChat Pay API key must be 32 ASCII letters or digits (got {len} characters)")]
pub struct ApiKeyError {
    pub len: usize,
}

impl ApiKey {
    pub fn new(key: &str) -> Result<ApiKey, ApiKeyError> {
        if key.len() == 32 && key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(ApiKey(key.to_owned()))
        } else {
            Err(ApiKeyError { len: key.chars().count() })
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Why a received signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    #[error("the message carries no sign")]
    MissingSign,
    #[error("the sign is not 32 or 64 hexadecimal characters")]
    MalformedSign,
    #[error("unsupported sign_type {0:?}")]
    UnknownSignType(String),
    #[error("the sign does not match the message")]
    Mismatch,
}

/// Builds `stringSignTemp`: the sorted `k=v` pairs of every non-empty field except `sign`,
/// joined by `&`, followed by `&key=API_KEY`.
pub fn string_to_sign<'a, I>(fields: I, key: &ApiKey) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut pairs: Vec<(&str, &str)> = fields.into_iter().filter(|(k, v)| !v.is_empty() && *k != "sign").collect();
    // Byte order is ASCII order, which is what WeChat sorts by (upper case before lower case).
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut s = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>() + 40);
    for (k, v) in pairs {
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('&');
    }
    s.push_str("key=");
    s.push_str(key.expose());
    s
}

/// Signs a set of fields; returns upper-case hex.
pub fn sign<'a, I>(fields: I, key: &ApiKey, sign_type: SignType) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let message = string_to_sign(fields, key);
    match sign_type {
        SignType::Md5 => upper_hex(&Md5::digest(message.as_bytes())),
        SignType::HmacSha256 => {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC accepts keys of any length");
            mac.update(message.as_bytes());
            upper_hex(&mac.finalize().into_bytes())
        }
    }
}

/// Verifies the `sign` of a received message over **every** field it carries (unknown ones
/// included). The algorithm comes from `sign_type` when present, else from the sign's length,
/// because notifies of HMAC orders often omit `sign_type`. Returns the algorithm that matched.
pub fn verify<'a, I>(fields: I, key: &ApiKey) -> Result<SignType, VerifyError>
where
    I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
{
    let mut received = None;
    let mut declared = None;
    for (k, v) in fields.clone() {
        match k {
            "sign" => received = Some(v),
            "sign_type" if !v.is_empty() => declared = Some(v),
            _ => {}
        }
    }
    let received = received.filter(|s| !s.is_empty()).ok_or(VerifyError::MissingSign)?;
    let sign_type = match declared {
        Some(name) => SignType::parse(name).ok_or_else(|| VerifyError::UnknownSignType(name.to_owned()))?,
        None => match received.len() {
            32 => SignType::Md5,
            64 => SignType::HmacSha256,
            _ => return Err(VerifyError::MalformedSign),
        },
    };
    if received.len() != sign_type.hex_len() || !received.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(if received.bytes().all(|b| b.is_ascii_hexdigit()) && matches!(received.len(), 32 | 64) {
            VerifyError::Mismatch
        } else {
            VerifyError::MalformedSign
        });
    }
    let expected = sign(fields, key, sign_type);
    let received_upper = received.to_ascii_uppercase();
    if bool::from(expected.as_bytes().ct_eq(received_upper.as_bytes())) {
        Ok(sign_type)
    } else {
        Err(VerifyError::Mismatch)
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Lower-case hex MD5, used to derive the refund-notify AES key from the API key.
pub fn md5_lower_hex(data: &[u8]) -> String {
    upper_hex(&Md5::digest(data)).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn official_key() -> ApiKey {
        ApiKey::new("192006250b4c09247ec02edce69f6a2d").unwrap()
    }

    const OFFICIAL: [(&str, &str); 5] = [
        ("appid", "wxd930ea5d5a258f4f"),
        ("mch_id", "10000100"),
        ("device_info", "1000"),
        ("body", "test"),
        ("nonce_str", "ibuaiVcKdpRxkhJA"),
    ];

    #[test]
    fn official_vector_string_a() {
        assert_eq!(
            string_to_sign(OFFICIAL, &official_key()),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d"
        );
    }

    #[test]
    fn official_vector_md5() {
        assert_eq!(sign(OFFICIAL, &official_key(), SignType::Md5), "9A0A8659F005D6984697E2CA0A9CF3B7");
    }

    #[test]
    fn official_vector_hmac_sha256() {
        assert_eq!(
            sign(OFFICIAL, &official_key(), SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn wechatpy_vector() {
        let fields = [("test1", "test1"), ("test2", "test2")];
        assert_eq!(sign(fields, &official_key(), SignType::Md5), "1E3A8D73B5A4AEE787C0F68B5DAB8520");
        assert_eq!(
            sign(fields, &official_key(), SignType::HmacSha256),
            "EDAC6D70D2FDF5A2382F8204FC96A1918017E46ACC5297F565ED1A7610ACF659"
        );
    }

    #[test]
    fn empty_values_and_sign_are_skipped() {
        let mut with_noise = OFFICIAL.to_vec();
        with_noise.push(("attach", ""));
        with_noise.push(("sign", "WHATEVER"));
        assert_eq!(sign(with_noise, &official_key(), SignType::Md5), "9A0A8659F005D6984697E2CA0A9CF3B7");
    }

    #[test]
    fn verify_detects_algorithm_by_length_and_sign_type() {
        let key = official_key();
        let mut md5_msg = OFFICIAL.to_vec();
        md5_msg.push(("sign", "9A0A8659F005D6984697E2CA0A9CF3B7"));
        assert_eq!(verify(md5_msg.iter().copied(), &key), Ok(SignType::Md5));

        let mut hmac_msg = OFFICIAL.to_vec();
        hmac_msg.push(("sign", "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"));
        assert_eq!(verify(hmac_msg.iter().copied(), &key), Ok(SignType::HmacSha256));

        // A declared sign_type is itself signed, so declaring it changes the expected value.
        let mut declared = OFFICIAL.to_vec();
        declared.push(("sign_type", "HMAC-SHA256"));
        let s = sign(declared.iter().copied(), &key, SignType::HmacSha256);
        declared.push(("sign", &s));
        assert_eq!(verify(declared.iter().copied(), &key), Ok(SignType::HmacSha256));
    }

    #[test]
    fn verify_refuses_missing_empty_and_malformed_signs() {
        let key = official_key();
        assert_eq!(verify(OFFICIAL, &key), Err(VerifyError::MissingSign));
        let mut empty = OFFICIAL.to_vec();
        empty.push(("sign", ""));
        assert_eq!(verify(empty.iter().copied(), &key), Err(VerifyError::MissingSign));
        for bad in ["XYZ", "9A0A8659F005D6984697E2CA0A9CF3B", "ZZ0A8659F005D6984697E2CA0A9CF3B7"] {
            let mut msg = OFFICIAL.to_vec();
            msg.push(("sign", bad));
            assert_eq!(verify(msg.iter().copied(), &key), Err(VerifyError::MalformedSign), "{bad}");
        }
        let mut wrong_type = OFFICIAL.to_vec();
        wrong_type.push(("sign_type", "SHA1"));
        wrong_type.push(("sign", "9A0A8659F005D6984697E2CA0A9CF3B7"));
        assert_eq!(verify(wrong_type.iter().copied(), &key), Err(VerifyError::UnknownSignType("SHA1".into())));
        // An MD5-length sign under a declared HMAC sign_type cannot match.
        let mut mixed = OFFICIAL.to_vec();
        mixed.push(("sign_type", "HMAC-SHA256"));
        mixed.push(("sign", "9A0A8659F005D6984697E2CA0A9CF3B7"));
        assert_eq!(verify(mixed.iter().copied(), &key), Err(VerifyError::Mismatch));
    }

    #[test]
    fn api_key_is_validated_and_hidden() {
        assert!(ApiKey::new("short").is_err());
        assert!(ApiKey::new("192006250b4c09247ec02edce69f6a2d!").is_err());
        assert_eq!(format!("{:?}", official_key()), "ApiKey(***)");
    }

    #[test]
    fn refund_key_derivation_is_lower_hex_md5() {
        assert_eq!(md5_lower_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
