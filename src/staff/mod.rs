//! Staff and API access as use cases: password hashing, signing in with rate limits and lockout,
//! sessions, creating accounts (the first admin included), admins managing other accounts,
//! merchant API tokens, and reading the audit log. [`Accounts`] is what the web layer calls.

pub mod accounts;
pub mod audit_log;
pub mod login;
pub mod manage;
pub mod password;
pub mod tokens;

use std::sync::Arc;

use crate::config::AppConfig;
use crate::db::Db;

pub use crate::domain::{Role, StaffUser};

/// The staff use cases, shared by all requests; cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    db: Db,
    config: Arc<AppConfig>,
}

impl Accounts {
    pub fn new(db: Db, config: Arc<AppConfig>) -> Accounts {
        Accounts { db, config }
    }

    /// Whether cookies must be `Secure`: the public origin is https.
    pub fn secure_cookies(&self) -> bool {
        self.config.is_https()
    }

    /// Whether the simulator stands in for WeChat (the console shows a banner).
    pub fn simulated(&self) -> bool {
        self.config.simulator
    }
}
