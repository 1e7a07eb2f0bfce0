//! Argon2id password hashes (PHC strings), computed on the blocking pool because they are
//! deliberately slow.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::AppError;

/// Passwords shorter than this are refused.
pub const MIN_LENGTH: usize = 10;

pub fn hash(password: &str) -> Result<String, AppError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("password hashing failed: {e}")))
}

/// [`hash`] on the blocking pool, off the async workers.
pub async fn hash_off_thread(password: String) -> Result<String, AppError> {
    crate::db::run_blocking(move || hash(&password)).await
}

/// [`verify`] on the blocking pool, off the async workers.
pub async fn verify_off_thread(password: String, stored: String) -> bool {
    crate::db::run_blocking(move || verify(&password, &stored)).await
}

/// Constant-time verification (inside argon2). A malformed stored hash verifies as false.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash of nothing in particular, verified against when a username does not exist, so that
/// "no such user" and "wrong password" take the same time.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("dummy password for timing").expect("hashing a constant works"))
}

/// Checks a new password against the policy; the message is shown to the user.
pub fn check_policy(password: &str, username: &str) -> Result<(), AppError> {
    if password.chars().count() < MIN_LENGTH {
        return Err(AppError::invalid("password", format!("密码至少 {MIN_LENGTH} 个字符")));
    }
    if password.len() > 256 {
        return Err(AppError::invalid("password", "密码过长"));
    }
    if password.eq_ignore_ascii_case(username) {
        return Err(AppError::invalid("password", "密码不能与用户名相同"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_argon2id() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("wrong horse battery", &h));
        assert!(!verify("anything", "not a hash"));
    }

    #[test]
    fn policy() {
        assert!(check_policy("short", "u").is_err());
        assert!(check_policy("administrator", "Administrator").is_err());
        assert!(check_policy("a long enough passphrase", "u").is_ok());
    }
}
