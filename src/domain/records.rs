//! What the program keeps a record of, as every layer reads it: the order timeline, notify
//! deliveries, exceptions for staff, the audit log and API tokens. Each is written once and then
//! only read (an exception is also resolved); its vocabulary is typed in [`super::vocab`], and
//! the stored text stays readable when it holds a word this build does not know.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::vocab::{NotifyKind, TimelineKind};

/// One thing that happened to an order (`order_events`), oldest first.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TimelineEntry {
    pub id: i64,
    pub out_trade_no: String,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub source: String,
    /// JSON.
    pub detail: String,
    pub created_at: NaiveDateTime,
}

impl TimelineEntry {
    pub fn at(&self) -> DateTime<Utc> {
        self.created_at.and_utc()
    }

    pub fn kind(&self) -> Option<TimelineKind> {
        TimelineKind::parse(&self.kind)
    }
}

/// One delivery WeChat made to us, with what we made of it and our exact reply.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NotifyRecord {
    pub id: i64,
    pub kind: String,
    pub received_at: NaiveDateTime,
    pub remote_addr: Option<String>,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    pub verdict: String,
    pub reason: String,
    pub raw_body: String,
    pub reply: String,
}

impl NotifyRecord {
    pub fn kind(&self) -> Option<NotifyKind> {
        NotifyKind::parse(&self.kind)
    }
}

/// A situation waiting for a person, and how it was resolved.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExceptionRecord {
    pub id: i64,
    pub kind: String,
    pub dedupe_key: String,
    pub out_trade_no: Option<String>,
    /// JSON.
    pub detail: String,
    pub created_at: NaiveDateTime,
    pub resolved_at: Option<NaiveDateTime>,
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
}

/// Which exceptions a list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionStatus {
    Open,
    Resolved,
}

/// Who asked for an action: a staff member and the address the request came from. Every use
/// case a person triggers takes one and writes it to the audit log in the action's transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub username: String,
    pub remote_addr: Option<String>,
}

/// One audited staff action.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub out_trade_no: Option<String>,
    pub target: Option<String>,
    pub detail: String,
    pub remote_addr: Option<String>,
}

/// What the audit page filters on; each is an exact match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub out_trade_no: Option<String>,
}

/// A merchant API token as the console shows it: never its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub scope: super::ApiScope,
    pub created_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

/// SHA-256 hex of a merchant API token: what is stored and compared, so a database leak does
/// not leak working tokens.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
