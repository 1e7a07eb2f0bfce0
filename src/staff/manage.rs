//! An admin managing other staff accounts: creating them with a one-time password, changing roles,
//! disabling, enabling, unlocking and resetting passwords, with the guard rails that keep the
//! console administrable. Each function runs inside the caller's write transaction, so the checks
//! and the change (and the caller's audit entry) commit together.

use chrono::Utc;

use super::{Accounts, accounts, password};
use crate::db::{AnyConnection, DbError, audit, staff};
use crate::domain::{Actor, AuditAction, Role, StaffUser};
use crate::wxpay::nonce::random_alphanumeric;

/// Length of generated one-time passwords: 16 alphanumerics are ~95 bits, well past guessing,
/// and still short enough to read out to a colleague.
pub const ONE_TIME_PASSWORD_LENGTH: usize = 16;

/// Why an account change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("no such user")]
    NotFound,
    #[error("refused: {0:?}")]
    Refused(Refusal),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Internal(String),
}

/// A change the guard rails refuse; the console tells the admin why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    UsernameInvalid,
    UsernameTaken(String),
    AlreadyHasRole {
        username: String,
        role: Role,
    },
    OwnRole,
    AlreadyDisabled(String),
    OwnAccountDisabled,
    NotDisabled(String),
    NotLocked(String),
    /// An admin resets their own password on the password page, not here.
    OwnPasswordReset,
    /// The last active admin can be neither demoted nor disabled.
    LastAdmin,
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
    /// The audit action.
    pub fn action(&self) -> AuditAction {
        match self {
            AccountChange::SetRole(_) => AuditAction::UserRoleChanged,
            AccountChange::Disable => AuditAction::UserDisabled,
            AccountChange::Enable => AuditAction::UserEnabled,
            AccountChange::Unlock => AuditAction::UserUnlocked,
            AccountChange::ResetPassword { .. } => AuditAction::UserPasswordReset,
        }
    }
}

pub fn one_time_password() -> String {
    random_alphanumeric(ONE_TIME_PASSWORD_LENGTH)
}

/// Creates an account that must change its (one-time) password at first sign-in.
pub fn create(conn: &mut AnyConnection, username: &str, password_hash: &str, role: Role) -> Result<(), ManageError> {
    accounts::check_username(username).map_err(|_| refused(Refusal::UsernameInvalid))?;
    if staff::find_by_username(conn, username)?.is_some() {
        return Err(refused(Refusal::UsernameTaken(username.to_owned())));
    }
    match staff::insert(conn, username, password_hash, role, true) {
        Ok(()) => Ok(()),
        // Someone created the same name between our look-up and the insert.
        Err(e) if e.is_unique_violation() => Err(refused(Refusal::UsernameTaken(username.to_owned()))),
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
                return Err(refused(Refusal::AlreadyHasRole { username: user.username, role: *role }));
            }
            if is_self {
                return Err(refused(Refusal::OwnRole));
            }
            if *role < Role::Admin {
                ensure_another_admin(conn, &user)?;
            }
            staff::set_role_and_disabled(conn, user.id, *role, user.disabled)?;
        }
        AccountChange::Disable => {
            if user.disabled {
                return Err(refused(Refusal::AlreadyDisabled(user.username)));
            }
            if is_self {
                return Err(refused(Refusal::OwnAccountDisabled));
            }
            ensure_another_admin(conn, &user)?;
            staff::set_role_and_disabled(conn, user.id, user.role, true)?;
        }
        AccountChange::Enable => {
            if !user.disabled {
                return Err(refused(Refusal::NotDisabled(user.username)));
            }
            staff::set_role_and_disabled(conn, user.id, user.role, false)?;
        }
        AccountChange::Unlock => {
            if !user.is_locked(Utc::now()) && user.failed_logins == 0 {
                return Err(refused(Refusal::NotLocked(user.username)));
            }
            staff::unlock(conn, user.id)?;
        }
        AccountChange::ResetPassword { hash } => {
            if is_self {
                return Err(refused(Refusal::OwnPasswordReset));
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
        return Err(refused(Refusal::LastAdmin));
    }
    Ok(())
}

fn refused(why: Refusal) -> ManageError {
    ManageError::Refused(why)
}

impl Accounts {
    /// Every account, by username.
    pub async fn list_users(&self) -> Result<Vec<StaffUser>, DbError> {
        self.db.read(staff::list).await
    }

    /// Creates an account with a one-time password (returned, to be shown once) that must be
    /// changed at first sign-in; audited in the same transaction.
    pub async fn create_user(&self, actor: &Actor, username: &str, role: Role) -> Result<String, ManageError> {
        accounts::check_username(username).map_err(|_| refused(Refusal::UsernameInvalid))?;
        let one_time = one_time_password();
        // Argon2 is deliberately slow: hash before taking the write transaction.
        let hash =
            password::hash_off_thread(one_time.clone()).await.map_err(|e| ManageError::Internal(e.to_string()))?;
        let (actor, name) = (actor.clone(), username.to_owned());
        self.db
            .write(move |c| -> Result<(), ManageError> {
                create(c, &name, &hash, role)?;
                let detail = serde_json::json!({ "role": role.as_str() });
                audit::record(c, &actor, AuditAction::UserCreated, None, Some(&name), detail)?;
                Ok(())
            })
            .await?;
        Ok(one_time)
    }

    /// Applies a change by `actor` (account `actor_id`) to account `id` with its audit entry in
    /// one transaction; returns the account as it was.
    pub async fn change_user(
        &self,
        actor_id: i64,
        actor: &Actor,
        id: i64,
        change: AccountChange,
    ) -> Result<StaffUser, ManageError> {
        let actor = actor.clone();
        self.db
            .write(move |c| -> Result<StaffUser, ManageError> {
                let before = apply(c, actor_id, id, &change)?;
                // Only the role names: never a password or its hash.
                let detail = match &change {
                    AccountChange::SetRole(role) => {
                        serde_json::json!({ "from": before.role.as_str(), "to": role.as_str() })
                    }
                    _ => serde_json::json!({}),
                };
                audit::record(c, &actor, change.action(), None, Some(&before.username), detail)?;
                Ok(before)
            })
            .await
    }

    /// Resets account `id` to a new one-time password (returned, to be shown once).
    pub async fn reset_password(
        &self,
        actor_id: i64,
        actor: &Actor,
        id: i64,
    ) -> Result<(StaffUser, String), ManageError> {
        let one_time = one_time_password();
        let hash =
            password::hash_off_thread(one_time.clone()).await.map_err(|e| ManageError::Internal(e.to_string()))?;
        let before = self.change_user(actor_id, actor, id, AccountChange::ResetPassword { hash }).await?;
        Ok((before, one_time))
    }
}
