//! Staff accounts as use cases: password hashing, signing in with rate limits and lockout,
//! creating accounts (the first admin included), and admins managing other accounts.

pub mod accounts;
pub mod login;
pub mod manage;
pub mod password;

pub use crate::db::staff::{Role, StaffUser};
