//! The shared copy of WeChat Pay's platform certificates (API v3): the last `/v3/certificates`
//! answer per merchant, as received (still encrypted), with when it was downloaded.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::platform_certificates as certs;
use super::{AnyConnection, DbError, DbResult};

/// The stored answer for `mch_id` and when it was downloaded.
pub fn load(conn: &mut AnyConnection, mch_id: &str) -> DbResult<Option<(String, NaiveDateTime)>> {
    Ok(certs::table.filter(certs::mch_id.eq(mch_id)).select((certs::body, certs::fetched_at)).first(conn).optional()?)
}

/// Stores `body` for `mch_id` unless a newer download is already stored.
pub fn store(conn: &mut AnyConnection, mch_id: &str, body: &str, fetched_at: NaiveDateTime) -> DbResult<()> {
    let updated =
        diesel::update(certs::table.filter(certs::mch_id.eq(mch_id)).filter(certs::fetched_at.le(fetched_at)))
            .set((certs::body.eq(body), certs::fetched_at.eq(fetched_at)))
            .execute(conn)?;
    if updated == 1 {
        return Ok(());
    }
    // No row yet (or a newer one): insert in a savepoint, so that on PostgreSQL a row another
    // instance made meanwhile leaves the transaction usable.
    let inserted = conn.transaction::<_, DbError, _>(|c| {
        diesel::insert_into(certs::table)
            .values((certs::mch_id.eq(mch_id), certs::body.eq(body), certs::fetched_at.eq(fetched_at)))
            .execute(c)?;
        Ok(())
    });
    match inserted {
        Err(e) if e.is_unique_violation() => Ok(()),
        other => other,
    }
}
