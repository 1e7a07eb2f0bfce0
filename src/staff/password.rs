//! Argon2id password hashes (PHC strings), computed on the blocking pool because they are
//! deliberately slow, and at most [`MAX_CONCURRENT`] at a time because each takes 19 MiB.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

use crate::error::AppError;

/// Passwords shorter than this are refused.
pub const MIN_LENGTH: usize = 10;

pub fn hash(password: &str) -> Result<String, AppError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("password hashing failed: {e}")))
}

/// The most Argon2 computations that run at once, whatever the number of cores: 1,000 parallel
/// sign-ins then cost 4 × 19 MiB and a queue, not 1,000 × 19 MiB.
pub const MAX_CONCURRENT: usize = 4;

/// Two per core (a verification is CPU-bound; more would only share the cores), at most
/// [`MAX_CONCURRENT`]. Waiters queue in arrival order.
static PERMITS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Arc::new(Semaphore::new((2 * cores).clamp(1, MAX_CONCURRENT)))
});
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static VERIFICATIONS: AtomicU64 = AtomicU64::new(0);

/// The most Argon2 computations of this process that ran at the same moment (a gauge for tests
/// and operators: it never exceeds [`MAX_CONCURRENT`]).
pub fn argon2_in_flight_peak() -> usize {
    PEAK.load(Ordering::SeqCst)
}

/// How many password verifications this process has run (the dummy ones included).
pub fn verifications_run() -> u64 {
    VERIFICATIONS.load(Ordering::SeqCst)
}

/// One Argon2 computation under way, counted while it lives.
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs one Argon2 computation on the blocking pool once a permit is free. The permit moves into
/// the blocking task, so a caller that stops waiting does not free it while the hash still runs.
async fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let permit = PERMITS.clone().acquire_owned().await.expect("the Argon2 semaphore is never closed");
    crate::db::run_blocking(move || {
        let counted = InFlight::enter();
        let value = f();
        // Leave the count before the permit, so the next computation never overlaps this one.
        drop(counted);
        drop(permit);
        value
    })
    .await
}

/// [`hash`] on the blocking pool, off the async workers, within the concurrency bound.
pub async fn hash_off_thread(password: String) -> Result<String, AppError> {
    bounded(move || hash(&password)).await
}

/// [`verify`] on the blocking pool, off the async workers, within the concurrency bound.
pub async fn verify_off_thread(password: String, stored: String) -> bool {
    VERIFICATIONS.fetch_add(1, Ordering::SeqCst);
    bounded(move || verify(&password, &stored)).await
}

/// Verifies against [`dummy_hash`] and forgets the answer: a refusal that needs no password check
/// still takes as long as one that did.
pub async fn verify_dummy_off_thread(password: String) {
    VERIFICATIONS.fetch_add(1, Ordering::SeqCst);
    bounded(move || verify(&password, dummy_hash())).await;
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
