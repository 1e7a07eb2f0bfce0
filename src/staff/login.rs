//! Signing in: per-IP rate limit, per-account lockout, constant-time password check, and a
//! record of every attempt.

use chrono::{Duration, Utc};

use super::password;
use crate::db::{Db, DbError, audit, staff};
use crate::error::AppError;

/// Failed attempts from one IP within [`WINDOW`] before it must wait.
pub const MAX_FAILURES_PER_IP: i64 = 20;
/// Consecutive failed passwords before an account is locked for [`LOCKOUT`].
pub const MAX_FAILURES_PER_ACCOUNT: i32 = 5;
pub const WINDOW: Duration = Duration::minutes(15);
pub const LOCKOUT: Duration = Duration::minutes(15);

#[derive(Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    Success(staff::StaffUser),
    /// Wrong username or password (never says which).
    Refused,
    /// The account is locked after too many failures; an admin can unlock it.
    Locked,
    /// Too many failures from this IP; try again later.
    RateLimited,
}

pub async fn sign_in(db: &Db, username: &str, password_text: &str, ip: &str) -> Result<LoginOutcome, AppError> {
    let (name, addr) = (username.to_owned(), ip.to_owned());
    let since = (Utc::now() - WINDOW).naive_utc();
    let (ip_failures, user) = db
        .read(move |c| -> Result<_, DbError> {
            Ok((staff::failures_from_ip(c, &addr, since)?, staff::find_by_username(c, &name)?))
        })
        .await?;
    if ip_failures >= MAX_FAILURES_PER_IP {
        return Ok(LoginOutcome::RateLimited);
    }
    let stored = user.as_ref().map_or_else(|| password::dummy_hash().to_owned(), |u| u.password_hash.clone());
    let candidate = password_text.to_owned();
    let matches = crate::db::run_blocking(move || password::verify(&candidate, &stored)).await;

    let now = Utc::now();
    let outcome = match &user {
        Some(u) if u.disabled => LoginOutcome::Refused,
        Some(u) if u.is_locked(now) => LoginOutcome::Locked,
        Some(u) if matches => LoginOutcome::Success(u.clone()),
        _ => LoginOutcome::Refused,
    };
    let (name, addr) = (username.to_owned(), ip.to_owned());
    let succeeded = matches!(outcome, LoginOutcome::Success(_));
    let user_id = user.as_ref().map(|u| u.id);
    let failed_password = user.is_some() && !matches;
    db.write(move |c| -> Result<(), DbError> {
        staff::record_attempt(c, &name, &addr, succeeded)?;
        if let Some(id) = user_id {
            if succeeded {
                staff::record_success(c, id)?;
            } else if failed_password {
                staff::record_failure(c, id, MAX_FAILURES_PER_ACCOUNT, (now + LOCKOUT).naive_utc())?;
            }
        }
        let action = if succeeded { "login" } else { "login_failed" };
        audit::record(c, &audit::NewAudit::by(&name, Some(&addr), action, None, None, serde_json::json!({})))
    })
    .await?;
    // A lock that this very failure triggered applies from the next attempt on.
    Ok(outcome)
}
