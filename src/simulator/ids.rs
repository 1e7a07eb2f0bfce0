//! The identifiers the simulator hands out, shaped like WeChat's: prepay_id, transaction_id,
//! refund_id, OAuth codes and tokens, shopper ids, and openids derived from (appid, shopper).
//!
//! Ids come from the OS-seeded thread RNG, never from the seeded fault dice, so a seeded run
//! that reloads a state file cannot hand out an id twice.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngExt;
use sha2::{Digest, Sha256};

use crate::wxpay::nonce::random_alphanumeric;
use crate::wxpay::time;

/// `n` random lower-case hex digits.
pub fn random_hex(n: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rng = rand::rng();
    (0..n).map(|_| HEX[rng.random_range(0..16usize)] as char).collect()
}

/// `n` random decimal digits.
pub fn random_digits(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()
}

/// `wx` + yyyyMMddHHmmss (Beijing) + 20 hex digits: 36 characters, like
/// `wx201410272009395522657a690389285100`.
pub fn prepay_id(now: DateTime<Utc>) -> String {
    format!("wx{}{}", time::format_compact(now), random_hex(20))
}

/// 28 digits starting with `42000`, with the Beijing payment date inside, like
/// `4200000925202101284997714292`.
pub fn transaction_id(now: DateTime<Utc>) -> String {
    let date = time::format_bill_date(time::beijing_date(now));
    format!("42000{}{}{}", random_digits(5), date, random_digits(10))
}

/// 29 digits starting with `50`, like `50000000382019052709732678859`.
pub fn refund_id(now: DateTime<Utc>) -> String {
    let date = time::format_bill_date(time::beijing_date(now));
    format!("50{}{}{}", random_digits(8), date, random_digits(11))
}

/// `weixin://wxpay/bizpayurl?pr=` + 7 alphanumerics.
pub fn code_url() -> String {
    format!("weixin://wxpay/bizpayurl?pr={}", random_alphanumeric(7))
}

pub fn mweb_url(prepay_id: &str) -> String {
    format!("https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={prepay_id}&package={}", random_digits(10))
}

/// An OAuth code: 32 alphanumerics.
pub fn oauth_code() -> String {
    random_alphanumeric(32)
}

/// A Mini Program session key: 16 random bytes in standard base64 (24 characters), like
/// `tiihtNczf5v6AKRyjwEUhQ==`.
pub fn session_key() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A user access token or refresh token (opaque to the merchant).
pub fn token() -> String {
    random_alphanumeric(86)
}

/// The id of a simulated shopper, kept in the `wxsim_user` cookie.
pub fn shopper_id() -> String {
    random_hex(24)
}

/// Whether a cookie value can be a shopper id we issued (or a tester chose).
pub fn is_valid_shopper_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The openid of a shopper under an appid: `o` + 27 URL-safe base64 characters (28 in all),
/// stable for the pair and different for every appid, as WeChat's are.
pub fn openid(appid: &str, shopper: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"wxsim-openid\0");
    hasher.update(appid.as_bytes());
    hasher.update([0]);
    hasher.update(shopper.as_bytes());
    let digest = hasher.finalize();
    let encoded = URL_SAFE_NO_PAD.encode(digest);
    format!("o{}", &encoded[..27])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 16, 30, 5).unwrap()
    }

    #[test]
    fn ids_have_wechat_shapes() {
        let p = prepay_id(t());
        assert!(p.starts_with("wx20240502003005"), "{p}");
        assert_eq!(p.len(), 36);
        let tx = transaction_id(t());
        assert_eq!(tx.len(), 28);
        assert!(tx.starts_with("42000") && tx.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(&tx[10..18], "20240502");
        let r = refund_id(t());
        assert_eq!(r.len(), 29);
        assert!(r.starts_with("50") && r.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(prepay_id(t()), p);
        assert!(code_url().starts_with("weixin://wxpay/bizpayurl?pr="));
    }

    #[test]
    fn openids_are_stable_per_appid_and_shopper() {
        let a = openid("wxd930ea5d5a258f4f", "u1");
        assert_eq!(a.len(), 28);
        assert!(a.starts_with('o'));
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(a, openid("wxd930ea5d5a258f4f", "u1"));
        assert_ne!(a, openid("wxd930ea5d5a258f4f", "u2"));
        assert_ne!(a, openid("wx0000000000000001", "u1"));
    }

    #[test]
    fn shopper_ids() {
        assert!(is_valid_shopper_id(&shopper_id()));
        assert!(!is_valid_shopper_id(""));
        assert!(!is_valid_shopper_id("a;b"));
    }
}
