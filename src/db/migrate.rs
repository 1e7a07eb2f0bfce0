//! Embedded migrations, one folder per backend, run at start-up and by `wechat-checkout migrate`.
//! On PostgreSQL they run under an advisory lock so several instances can start at once.

use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{AnyConnection, Backend, Db, DbError, DbResult, run_blocking};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// An arbitrary, fixed key for `pg_advisory_lock`: "wechat-checkout migrations".
const ADVISORY_LOCK_KEY: i64 = 0x7763_6b6f_6d69_6772;

/// Applies pending migrations; returns the names of those applied now.
pub fn run_pending(url: &str) -> DbResult<Vec<String>> {
    let err = |e: Box<dyn std::error::Error + Send + Sync>| DbError::Migration(e.to_string());
    match Backend::of_url(url) {
        Backend::Sqlite => {
            super::prepare_sqlite_file(url)?;
            let mut conn = SqliteConnection::establish(url).map_err(|e| DbError::Unavailable(e.to_string()))?;
            let applied = conn.run_pending_migrations(SQLITE).map_err(err)?;
            Ok(applied.iter().map(ToString::to_string).collect())
        }
        Backend::Postgres => {
            let mut conn = PgConnection::establish(url).map_err(|e| DbError::Unavailable(e.to_string()))?;
            diesel::sql_query(format!("SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})")).execute(&mut conn)?;
            let result = conn.run_pending_migrations(POSTGRES).map(|v| v.iter().map(ToString::to_string).collect());
            diesel::sql_query(format!("SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})")).execute(&mut conn)?;
            result.map_err(err)
        }
    }
}

impl Db {
    /// The migrations this binary knows that the database has not applied yet, for `/readyz`:
    /// one a newer instance applied is not pending here, one this binary brings and no one
    /// applied yet is. Waits for a connection no longer than a health check does.
    pub async fn pending_migrations(&self) -> DbResult<Vec<String>> {
        let db = self.clone();
        run_blocking(move || {
            let mut conn =
                db.pool.get_timeout(super::health::HEALTH_WAIT).map_err(|e| DbError::Unavailable(e.to_string()))?;
            let err = |e: Box<dyn std::error::Error + Send + Sync>| DbError::Migration(e.to_string());
            Ok(match &mut *conn {
                AnyConnection::Sqlite(c) => names(c.pending_migrations(SQLITE).map_err(err)?),
                AnyConnection::Postgresql(c) => names(c.pending_migrations(POSTGRES).map_err(err)?),
            })
        })
        .await
    }
}

fn names<B: diesel::backend::Backend>(migrations: Vec<Box<dyn diesel::migration::Migration<B>>>) -> Vec<String> {
    migrations.iter().map(|m| m.name().to_string()).collect()
}

/// Reverts every applied migration (tests check that `down.sql` really undoes `up.sql`).
pub fn revert_all(url: &str) -> DbResult<usize> {
    let err = |e: Box<dyn std::error::Error + Send + Sync>| DbError::Migration(e.to_string());
    match Backend::of_url(url) {
        Backend::Sqlite => {
            let mut conn = SqliteConnection::establish(url).map_err(|e| DbError::Unavailable(e.to_string()))?;
            Ok(conn.revert_all_migrations(SQLITE).map_err(err)?.len())
        }
        Backend::Postgres => {
            let mut conn = PgConnection::establish(url).map_err(|e| DbError::Unavailable(e.to_string()))?;
            Ok(conn.revert_all_migrations(POSTGRES).map_err(err)?.len())
        }
    }
}
