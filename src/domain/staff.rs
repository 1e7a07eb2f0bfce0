//! Staff accounts: roles, what each role may do, and an account's lockout rule.

use crate::domain::vocab::string_enum;
use chrono::{DateTime, Utc};

string_enum! {
    /// What a staff member may do. Each role includes the ones before it.
    #[derive(PartialOrd, Ord, serde::Serialize)]
    pub enum Role {
        /// Reads everything except users, tokens and the audit log.
        Viewer = "viewer",
        /// Also re-queries, closes orders, re-processes notifies, resolves exceptions.
        Operator = "operator",
        /// Also refunds, manages users and API tokens, reads the audit log.
        Admin = "admin",
    }
}

impl Role {
    /// Whether this role may do `what`.
    pub fn may(self, what: Permission) -> bool {
        self >= what.needs()
    }
}

/// Something a staff member can do in the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Orders, notifies, exceptions, reconciliations, webhooks, the dashboard, CSV exports.
    Read,
    /// Re-query, close, re-process a notify, resolve an exception, run a reconciliation,
    /// re-send a webhook.
    Operate,
    /// Refund, and retry a refund.
    Refund,
    /// Users, API tokens and the audit log.
    Administer,
}

impl Permission {
    /// The least role that has it.
    pub fn needs(self) -> Role {
        match self {
            Permission::Read => Role::Viewer,
            Permission::Operate => Role::Operator,
            Permission::Refund | Permission::Administer => Role::Admin,
        }
    }
}

/// A staff account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaffUser {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub session_version: i64,
    pub must_change_password: bool,
    pub disabled: bool,
    pub failed_logins: i32,
    pub locked_until: Option<DateTime<Utc>>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StaffUser {
    pub fn is_locked(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_includes_the_ones_before_it() {
        let may = |r: Role| {
            [Permission::Read, Permission::Operate, Permission::Refund, Permission::Administer].map(|p| r.may(p))
        };
        assert_eq!(may(Role::Viewer), [true, false, false, false]);
        assert_eq!(may(Role::Operator), [true, true, false, false]);
        assert_eq!(may(Role::Admin), [true, true, true, true]);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }
}
