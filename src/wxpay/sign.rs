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
    #[error("sign_type {declared} is not the configured {expected}")]
    SignTypeMismatch { declared: SignType, expected: SignType },
    #[error("the sign has the length of another algorithm than {expected}")]
    OtherAlgorithm { expected: SignType },
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

/// Verifies the `sign` of a message we received (a notify, an API reply) over **every** field it
/// carries (unknown ones included), with the one algorithm this merchant is configured for.
///
/// Only `expected` verifies: a `sign_type` naming the other algorithm, or a sign of the other
/// algorithm's length, is refused before any hashing. Accepting whichever the message asks for
/// would let an MD5 signature stand where HMAC-SHA256 was chosen (a downgrade). An absent
/// `sign_type` means `expected`, because WeChat's notifies omit it even for HMAC orders.
pub fn verify<'a, I>(fields: I, key: &ApiKey, expected: SignType) -> Result<(), VerifyError>
where
    I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
{
    let (received, declared) = sign_and_declared_type(fields.clone())?;
    if let Some(declared) = declared
        && declared != expected
    {
        return Err(VerifyError::SignTypeMismatch { declared, expected });
    }
    check_received(received, expected)?;
    compare(fields, key, expected, received)
}

/// Verifies a message with the algorithm it names itself: its `sign_type` when present, else
/// the sign's length. That is the other side of the protocol (WeChat reading a merchant's
/// request, in the simulator); what the app receives goes through [`verify`].
pub fn detect_and_verify<'a, I>(fields: I, key: &ApiKey) -> Result<SignType, VerifyError>
where
    I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
{
    let (received, declared) = sign_and_declared_type(fields.clone())?;
    let sign_type = match declared {
        Some(declared) => declared,
        None => match received.len() {
            32 => SignType::Md5,
            64 => SignType::HmacSha256,
            _ => return Err(VerifyError::MalformedSign),
        },
    };
    check_received(received, sign_type)?;
    compare(fields, key, sign_type, received).map(|()| sign_type)
}

/// The non-empty `sign`, and the algorithm a non-empty `sign_type` names.
fn sign_and_declared_type<'a, I>(fields: I) -> Result<(&'a str, Option<SignType>), VerifyError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut received = None;
    let mut declared = None;
    for (k, v) in fields {
        match k {
            "sign" => received = Some(v),
            "sign_type" if !v.is_empty() => declared = Some(v),
            _ => {}
        }
    }
    let received = received.filter(|s| !s.is_empty()).ok_or(VerifyError::MissingSign)?;
    let declared = match declared {
        Some(name) => Some(SignType::parse(name).ok_or_else(|| VerifyError::UnknownSignType(name.to_owned()))?),
        None => None,
    };
    Ok((received, declared))
}

/// A sign is 32 or 64 hex digits; the length must be that of `sign_type`.
fn check_received(received: &str, sign_type: SignType) -> Result<(), VerifyError> {
    if !received.bytes().all(|b| b.is_ascii_hexdigit()) || !matches!(received.len(), 32 | 64) {
        return Err(VerifyError::MalformedSign);
    }
    if received.len() != sign_type.hex_len() {
        return Err(VerifyError::OtherAlgorithm { expected: sign_type });
    }
    Ok(())
}

fn compare<'a, I>(fields: I, key: &ApiKey, sign_type: SignType, received: &str) -> Result<(), VerifyError>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let expected = sign(fields, key, sign_type);
    let received_upper = received.to_ascii_uppercase();
    if bool::from(expected.as_bytes().ct_eq(received_upper.as_bytes())) { Ok(()) } else { Err(VerifyError::Mismatch) }
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

    fn with(extra: &[(&'static str, &'static str)], sign_type: SignType) -> Vec<(&'static str, String)> {
        let mut msg: Vec<(&str, String)> = OFFICIAL.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        msg.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let s = sign(msg.iter().map(|(k, v)| (*k, v.as_str())), &official_key(), sign_type);
        msg.push(("sign", s));
        msg
    }

    fn check(msg: &[(&str, String)], expected: SignType) -> Result<(), VerifyError> {
        verify(msg.iter().map(|(k, v)| (*k, v.as_str())), &official_key(), expected)
    }

    #[test]
    fn verify_accepts_the_configured_algorithm_declared_or_not() {
        for st in [SignType::Md5, SignType::HmacSha256] {
            assert_eq!(check(&with(&[], st), st), Ok(()), "{st} without sign_type");
            // A declared sign_type is itself signed, so declaring it changes the expected value.
            assert_eq!(check(&with(&[("sign_type", st.as_str())], st), st), Ok(()), "{st} declared");
        }
        let mut lower = with(&[], SignType::HmacSha256);
        lower.last_mut().unwrap().1.make_ascii_lowercase();
        assert_eq!(check(&lower, SignType::HmacSha256), Ok(()), "hex case does not matter");
    }

    /// The downgrade: whatever the message claims, only the configured algorithm verifies.
    #[test]
    fn verify_refuses_the_other_algorithm() {
        use SignType::{HmacSha256, Md5};
        for (configured, other) in [(HmacSha256, Md5), (Md5, HmacSha256)] {
            assert_eq!(check(&with(&[], other), configured), Err(VerifyError::OtherAlgorithm { expected: configured }));
            let declared = with(&[("sign_type", other.as_str())], other);
            let mismatch = VerifyError::SignTypeMismatch { declared: other, expected: configured };
            assert_eq!(check(&declared, configured), Err(mismatch.clone()));
            // A sign_type contradicting the configured one, over a sign of our own algorithm.
            assert_eq!(check(&with(&[("sign_type", other.as_str())], configured), configured), Err(mismatch));
        }
    }

    #[test]
    fn detect_and_verify_takes_the_algorithm_from_the_message() {
        for st in [SignType::Md5, SignType::HmacSha256] {
            let msg = with(&[], st);
            assert_eq!(detect_and_verify(msg.iter().map(|(k, v)| (*k, v.as_str())), &official_key()), Ok(st));
            let declared = with(&[("sign_type", st.as_str())], st);
            assert_eq!(detect_and_verify(declared.iter().map(|(k, v)| (*k, v.as_str())), &official_key()), Ok(st));
        }
        // An MD5-length sign under a declared HMAC sign_type cannot match.
        let mut mixed = with(&[("sign_type", "HMAC-SHA256")], SignType::Md5);
        mixed.last_mut().unwrap().1 = "9A0A8659F005D6984697E2CA0A9CF3B7".into();
        let got = detect_and_verify(mixed.iter().map(|(k, v)| (*k, v.as_str())), &official_key());
        assert_eq!(got, Err(VerifyError::OtherAlgorithm { expected: SignType::HmacSha256 }));
    }

    #[test]
    fn verify_refuses_missing_empty_and_malformed_signs() {
        let key = official_key();
        let md5 = SignType::Md5;
        assert_eq!(verify(OFFICIAL, &key, md5), Err(VerifyError::MissingSign));
        let mut empty = OFFICIAL.to_vec();
        empty.push(("sign", ""));
        assert_eq!(verify(empty.iter().copied(), &key, md5), Err(VerifyError::MissingSign));
        for bad in ["XYZ", "9A0A8659F005D6984697E2CA0A9CF3B", "ZZ0A8659F005D6984697E2CA0A9CF3B7"] {
            let mut msg = OFFICIAL.to_vec();
            msg.push(("sign", bad));
            assert_eq!(verify(msg.iter().copied(), &key, md5), Err(VerifyError::MalformedSign), "{bad}");
        }
        let mut wrong_type = OFFICIAL.to_vec();
        wrong_type.push(("sign_type", "SHA1"));
        wrong_type.push(("sign", "9A0A8659F005D6984697E2CA0A9CF3B7"));
        assert_eq!(verify(wrong_type.iter().copied(), &key, md5), Err(VerifyError::UnknownSignType("SHA1".into())));
        let mut forged = OFFICIAL.to_vec();
        forged.push(("sign", "0A0A8659F005D6984697E2CA0A9CF3B7"));
        assert_eq!(verify(forged.iter().copied(), &key, md5), Err(VerifyError::Mismatch));
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
