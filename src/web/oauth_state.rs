//! The OAuth `state`: `<out_trade_no><nonce><expiry><mac>`, all ASCII alphanumerics as WeChat
//! requires, signed with a key derived from the merchant API key, time-limited, and made
//! single-use by `db::oauth_states`. The nonce is also kept in the browser's cookie, so a state
//! only completes sign-in in the browser that started it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::wxpay::ApiKey;
use crate::wxpay::nonce::random_alphanumeric;

const NONCE_LEN: usize = 16;
const EXPIRY_LEN: usize = 10;
const MAC_LEN: usize = 32;
/// WeChat's codes live about 5 minutes; the state need not outlive them by much.
pub const LIFETIME_SECONDS: i64 = 600;

#[derive(Clone)]
pub struct StateSigner {
    key: [u8; 32],
}

#[derive(Debug, PartialEq, Eq)]
pub struct VerifiedState {
    pub out_trade_no: String,
    pub nonce: String,
}

impl StateSigner {
    pub fn new(api_key: &ApiKey) -> StateSigner {
        let mut mac = Hmac::<Sha256>::new_from_slice(api_key.expose().as_bytes()).expect("any key length");
        mac.update(b"wechat-checkout oauth state v1");
        StateSigner { key: mac.finalize().into_bytes().into() }
    }

    /// A new state for this order; returns `(state, nonce)`.
    pub fn issue(&self, out_trade_no: &str, now_unix: i64) -> (String, String) {
        let nonce = random_alphanumeric(NONCE_LEN);
        let expiry = format!("{:010}", now_unix + LIFETIME_SECONDS);
        let mac = self.mac(out_trade_no, &nonce, &expiry);
        (format!("{out_trade_no}{nonce}{expiry}{mac}"), nonce)
    }

    /// Checks signature and expiry. Single use is the caller's job (it needs the database).
    pub fn verify(&self, state: &str, now_unix: i64) -> Option<VerifiedState> {
        if !state.is_ascii() || state.len() <= NONCE_LEN + EXPIRY_LEN + MAC_LEN || state.len() > 128 {
            return None;
        }
        let (rest, mac) = state.split_at(state.len() - MAC_LEN);
        let (rest, expiry) = rest.split_at(rest.len() - EXPIRY_LEN);
        let (out_trade_no, nonce) = rest.split_at(rest.len() - NONCE_LEN);
        let expected = self.mac(out_trade_no, nonce, expiry);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let expiry: i64 = expiry.parse().ok()?;
        (now_unix <= expiry).then(|| VerifiedState { out_trade_no: out_trade_no.to_owned(), nonce: nonce.to_owned() })
    }

    fn mac(&self, out_trade_no: &str, nonce: &str, expiry: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        for part in [out_trade_no, nonce, expiry] {
            mac.update(part.as_bytes());
            mac.update(b"|");
        }
        mac.finalize().into_bytes().iter().take(MAC_LEN / 2).map(|b| format!("{b:02X}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> StateSigner {
        StateSigner::new(&ApiKey::new("192006250b4c09247ec02edce69f6a2d").unwrap())
    }

    #[test]
    fn issued_states_verify_until_they_expire() {
        let (state, nonce) = signer().issue("WC20261127093000123456789012", 1_000);
        assert!(state.len() <= 128 && state.bytes().all(|b| b.is_ascii_alphanumeric()));
        let v = signer().verify(&state, 1_000 + LIFETIME_SECONDS).unwrap();
        assert_eq!(v, VerifiedState { out_trade_no: "WC20261127093000123456789012".into(), nonce });
        assert_eq!(signer().verify(&state, 1_001 + LIFETIME_SECONDS), None);
    }

    #[test]
    fn tampered_or_foreign_states_fail() {
        let (state, _) = signer().issue("WC1", 1_000);
        let mut tampered = state.clone().into_bytes();
        tampered[0] = b'X';
        assert_eq!(signer().verify(std::str::from_utf8(&tampered).unwrap(), 1_000), None);
        let other = StateSigner::new(&ApiKey::new("00000000000000000000000000000000").unwrap());
        assert_eq!(other.verify(&state, 1_000), None);
        assert_eq!(signer().verify("short", 1_000), None);
        assert_eq!(signer().verify("中文状态参数中文状态参数中文状态参数中文状态参数中文状态参数", 1_000), None);
    }
}
