//! Staff accounts: look-ups, creation, password and role changes, lockout bookkeeping (counted
//! before a password is checked), and the log of sign-in attempts used to rate-limit by IP.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{login_attempts, staff_users};
use super::{AnyConnection, DbError, DbResult};
use crate::domain::{Role, StaffUser};

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = staff_users)]
struct StaffRow {
    id: i64,
    username: String,
    password_hash: String,
    role: String,
    session_version: i64,
    must_change_password: i32,
    disabled: i32,
    failed_logins: i32,
    locked_until: Option<NaiveDateTime>,
    last_login_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<StaffRow> for StaffUser {
    type Error = DbError;

    fn try_from(r: StaffRow) -> DbResult<StaffUser> {
        let role = Role::parse(&r.role)
            .ok_or_else(|| DbError::Corrupt(format!("user {} has role {:?}", r.username, r.role)))?;
        Ok(StaffUser {
            id: r.id,
            username: r.username,
            password_hash: r.password_hash,
            role,
            session_version: r.session_version,
            must_change_password: r.must_change_password != 0,
            disabled: r.disabled != 0,
            failed_logins: r.failed_logins,
            locked_until: r.locked_until.map(|t| t.and_utc()),
            last_login_at: r.last_login_at.map(|t| t.and_utc()),
            created_at: r.created_at.and_utc(),
            updated_at: r.updated_at.and_utc(),
        })
    }
}

fn load(rows: Vec<StaffRow>) -> DbResult<Vec<StaffUser>> {
    rows.into_iter().map(StaffUser::try_from).collect()
}

pub fn find_by_username(conn: &mut AnyConnection, username: &str) -> DbResult<Option<StaffUser>> {
    staff_users::table
        .filter(staff_users::username.eq(username))
        .select(StaffRow::as_select())
        .first(conn)
        .optional()?
        .map(StaffUser::try_from)
        .transpose()
}

pub fn find(conn: &mut AnyConnection, id: i64) -> DbResult<Option<StaffUser>> {
    staff_users::table
        .filter(staff_users::id.eq(id))
        .select(StaffRow::as_select())
        .first(conn)
        .optional()?
        .map(StaffUser::try_from)
        .transpose()
}

pub fn list(conn: &mut AnyConnection) -> DbResult<Vec<StaffUser>> {
    load(staff_users::table.order(staff_users::username.asc()).select(StaffRow::as_select()).load(conn)?)
}

pub fn count(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(staff_users::table.count().get_result(conn)?)
}

/// Creates a user. A taken username is a unique violation.
pub fn insert(
    conn: &mut AnyConnection,
    username: &str,
    password_hash: &str,
    role: Role,
    must_change_password: bool,
) -> DbResult<()> {
    let now = super::now();
    diesel::insert_into(staff_users::table)
        .values((
            staff_users::username.eq(username),
            staff_users::password_hash.eq(password_hash),
            staff_users::role.eq(role.as_str()),
            staff_users::session_version.eq(1i64),
            staff_users::must_change_password.eq(i32::from(must_change_password)),
            staff_users::disabled.eq(0),
            staff_users::failed_logins.eq(0),
            staff_users::created_at.eq(now),
            staff_users::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Sets a new password and ends every session of the user.
pub fn set_password(conn: &mut AnyConnection, id: i64, password_hash: &str, must_change: bool) -> DbResult<()> {
    diesel::update(staff_users::table.filter(staff_users::id.eq(id)))
        .set((
            staff_users::password_hash.eq(password_hash),
            staff_users::must_change_password.eq(i32::from(must_change)),
            staff_users::session_version.eq(staff_users::session_version + 1),
            staff_users::updated_at.eq(super::now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Changes role and enabled state; either change ends the user's sessions.
pub fn set_role_and_disabled(conn: &mut AnyConnection, id: i64, role: Role, disabled: bool) -> DbResult<()> {
    diesel::update(staff_users::table.filter(staff_users::id.eq(id)))
        .set((
            staff_users::role.eq(role.as_str()),
            staff_users::disabled.eq(i32::from(disabled)),
            staff_users::session_version.eq(staff_users::session_version + 1),
            staff_users::updated_at.eq(super::now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// What counting a sign-in attempt against an account did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// The account is locked or disabled: nothing changed, and its password must not be checked.
    Closed,
    /// Counted as a failure until the password proves right.
    Open,
    /// Counted, and this attempt reached the limit: the account is now locked until the given time.
    Locked(NaiveDateTime),
}

/// Counts an attempt as a failed password before the password is checked, in the caller's write
/// transaction, so that parallel guesses cannot all pass a lock check made before any of them was
/// counted. The increment is guarded (not disabled, not locked at `now`): on PostgreSQL a
/// concurrent attempt waits for the row and re-checks the guard against the committed row, so once
/// one of them locks the account the rest find it closed. The attempt that reaches `max_failures`
/// locks the account until `lock_until` and restarts the count for after the lock.
pub fn count_failure_up_front(
    conn: &mut AnyConnection,
    id: i64,
    now: NaiveDateTime,
    max_failures: i32,
    lock_until: NaiveDateTime,
) -> DbResult<Counted> {
    let counted = diesel::update(
        staff_users::table
            .filter(staff_users::id.eq(id))
            .filter(staff_users::disabled.eq(0))
            .filter(staff_users::locked_until.is_null().or(staff_users::locked_until.le(now))),
    )
    .set(staff_users::failed_logins.eq(staff_users::failed_logins + 1))
    .execute(conn)?;
    if counted == 0 {
        return Ok(Counted::Closed);
    }
    // The row is this transaction's until it commits: no other attempt moves it in between.
    let locked = diesel::update(
        staff_users::table.filter(staff_users::id.eq(id)).filter(staff_users::failed_logins.ge(max_failures)),
    )
    .set((staff_users::locked_until.eq(Some(lock_until)), staff_users::failed_logins.eq(0)))
    .execute(conn)?;
    Ok(if locked == 0 { Counted::Open } else { Counted::Locked(lock_until) })
}

/// Records a sign-in whose password proved right: clears the failures and the lock and notes the
/// time. Refused (false, nothing changed) when the account was disabled, or locked by another
/// attempt, since this one was counted: a lock ending after `own_lock` (the lock this attempt
/// itself set, if any; `now` otherwise) is someone else's.
pub fn record_success_unless_locked(
    conn: &mut AnyConnection,
    id: i64,
    now: NaiveDateTime,
    own_lock: Option<NaiveDateTime>,
) -> DbResult<bool> {
    let updated = diesel::update(
        staff_users::table
            .filter(staff_users::id.eq(id))
            .filter(staff_users::disabled.eq(0))
            .filter(staff_users::locked_until.is_null().or(staff_users::locked_until.le(own_lock.unwrap_or(now)))),
    )
    .set((
        staff_users::failed_logins.eq(0),
        staff_users::locked_until.eq(None::<NaiveDateTime>),
        staff_users::last_login_at.eq(Some(now)),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Ends every session of the user (sign-out, which cannot end only one: sessions are cookies
/// checked against this version).
pub fn end_sessions(conn: &mut AnyConnection, id: i64) -> DbResult<()> {
    diesel::update(staff_users::table.filter(staff_users::id.eq(id)))
        .set(staff_users::session_version.eq(staff_users::session_version + 1))
        .execute(conn)?;
    Ok(())
}

/// Lifts a lockout (an admin action).
pub fn unlock(conn: &mut AnyConnection, id: i64) -> DbResult<()> {
    diesel::update(staff_users::table.filter(staff_users::id.eq(id)))
        .set((staff_users::failed_logins.eq(0), staff_users::locked_until.eq(None::<NaiveDateTime>)))
        .execute(conn)?;
    Ok(())
}

/// Records a sign-in attempt and returns its id. Call it after [`lock_attempts_from_ip`]: the id
/// is then the newest of this IP's, which no other transaction can add to before this one ends.
pub fn record_attempt(conn: &mut AnyConnection, username: &str, ip: &str, succeeded: bool) -> DbResult<i64> {
    diesel::insert_into(login_attempts::table)
        .values((
            login_attempts::username.eq(username),
            login_attempts::ip.eq(ip),
            login_attempts::succeeded.eq(i32::from(succeeded)),
            login_attempts::attempted_at.eq(super::now()),
        ))
        .execute(conn)?;
    let id = login_attempts::table
        .filter(login_attempts::ip.eq(ip))
        .select(diesel::dsl::max(login_attempts::id))
        .first::<Option<i64>>(conn)?;
    id.ok_or_else(|| DbError::Corrupt("a sign-in attempt just recorded is missing".into()))
}

/// Marks a recorded attempt (counted as failed until its password proved right) as succeeded.
pub fn mark_attempt_succeeded(conn: &mut AnyConnection, id: i64) -> DbResult<()> {
    diesel::update(login_attempts::table.filter(login_attempts::id.eq(id)))
        .set(login_attempts::succeeded.eq(1))
        .execute(conn)?;
    Ok(())
}

/// Serializes the sign-in attempts of one IP until the transaction ends, so that counting its
/// failures and recording a new one is one step: parallel attempts cannot all see the count under
/// the limit. SQLite's write transaction already serializes writers; PostgreSQL takes a
/// transaction-scoped advisory lock on the IP (the first key names this use of advisory locks).
pub fn lock_attempts_from_ip(conn: &mut AnyConnection, ip: &str) -> DbResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(7110, hashtext($1))")
            .bind::<diesel::sql_types::Text, _>(ip)
            .execute(pg)?;
    }
    Ok(())
}

/// Failed sign-ins from this IP since `since`.
pub fn failures_from_ip(conn: &mut AnyConnection, ip: &str, since: NaiveDateTime) -> DbResult<i64> {
    Ok(login_attempts::table
        .filter(login_attempts::ip.eq(ip))
        .filter(login_attempts::attempted_at.ge(since))
        .filter(login_attempts::succeeded.eq(0))
        .count()
        .get_result(conn)?)
}

/// Admins that are not disabled, other than `except`: who would be left to administer the console.
pub fn count_active_admins_except(conn: &mut AnyConnection, except: i64) -> DbResult<i64> {
    Ok(staff_users::table
        .filter(staff_users::role.eq(Role::Admin.as_str()))
        .filter(staff_users::disabled.eq(0))
        .filter(staff_users::id.ne(except))
        .count()
        .get_result(conn)?)
}

/// Locks the admin rows until the transaction ends, so two concurrent demotions or disables cannot
/// each see the other admin still active and leave none. On SQLite the write transaction
/// (`BEGIN IMMEDIATE`) already serializes writers; PostgreSQL needs the row locks.
pub fn lock_admins(conn: &mut AnyConnection) -> DbResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        staff_users::table
            .filter(staff_users::role.eq(Role::Admin.as_str()))
            .select(staff_users::id)
            .for_update()
            .load::<i64>(pg)?;
    }
    Ok(())
}
