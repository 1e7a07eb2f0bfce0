//! Whether the database can take writes, for the health check. `SELECT 1` is not enough: a
//! database that answers it may still refuse every commit (SQLite on a full disk, PostgreSQL
//! with a full WAL disk, a read-only failover). So every write transaction through a [`Db`]
//! reports how it ended, the handle remembers the last storage failure, and while one is
//! remembered the health check tries a write of its own: the app reports unhealthy exactly as
//! long as writes fail, and healthy again without waiting for traffic to prove it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::RunQueryDsl;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::{AnyConnection, Db, DbError, DbResult, TxFailure, ping, run_blocking, run_transaction};

/// How long a health check waits for a connection. A request may wait 15 s for the pool; a
/// monitor needs its answer sooner, and a database that gives none in 2 s is not healthy.
pub(super) const HEALTH_WAIT: Duration = Duration::from_secs(2);

/// What a health check found; the strings are details for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// No connection, or `SELECT 1` failed.
    Unreachable(String),
    /// The database answers, but the last write failed and a probe write fails too.
    WritesFailing(String),
}

/// The storage failure that ended the last write transaction through a [`Db`] and its clones;
/// cleared by the next commit.
#[derive(Clone, Default)]
pub(crate) struct WriteHealth(Arc<Mutex<Option<String>>>);

impl WriteHealth {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A write transaction could not begin or commit: remembered if the storage is to blame.
    pub(crate) fn failed(&self, e: &DbError) {
        if !is_storage_failure(e) {
            return;
        }
        let mut last = self.last();
        if last.is_none() {
            tracing::error!(error = %e, "database writes are failing; /healthz reports unhealthy until one succeeds");
        }
        *last = Some(e.to_string());
    }

    /// A write transaction committed.
    pub(crate) fn succeeded(&self) {
        if self.last().take().is_some() {
            tracing::info!("database writes succeed again");
        }
    }

    fn failure(&self) -> Option<String> {
        self.last().clone()
    }
}

/// Whether a failed BEGIN or COMMIT says the database cannot store writes (unreachable, disk
/// full, I/O error, read-only), as opposed to refusing this one transaction's data (a
/// constraint, a serialization conflict another attempt may pass).
pub fn is_storage_failure(e: &DbError) -> bool {
    use DatabaseErrorKind as K;
    match e {
        DbError::Unavailable(_) | DbError::Connect(_) => true,
        DbError::Query(DieselError::DatabaseError(kind, _)) => !matches!(
            kind,
            K::UniqueViolation
                | K::ForeignKeyViolation
                | K::NotNullViolation
                | K::CheckViolation
                | K::RestrictViolation
                | K::ExclusionViolation
                | K::SerializationFailure
        ),
        DbError::Query(_) => true,
        DbError::Migration(_) | DbError::Corrupt(_) => false,
    }
}

#[derive(diesel::QueryableByName)]
struct UserVersion {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    user_version: i32,
}

/// A write that changes nothing anyone reads yet must reach the disk to commit. SQLite: the
/// header's `user_version` set to its own value (a WAL frame). PostgreSQL: a transaction id taken
/// (a commit record in the WAL).
fn probe_write(conn: &mut AnyConnection) -> DbResult<()> {
    match conn {
        AnyConnection::Sqlite(c) => {
            let current = diesel::sql_query("PRAGMA user_version").get_result::<UserVersion>(c)?.user_version;
            diesel::sql_query(format!("PRAGMA user_version = {current}")).execute(c)?;
        }
        AnyConnection::Postgresql(c) => {
            diesel::sql_query("SELECT txid_current()").execute(c)?;
        }
    }
    Ok(())
}

impl Db {
    /// The health check: a connection within [`HEALTH_WAIT`], `SELECT 1`, and, only while the
    /// last write failed, a probe write (which clears the failure when it commits).
    pub async fn health(&self) -> Health {
        let db = self.clone();
        run_blocking(move || db.health_blocking()).await
    }

    fn health_blocking(&self) -> Health {
        let answered = self.pool.get_timeout(HEALTH_WAIT).map_err(|e| DbError::Unavailable(e.to_string()));
        if let Err(e) = answered.and_then(|mut conn| ping(&mut conn)) {
            return Health::Unreachable(e.to_string());
        }
        let Some(failure) = self.write_health.failure() else { return Health::Ok };
        // Like every writer: our turn first, then a connection (never the other way round).
        let _guard = self.sqlite_write_guard();
        let probed =
            self.pool.get_timeout(HEALTH_WAIT).map_err(|e| DbError::Unavailable(e.to_string())).and_then(|mut conn| {
                match run_transaction(&mut conn, probe_write) {
                    Ok(()) => Ok(()),
                    Err(TxFailure::Db(e) | TxFailure::Work(e)) => Err(e),
                }
            });
        match probed {
            Ok(()) => {
                self.write_health.succeeded();
                Health::Ok
            }
            Err(e) => {
                self.write_health.failed(&e);
                Health::WritesFailing(format!("{failure}; probe: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::DatabaseErrorKind as K;

    use super::*;

    fn database_error(kind: K, message: &str) -> DbError {
        DbError::Query(DieselError::DatabaseError(kind, Box::new(message.to_owned())))
    }

    #[test]
    fn storage_failures_are_told_from_refused_data() {
        assert!(is_storage_failure(&DbError::Unavailable("timed out waiting for connection".into())));
        assert!(is_storage_failure(&database_error(K::Unknown, "database or disk is full")));
        assert!(is_storage_failure(&database_error(K::ClosedConnection, "server closed the connection")));
        assert!(is_storage_failure(&database_error(K::ReadOnlyTransaction, "read-only transaction")));
        assert!(!is_storage_failure(&database_error(K::UniqueViolation, "duplicate key")));
        assert!(!is_storage_failure(&database_error(K::SerializationFailure, "could not serialize")));
        assert!(!is_storage_failure(&DbError::Corrupt("bad state".into())));
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_until_a_probe_write_commits() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("health.sqlite").to_string_lossy().into_owned();
        let db = Db::connect(&url, 2).unwrap();
        assert_eq!(db.health().await, Health::Ok);
        db.write_health.failed(&database_error(K::UniqueViolation, "duplicate key"));
        assert_eq!(db.health().await, Health::Ok, "a refused row says nothing about the storage");
        db.write_health.failed(&database_error(K::Unknown, "database or disk is full"));
        assert!(db.write_health.failure().is_some());
        // The disk has room here: the probe commits, and the failure is forgotten.
        assert_eq!(db.health().await, Health::Ok);
        assert_eq!(db.write_health.failure(), None);
        // A commit of a use case forgets it too.
        db.write_health.failed(&database_error(K::Unknown, "database or disk is full"));
        db.write(ping).await.unwrap();
        assert_eq!(db.write_health.failure(), None);
    }
}
