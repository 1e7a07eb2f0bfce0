//! An admin managing other staff accounts: creating them with a one-time password, changing roles,
//! disabling, enabling, unlocking and resetting passwords, with the guard rails that keep the
//! console administrable. Each function runs inside the caller's write transaction, so the checks
//! and the change (and the caller's audit entry) commit together.

use chrono::Utc;

use super::{Role, StaffUser, accounts};
use crate::db::{AnyConnection, DbError, staff};
use crate::wxpay::nonce::random_alphanumeric;

/// Length of generated one-time passwords: 16 alphanumerics are ~95 bits, well past guessing,
/// and still short enough to read out to a colleague.
pub const ONE_TIME_PASSWORD_LENGTH: usize = 16;

/// Why an account change was not made. `Refused` and `NotFound` are for the admin to read.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("用户不存在")]
    NotFound,
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A change an admin makes to an existing account.
#[derive(Clone, Debug)]
pub enum AccountChange {
    SetRole(Role),
    Disable,
    Enable,
    Unlock,
    /// A new one-time password (already hashed), to be changed at the next sign-in.
    ResetPassword {
        hash: String,
    },
}

impl AccountChange {
    /// The audit action name.
    pub fn action(&self) -> &'static str {
        match self {
            AccountChange::SetRole(_) => "user_role_changed",
            AccountChange::Disable => "user_disabled",
            AccountChange::Enable => "user_enabled",
            AccountChange::Unlock => "user_unlocked",
            AccountChange::ResetPassword { .. } => "user_password_reset",
        }
    }
}

pub fn one_time_password() -> String {
    random_alphanumeric(ONE_TIME_PASSWORD_LENGTH)
}

/// Creates an account that must change its (one-time) password at first sign-in.
pub fn create(conn: &mut AnyConnection, username: &str, password_hash: &str, role: Role) -> Result<(), ManageError> {
    accounts::check_username(username).map_err(|_| refused("用户名为 3–32 个字母、数字或 . _ -"))?;
    if staff::find_by_username(conn, username)?.is_some() {
        return Err(refused(format!("用户名 {username} 已存在")));
    }
    match staff::insert(conn, username, password_hash, role, true) {
        Ok(()) => Ok(()),
        // Someone created the same name between our look-up and the insert.
        Err(e) if e.is_unique_violation() => Err(refused(format!("用户名 {username} 已存在"))),
        Err(e) => Err(e.into()),
    }
}

/// Applies `change` by `actor_id` to `target_id`; returns the account as it was before.
///
/// Guard rails: nobody changes their own role, disables themselves or resets their own password
/// here (each would end the admin's own session or lock them out), and the last active admin can
/// be neither demoted nor disabled. The count is taken under [`staff::lock_admins`] in the same
/// transaction as the write, so two admins demoting each other at once cannot both succeed.
pub fn apply(
    conn: &mut AnyConnection,
    actor_id: i64,
    target_id: i64,
    change: &AccountChange,
) -> Result<StaffUser, ManageError> {
    staff::lock_admins(conn)?;
    let user = staff::find(conn, target_id)?.ok_or(ManageError::NotFound)?;
    let is_self = actor_id == target_id;
    match change {
        AccountChange::SetRole(role) => {
            if *role == user.role {
                return Err(refused(format!("{} 已经是{}", user.username, role.label())));
            }
            if is_self {
                return Err(refused("不能修改自己的角色"));
            }
            if *role < Role::Admin {
                ensure_another_admin(conn, &user)?;
            }
            staff::set_role_and_disabled(conn, user.id, *role, user.disabled)?;
        }
        AccountChange::Disable => {
            if user.disabled {
                return Err(refused(format!("{} 已停用", user.username)));
            }
            if is_self {
                return Err(refused("不能停用自己的账户"));
            }
            ensure_another_admin(conn, &user)?;
            staff::set_role_and_disabled(conn, user.id, user.role, true)?;
        }
        AccountChange::Enable => {
            if !user.disabled {
                return Err(refused(format!("{} 未停用", user.username)));
            }
            staff::set_role_and_disabled(conn, user.id, user.role, false)?;
        }
        AccountChange::Unlock => {
            if !user.is_locked(Utc::now()) && user.failed_logins == 0 {
                return Err(refused(format!("{} 未被锁定", user.username)));
            }
            staff::unlock(conn, user.id)?;
        }
        AccountChange::ResetPassword { hash } => {
            if is_self {
                return Err(refused("请在「修改密码」页面修改自己的密码"));
            }
            staff::set_password(conn, user.id, hash, true)?;
            // A reset is usually for someone who forgot the password and locked themselves out
            // trying; the new password must work at once.
            staff::unlock(conn, user.id)?;
        }
    }
    Ok(user)
}

/// Refuses when `user` is an active admin and no other active admin would remain.
fn ensure_another_admin(conn: &mut AnyConnection, user: &StaffUser) -> Result<(), ManageError> {
    if user.role == Role::Admin && !user.disabled && staff::count_active_admins_except(conn, user.id)? == 0 {
        return Err(refused("至少需要保留一个有效的管理员账户"));
    }
    Ok(())
}

fn refused(message: impl Into<String>) -> ManageError {
    ManageError::Refused(message.into())
}
