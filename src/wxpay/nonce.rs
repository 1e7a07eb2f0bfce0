//! Random strings for `nonce_str` / `nonceStr`: 32 alphanumerics from the OS-seeded thread RNG.

use rand::RngExt;
use rand::distr::Alphanumeric;

/// A fresh 32-character alphanumeric nonce (the maximum WeChat allows).
pub fn nonce_str() -> String {
    random_alphanumeric(32)
}

/// `len` random ASCII letters and digits.
pub fn random_alphanumeric(len: usize) -> String {
    rand::rng().sample_iter(Alphanumeric).take(len).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn nonces_are_32_alphanumerics_and_differ() {
        let a = super::nonce_str();
        let b = super::nonce_str();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
