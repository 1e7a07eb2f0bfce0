//! Creating staff accounts, including the first admin at first start.

use crate::db::{Db, DbError, staff};
use crate::error::AppError;
use crate::wxpay::nonce::random_alphanumeric;

use super::{Role, password};

/// Usernames: 3–32 of letters, digits, `.`, `_`, `-`.
pub fn check_username(username: &str) -> Result<(), AppError> {
    let ok = (3..=32).contains(&username.len())
        && username.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(AppError::invalid("username", "用户名为 3–32 个字母、数字或 . _ -")) }
}

/// Creates an account; a taken username is a conflict.
pub fn create_blocking(
    db: &Db,
    username: &str,
    password_text: &str,
    role: Role,
    must_change: bool,
) -> Result<(), AppError> {
    check_username(username)?;
    if !must_change {
        password::check_policy(password_text, username)?;
    }
    let hash = password::hash(password_text)?;
    let result = db.write_blocking(|c| staff::insert(c, username, &hash, role, must_change));
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.is_unique_violation() => Err(AppError::Conflict(format!("用户名 {username} 已存在"))),
        Err(e) => Err(e.into()),
    }
}

/// At first start with no accounts: `ADMIN_USERNAME`/`ADMIN_PASSWORD` make the first admin;
/// otherwise an `admin` account with a one-time password, returned to be handed over once, that
/// must be changed at first sign-in.
pub fn bootstrap_first_admin(
    db: &Db,
    username: Option<&str>,
    password_text: Option<&str>,
) -> Result<Option<OneTimeAdmin>, AppError> {
    let existing = db.write_blocking(|c| -> Result<i64, DbError> { staff::count(c) })?;
    if existing > 0 {
        return Ok(None);
    }
    // Instances started together all see no accounts; the one whose insert loses the race to the
    // same username leaves the account the other made.
    let raced = |result: Result<(), AppError>, user: &str| match result {
        Err(AppError::Conflict(_)) => {
            tracing::info!(username = user, "first admin account created by another instance");
            Ok(false)
        }
        other => other.map(|()| true),
    };
    match (username, password_text) {
        (Some(u), Some(p)) => {
            if raced(create_blocking(db, u, p, Role::Admin, false), u)? {
                tracing::info!(username = u, "first admin account created from ADMIN_USERNAME");
            }
            Ok(None)
        }
        _ => {
            let user = username.unwrap_or("admin");
            let one_time = random_alphanumeric(16);
            if !raced(create_blocking(db, user, &one_time, Role::Admin, true), user)? {
                return Ok(None);
            }
            Ok(Some(OneTimeAdmin { username: user.to_owned(), password: one_time }))
        }
    }
}

/// A first admin created with a generated one-time password, which the caller must hand to the
/// operator once (and never log).
pub struct OneTimeAdmin {
    pub username: String,
    pub password: String,
}
