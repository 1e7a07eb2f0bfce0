//! Jobs that work on the whole database rather than on rows (retention): one `job_runs` row per
//! job, leased the way jobs lease orders, with the time its last pass finished.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::job_runs;
use super::{AnyConnection, DbError, DbResult};

/// Takes job `name` for `owner` until `until` when nobody holds it and, with `finished_before`,
/// when its last pass finished before then (or never ran). `false`: another instance holds it,
/// or it is not due.
pub fn claim(
    conn: &mut AnyConnection,
    name: &str,
    owner: &str,
    now: NaiveDateTime,
    until: NaiveDateTime,
    finished_before: Option<NaiveDateTime>,
) -> DbResult<bool> {
    // The row is made on first use; in a savepoint, so that on PostgreSQL the unique violation
    // of a row another instance made meanwhile leaves our transaction usable.
    let made = conn.transaction::<_, DbError, _>(|c| {
        diesel::insert_into(job_runs::table).values(job_runs::name.eq(name)).execute(c)?;
        Ok(())
    });
    match made {
        Ok(()) => {}
        Err(e) if e.is_unique_violation() => {}
        Err(e) => return Err(e),
    }
    let free = job_runs::lease_until.is_null().or(job_runs::lease_until.lt(now));
    let n = match finished_before {
        Some(before) => {
            let due = job_runs::last_finished_at.is_null().or(job_runs::last_finished_at.lt(before));
            diesel::update(job_runs::table.filter(job_runs::name.eq(name)).filter(free).filter(due))
                .set((job_runs::lease_owner.eq(owner), job_runs::lease_until.eq(until)))
                .execute(conn)?
        }
        None => diesel::update(job_runs::table.filter(job_runs::name.eq(name)).filter(free))
            .set((job_runs::lease_owner.eq(owner), job_runs::lease_until.eq(until)))
            .execute(conn)?,
    };
    Ok(n == 1)
}

/// Extends `owner`'s lease to `until`; `false` when it is no longer `owner`'s (it ran out and
/// another instance took the job).
pub fn renew(conn: &mut AnyConnection, name: &str, owner: &str, until: NaiveDateTime) -> DbResult<bool> {
    let n = diesel::update(job_runs::table.filter(job_runs::name.eq(name)).filter(job_runs::lease_owner.eq(owner)))
        .set(job_runs::lease_until.eq(until))
        .execute(conn)?;
    Ok(n == 1)
}

/// Records that `owner`'s pass finished at `at` and lets the lease go.
pub fn finish(conn: &mut AnyConnection, name: &str, owner: &str, at: NaiveDateTime) -> DbResult<bool> {
    let n = diesel::update(job_runs::table.filter(job_runs::name.eq(name)).filter(job_runs::lease_owner.eq(owner)))
        .set((
            job_runs::last_finished_at.eq(at),
            job_runs::lease_owner.eq(None::<String>),
            job_runs::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// When job `name`'s last pass finished, if it ever did.
pub fn last_finished(conn: &mut AnyConnection, name: &str) -> DbResult<Option<NaiveDateTime>> {
    Ok(job_runs::table
        .filter(job_runs::name.eq(name))
        .select(job_runs::last_finished_at)
        .first::<Option<NaiveDateTime>>(conn)
        .optional()?
        .flatten())
}
