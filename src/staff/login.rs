//! Signing in and out, sessions, and changing one's own password: per-IP rate limit, per-account
//! lockout, constant-time password check, and a record of every attempt.

use chrono::{Duration, Utc};

use super::{Accounts, password};
use crate::db::{DbError, audit, staff};
use crate::domain::{Actor, AuditAction, StaffUser};
use crate::error::AppError;

/// Failed attempts from one IP within [`WINDOW`] before it must wait.
pub const MAX_FAILURES_PER_IP: i64 = 20;
/// Consecutive failed passwords before an account is locked for [`LOCKOUT`].
pub const MAX_FAILURES_PER_ACCOUNT: i32 = 5;
pub const WINDOW: Duration = Duration::minutes(15);
pub const LOCKOUT: Duration = Duration::minutes(15);

#[derive(Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    Success(StaffUser),
    /// Wrong username or password (never says which).
    Refused,
    /// The account is locked after too many failures; an admin can unlock it.
    Locked,
    /// Too many failures from this IP; try again later.
    RateLimited,
}

/// Why one's own new password was not set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordRefusal {
    WrongCurrent,
    ConfirmationDiffers,
    SameAsCurrent,
}

impl Accounts {
    /// Checks a sign-in and records the attempt (and its audit entry) whatever the outcome.
    pub async fn sign_in(&self, username: &str, password_text: &str, ip: &str) -> Result<LoginOutcome, AppError> {
        let (name, addr) = (username.to_owned(), ip.to_owned());
        let since = (Utc::now() - WINDOW).naive_utc();
        let (ip_failures, user) = self
            .db
            .read(move |c| -> Result<_, DbError> {
                Ok((staff::failures_from_ip(c, &addr, since)?, staff::find_by_username(c, &name)?))
            })
            .await?;
        if ip_failures >= MAX_FAILURES_PER_IP {
            return Ok(LoginOutcome::RateLimited);
        }
        let stored = user.as_ref().map_or_else(|| password::dummy_hash().to_owned(), |u| u.password_hash.clone());
        let matches = password::verify_off_thread(password_text.to_owned(), stored).await;

        let now = Utc::now();
        let outcome = match &user {
            Some(u) if u.disabled => LoginOutcome::Refused,
            Some(u) if u.is_locked(now) => LoginOutcome::Locked,
            Some(u) if matches => LoginOutcome::Success(u.clone()),
            _ => LoginOutcome::Refused,
        };
        let actor = Actor { username: username.to_owned(), remote_addr: Some(ip.to_owned()) };
        let succeeded = matches!(outcome, LoginOutcome::Success(_));
        let user_id = user.as_ref().map(|u| u.id);
        let failed_password = user.is_some() && !matches;
        self.db
            .write(move |c| -> Result<(), DbError> {
                staff::record_attempt(c, &actor.username, ip_of(&actor), succeeded)?;
                if let Some(id) = user_id {
                    if succeeded {
                        staff::record_success(c, id)?;
                    } else if failed_password {
                        staff::record_failure(c, id, MAX_FAILURES_PER_ACCOUNT, (now + LOCKOUT).naive_utc())?;
                    }
                }
                let action = if succeeded { AuditAction::Login } else { AuditAction::LoginFailed };
                audit::record(c, &actor, action, None, None, serde_json::json!({}))
            })
            .await?;
        // A lock that this very failure triggered applies from the next attempt on.
        Ok(outcome)
    }

    /// Records a sign-out.
    pub async fn sign_out(&self, actor: &Actor) -> Result<(), AppError> {
        let actor = actor.clone();
        self.db
            .write(move |c| audit::record(c, &actor, AuditAction::Logout, None, None, serde_json::json!({})))
            .await?;
        Ok(())
    }

    /// The account behind a session, if it still exists.
    pub async fn session_user(&self, id: i64) -> Result<Option<StaffUser>, DbError> {
        self.db.read(move |c| staff::find(c, id)).await
    }

    /// Whether the account signed in with a one-time password it must change first.
    pub async fn must_change_password(&self, id: i64) -> Result<bool, AppError> {
        Ok(self.session_user(id).await?.is_some_and(|u| u.must_change_password))
    }

    /// Changes one's own password: checks the current one, the confirmation and the policy, then
    /// sets it (ending every session) with its audit entry. Returns the account as it now is.
    pub async fn change_own_password(
        &self,
        id: i64,
        actor: &Actor,
        current: &str,
        new: &str,
        confirm: &str,
    ) -> Result<Result<StaffUser, PasswordRefusal>, AppError> {
        let user = self.session_user(id).await?.ok_or(AppError::Unauthorized)?;
        if !password::verify_off_thread(current.to_owned(), user.password_hash.clone()).await {
            return Ok(Err(PasswordRefusal::WrongCurrent));
        }
        if new != confirm {
            return Ok(Err(PasswordRefusal::ConfirmationDiffers));
        }
        if new == current {
            return Ok(Err(PasswordRefusal::SameAsCurrent));
        }
        password::check_policy(new, &actor.username)?;
        let hash = password::hash_off_thread(new.to_owned()).await?;
        let actor = actor.clone();
        let user = self
            .db
            .write(move |c| -> Result<_, DbError> {
                staff::set_password(c, id, &hash, false)?;
                let detail = serde_json::json!({});
                audit::record(c, &actor, AuditAction::PasswordChanged, None, Some(&actor.username), detail)?;
                staff::find(c, id)
            })
            .await?
            .ok_or(AppError::Unauthorized)?;
        Ok(Ok(user))
    }
}

fn ip_of(actor: &Actor) -> &str {
    actor.remote_addr.as_deref().unwrap_or_default()
}
