//! Signing in and out, sessions, and changing one's own password: per-IP rate limit, per-account
//! lockout, constant-time password check, and a record of every attempt.
//!
//! An attempt is recorded and counted as a failure before its password is checked, in one write
//! transaction, so parallel guesses cannot all pass the limits; a locked account's password is
//! never checked. Argon2 runs at most `password::MAX_CONCURRENT` at a time.

use chrono::{Duration, NaiveDateTime};

use super::{Accounts, password};
use crate::db::{self, AnyConnection, DbError, audit, staff};
use crate::domain::{Actor, AuditAction, StaffUser};
use crate::error::AppError;

/// Failed attempts from one IP within [`WINDOW`] before it must wait.
pub const MAX_FAILURES_PER_IP: i64 = 20;
/// Consecutive failed passwords before an account is locked for [`LOCKOUT`].
pub const MAX_FAILURES_PER_ACCOUNT: i32 = 5;
pub const WINDOW: Duration = Duration::minutes(15);
pub const LOCKOUT: Duration = Duration::minutes(15);
/// Usernames are at most 32 characters; what is kept of a longer one in the attempt log and the
/// audit log, so that failed sign-ins cannot fill the database.
pub const MAX_STORED_USERNAME_CHARS: usize = 64;

#[derive(Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    Success(StaffUser),
    /// Unknown user, wrong password, locked or disabled account: one answer for all, so that it
    /// does not tell which usernames exist. The audit log keeps the reason.
    Refused,
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

/// Why a sign-in was refused, for the audit log only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    UnknownUser,
    Disabled,
    Locked,
    WrongPassword,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::UnknownUser => "unknown_user",
            Reason::Disabled => "disabled",
            Reason::Locked => "locked",
            Reason::WrongPassword => "wrong_password",
        }
    }
}

/// What the first transaction of a sign-in decided.
enum Gate {
    RateLimited,
    /// Refused and audited already.
    Refused(Reason),
    /// Counted as a failure; its password may now be checked.
    Admitted {
        user: StaffUser,
        attempt: i64,
        own_lock: Option<NaiveDateTime>,
    },
}

impl Accounts {
    /// Checks a sign-in and records the attempt (and its audit entry) whatever the outcome.
    pub async fn sign_in(&self, username: &str, password_text: &str, ip: &str) -> Result<LoginOutcome, AppError> {
        let actor = Actor {
            username: username.chars().take(MAX_STORED_USERNAME_CHARS).collect(),
            remote_addr: Some(ip.into()),
        };
        // A name longer than any username cannot be one: no look-up with it.
        let lookup = (username.chars().count() <= MAX_STORED_USERNAME_CHARS).then(|| username.to_owned());
        let gate_actor = actor.clone();
        let gate = self.db.write(move |c| admit(c, lookup.as_deref(), &gate_actor)).await?;
        let (user, attempt, own_lock) = match gate {
            Gate::RateLimited => return Ok(LoginOutcome::RateLimited),
            // Unknown and disabled take as long as a wrong password; a locked account's password
            // is not checked at all (that is what bounds the work a locked account costs).
            Gate::Refused(Reason::Locked) => return Ok(LoginOutcome::Refused),
            Gate::Refused(_) => {
                password::verify_dummy_off_thread(password_text.to_owned()).await;
                return Ok(LoginOutcome::Refused);
            }
            Gate::Admitted { user, attempt, own_lock } => (user, attempt, own_lock),
        };
        let matches = password::verify_off_thread(password_text.to_owned(), user.password_hash.clone()).await;
        self.db
            .write(move |c| -> Result<_, DbError> {
                if matches && staff::record_success_unless_locked(c, user.id, db::now(), own_lock)? {
                    staff::mark_attempt_succeeded(c, attempt)?;
                    audit::record(c, &actor, AuditAction::Login, None, None, serde_json::json!({}))?;
                    return Ok(staff::find(c, user.id)?.map_or(LoginOutcome::Refused, LoginOutcome::Success));
                }
                // A right password loses to a lock that another attempt set meanwhile.
                let reason = if matches { Reason::Locked } else { Reason::WrongPassword };
                audit_refusal(c, &actor, reason)?;
                Ok(LoginOutcome::Refused)
            })
            .await
            .map_err(AppError::from)
    }

    /// Records a sign-out and ends every session of the account on the server, so that a copy of
    /// the cookie taken before stops working too.
    pub async fn sign_out(&self, id: i64, actor: &Actor) -> Result<(), AppError> {
        let actor = actor.clone();
        self.db
            .write(move |c| -> Result<(), DbError> {
                staff::end_sessions(c, id)?;
                audit::record(c, &actor, AuditAction::Logout, None, None, serde_json::json!({}))
            })
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

/// The first transaction of a sign-in, before any password is checked: the IP's limit (counted
/// and extended in one step), the attempt recorded as a failure, and the account's lock counted.
fn admit(c: &mut AnyConnection, lookup: Option<&str>, actor: &Actor) -> Result<Gate, DbError> {
    let ip = actor.remote_addr.as_deref().unwrap_or_default();
    let now = db::now();
    staff::lock_attempts_from_ip(c, ip)?;
    if staff::failures_from_ip(c, ip, now - WINDOW)? >= MAX_FAILURES_PER_IP {
        return Ok(Gate::RateLimited);
    }
    let attempt = staff::record_attempt(c, &actor.username, ip, false)?;
    let user = match lookup {
        Some(name) => staff::find_by_username(c, name)?,
        None => None,
    };
    let reason = match &user {
        None => Reason::UnknownUser,
        Some(u) if u.disabled => Reason::Disabled,
        Some(u) => match staff::count_failure_up_front(c, u.id, now, MAX_FAILURES_PER_ACCOUNT, now + LOCKOUT)? {
            staff::Counted::Closed => Reason::Locked,
            staff::Counted::Open => return Ok(Gate::Admitted { user: u.clone(), attempt, own_lock: None }),
            staff::Counted::Locked(until) => {
                return Ok(Gate::Admitted { user: u.clone(), attempt, own_lock: Some(until) });
            }
        },
    };
    audit_refusal(c, actor, reason)?;
    Ok(Gate::Refused(reason))
}

fn audit_refusal(c: &mut AnyConnection, actor: &Actor, reason: Reason) -> Result<(), DbError> {
    audit::record(c, actor, AuditAction::LoginFailed, None, None, serde_json::json!({ "reason": reason.as_str() }))
}
