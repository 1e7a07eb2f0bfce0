//! The audit log: every staff action, who did it, to what, when and from where.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::audit_log;
use super::{AnyConnection, DbResult};

#[derive(Insertable, Debug)]
#[diesel(table_name = audit_log)]
pub struct NewAudit<'a> {
    pub at: NaiveDateTime,
    pub actor: &'a str,
    pub action: &'a str,
    pub out_trade_no: Option<&'a str>,
    /// What else the action was about (a username, a token name, an exception id).
    pub target: Option<&'a str>,
    /// JSON.
    pub detail: String,
    pub remote_addr: Option<&'a str>,
}

impl<'a> NewAudit<'a> {
    /// An entry for an action taken now by `actor`, from `remote_addr`.
    pub fn by(
        actor: &'a str,
        remote_addr: Option<&'a str>,
        action: &'a str,
        out_trade_no: Option<&'a str>,
        target: Option<&'a str>,
        detail: serde_json::Value,
    ) -> NewAudit<'a> {
        NewAudit { at: crate::db::now(), actor, action, out_trade_no, target, detail: detail.to_string(), remote_addr }
    }
}

#[derive(Queryable, Selectable, Clone, Debug, serde::Serialize)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: i64,
    pub at: NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub out_trade_no: Option<String>,
    pub target: Option<String>,
    pub detail: String,
    pub remote_addr: Option<String>,
}

pub fn record(conn: &mut AnyConnection, entry: &NewAudit<'_>) -> DbResult<()> {
    diesel::insert_into(audit_log::table).values(entry).execute(conn)?;
    Ok(())
}

pub fn for_order(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Vec<AuditRow>> {
    Ok(audit_log::table
        .filter(audit_log::out_trade_no.eq(out_trade_no))
        .order(audit_log::id.asc())
        .select(AuditRow::as_select())
        .load(conn)?)
}

/// Newest first, `limit` rows older than `before_id` (keyset paging).
pub fn page(conn: &mut AnyConnection, before_id: Option<i64>, limit: i64) -> DbResult<Vec<AuditRow>> {
    let mut q = audit_log::table.order(audit_log::id.desc()).limit(limit).select(AuditRow::as_select()).into_boxed();
    if let Some(id) = before_id {
        q = q.filter(audit_log::id.lt(id));
    }
    Ok(q.load(conn)?)
}

/// What the audit page filters on; each is an exact match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub out_trade_no: Option<String>,
}

/// Newest first, at most `limit` filtered rows older than `before_id` (keyset paging by id, so a
/// deep page costs what the first one does).
pub fn search(
    conn: &mut AnyConnection,
    filter: &AuditFilter,
    before_id: Option<i64>,
    limit: i64,
) -> DbResult<Vec<AuditRow>> {
    let mut q = audit_log::table.order(audit_log::id.desc()).limit(limit).select(AuditRow::as_select()).into_boxed();
    if let Some(id) = before_id {
        q = q.filter(audit_log::id.lt(id));
    }
    if let Some(actor) = &filter.actor {
        q = q.filter(audit_log::actor.eq(actor.clone()));
    }
    if let Some(action) = &filter.action {
        q = q.filter(audit_log::action.eq(action.clone()));
    }
    if let Some(no) = &filter.out_trade_no {
        q = q.filter(audit_log::out_trade_no.eq(no.clone()));
    }
    Ok(q.load(conn)?)
}
