//! The audit log: every staff action, who did it, to what, when and from where.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::audit_log;
use super::{AnyConnection, DbResult};
use crate::domain::AuditAction;
use crate::domain::records::{Actor, AuditFilter, AuditRecord};

#[derive(Insertable, Debug)]
#[diesel(table_name = audit_log)]
struct NewAudit<'a> {
    at: NaiveDateTime,
    actor: &'a str,
    action: &'a str,
    out_trade_no: Option<&'a str>,
    target: Option<&'a str>,
    detail: String,
    remote_addr: Option<&'a str>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_log)]
struct AuditDbRow {
    id: i64,
    at: NaiveDateTime,
    actor: String,
    action: String,
    out_trade_no: Option<String>,
    target: Option<String>,
    detail: String,
    remote_addr: Option<String>,
}

impl From<AuditDbRow> for AuditRecord {
    fn from(r: AuditDbRow) -> AuditRecord {
        AuditRecord {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            out_trade_no: r.out_trade_no,
            target: r.target,
            detail: r.detail,
            remote_addr: r.remote_addr,
        }
    }
}

fn records(rows: Vec<AuditDbRow>) -> Vec<AuditRecord> {
    rows.into_iter().map(AuditRecord::from).collect()
}

/// Records that `actor` did `action` now: to `out_trade_no`, and to `target` (a username, a
/// token name, an exception id…), with `detail`. Written in the action's own transaction.
pub fn record(
    conn: &mut AnyConnection,
    actor: &Actor,
    action: AuditAction,
    out_trade_no: Option<&str>,
    target: Option<&str>,
    detail: serde_json::Value,
) -> DbResult<()> {
    let entry = NewAudit {
        at: super::now(),
        actor: &actor.username,
        action: action.as_str(),
        out_trade_no,
        target,
        detail: detail.to_string(),
        remote_addr: actor.remote_addr.as_deref(),
    };
    diesel::insert_into(audit_log::table).values(&entry).execute(conn)?;
    Ok(())
}

pub fn for_order(conn: &mut AnyConnection, out_trade_no: &str) -> DbResult<Vec<AuditRecord>> {
    Ok(records(
        audit_log::table
            .filter(audit_log::out_trade_no.eq(out_trade_no))
            .order(audit_log::id.asc())
            .select(AuditDbRow::as_select())
            .load(conn)?,
    ))
}

/// Newest first, `limit` rows older than `before_id` (keyset paging).
pub fn page(conn: &mut AnyConnection, before_id: Option<i64>, limit: i64) -> DbResult<Vec<AuditRecord>> {
    let mut q = audit_log::table.order(audit_log::id.desc()).limit(limit).select(AuditDbRow::as_select()).into_boxed();
    if let Some(id) = before_id {
        q = q.filter(audit_log::id.lt(id));
    }
    Ok(records(q.load(conn)?))
}

/// Newest first, at most `limit` filtered rows older than `before_id` (keyset paging by id, so a
/// deep page costs what the first one does).
pub fn search(
    conn: &mut AnyConnection,
    filter: &AuditFilter,
    before_id: Option<i64>,
    limit: i64,
) -> DbResult<Vec<AuditRecord>> {
    let mut q = audit_log::table.order(audit_log::id.desc()).limit(limit).select(AuditDbRow::as_select()).into_boxed();
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
    Ok(records(q.load(conn)?))
}
