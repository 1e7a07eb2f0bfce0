//! Database access: one Diesel connection type over SQLite or PostgreSQL, the r2d2 pool, and
//! the two ways handlers reach it (`read`, and `write` in a transaction) without ever holding a
//! connection across an `.await`. All SQL lives under this module.

pub mod alerts;
pub mod audit;
pub mod backup;
pub mod diagnose;
pub mod events;
pub mod exceptions;
pub mod figures;
mod group_commit;
pub mod health;
pub mod idempotency;
pub mod job_runs;
pub mod migrate;
pub mod notify_log;
pub mod oauth_states;
pub mod order_batch;
pub mod order_list;
pub mod orders;
pub mod platform_certificates;
pub mod reconciliation;
pub mod refunds;
pub mod retention;
pub mod schema;
pub mod staff;
pub mod tokens;
pub mod webhooks;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{CustomizeConnection, ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};
use thiserror::Error;

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

#[derive(Debug, Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The first connection at start failed; what is wrong, in words (see `diagnose`).
    #[error(transparent)]
    Connect(#[from] diagnose::ConnectFailure),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl DbError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
        )
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Opens connections for the pool, applying each backend's per-connection settings.
pub struct Manager {
    url: String,
    backend: Backend,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        let conn = match self.backend {
            Backend::Postgres => AnyConnection::Postgresql(PgConnection::establish(&self.url)?),
            Backend::Sqlite => AnyConnection::Sqlite(SqliteConnection::establish(&self.url)?),
        };
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        conn.is_broken()
    }
}

#[derive(Debug)]
struct Settings;

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for Settings {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        if let AnyConnection::Sqlite(c) = conn {
            // synchronous=FULL keeps every commit durable in WAL mode; group commit amortizes the
            // fsync instead of weakening it. busy_timeout covers a CLI process writing alongside.
            c.batch_execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL;")
                .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// r2d2 logs every failed connection attempt at error level by default: a database that is
/// away for a minute would fill the log with the same line. The failure still reaches the
/// caller (the pool's timeout error carries the last one), and the health check reports it.
#[derive(Debug)]
struct QuietPoolErrors;

impl diesel::r2d2::HandleError<diesel::r2d2::Error> for QuietPoolErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        tracing::debug!(%error, "database connection attempt failed");
    }
}

/// How long a caller waits for a pooled connection before the database counts as unavailable.
const POOL_WAIT: Duration = Duration::from_secs(15);

/// The shared handle to the database.
#[derive(Clone)]
pub struct Db {
    pool: Pool<Manager>,
    backend: Backend,
    /// SQLite has one writer at a time; serializing our own writers in-process turns lock
    /// contention into a queue instead of `SQLITE_BUSY` errors.
    write_lock: Arc<Mutex<()>>,
    /// Write transactions begun through this handle and its clones: lets a test prove that a
    /// path meant to only read (the status poll) writes nothing.
    writes: Arc<AtomicU64>,
    /// Whether the last write transaction failed for the storage's sake, for the health check.
    write_health: health::WriteHealth,
    /// SQLite's group committer for [`Db::write_grouped`]; None on PostgreSQL, and in the
    /// committer's own handle.
    group: Option<std::sync::mpsc::Sender<group_commit::Job>>,
}

impl Db {
    /// Opens the pool. For SQLite the file (and its directory) is created and WAL is switched on.
    ///
    /// One direct connection comes first: a database that is away fails here at once, with
    /// [`DbError::Connect`] saying why, instead of after the pool's retries.
    pub fn connect(url: &str, pool_size: u32) -> DbResult<Db> {
        let backend = Backend::of_url(url);
        diagnose::probe(url)?;
        let pool = Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(2.min(pool_size)))
            .connection_timeout(POOL_WAIT)
            .connection_customizer(Box::new(Settings))
            .error_handler(Box::new(QuietPoolErrors))
            .build(Manager { url: url.to_owned(), backend })
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        let mut db = Db {
            pool,
            backend,
            write_lock: Arc::new(Mutex::new(())),
            writes: Arc::new(AtomicU64::new(0)),
            write_health: health::WriteHealth::default(),
            group: None,
        };
        if backend == Backend::Sqlite {
            db.group = Some(group_commit::start(db.clone()));
        }
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many write transactions were begun through this handle and its clones.
    pub fn write_count(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    pub fn conn(&self) -> DbResult<PooledConnection<Manager>> {
        self.pool.get().map_err(|e| DbError::Unavailable(e.to_string()))
    }

    /// Runs `f` on a pooled connection on the blocking pool; the connection is checked out inside
    /// the blocking task and returned before this future completes.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let db = self.clone();
        run_blocking(move || {
            let mut conn = db.conn()?;
            f(&mut conn)
        })
        .await
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE` on SQLite), committed if it returns Ok.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let db = self.clone();
        run_blocking(move || db.write_blocking(f)).await
    }

    /// [`Db::write`] for short, independent writes that many callers make at once (creating an
    /// order): on SQLite they share transactions and fsyncs (see `group_commit`), each still all
    /// or nothing and answered after its commit; on PostgreSQL this is [`Db::write`].
    pub async fn write_grouped<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let Some(group) = &self.group else {
            return self.write(f).await;
        };
        let (job, outcome) = group_commit::job(f);
        if group.send(job).is_err() {
            return Err(E::from(DbError::Unavailable("the group committer has stopped".into())));
        }
        match outcome.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(E::from(DbError::Unavailable("the group committer dropped a write".into()))),
        }
    }

    /// [`Db::write`] for code already on a blocking thread. How it ends is noted for the health
    /// check: a connection, BEGIN or COMMIT failing for the storage's sake marks writes as
    /// failing, a commit clears that. (An error of `f` is the use case's, and says nothing.)
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E>,
        E: From<DbError>,
    {
        self.write_blocking_within(POOL_WAIT, f)
    }

    /// [`Db::write_blocking`] that gives up after `wait` for a connection instead of the pool's
    /// usual 15 s: for a caller whose own caller stops waiting sooner (WeChat waits about 5 s for
    /// a notify's answer; a FAIL in time beats a timeout).
    pub fn write_blocking_within<T, E, F>(&self, wait: Duration, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E>,
        E: From<DbError>,
    {
        let _guard = self.sqlite_write_guard();
        self.writes.fetch_add(1, Ordering::Relaxed);
        let conn = self.pool.get_timeout(wait).map_err(|e| DbError::Unavailable(e.to_string()));
        let mut conn = conn.inspect_err(|e| self.write_health.failed(e))?;
        match run_transaction(&mut conn, f) {
            Ok(value) => {
                self.write_health.succeeded();
                Ok(value)
            }
            Err(TxFailure::Db(e)) => {
                self.write_health.failed(&e);
                Err(E::from(e))
            }
            Err(TxFailure::Work(e)) => Err(e),
        }
    }

    /// Our own writers in turn, on SQLite (see `write_lock`); nothing on PostgreSQL.
    fn sqlite_write_guard(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())),
            Backend::Postgres => None,
        }
    }
}

/// How a transaction failed: its BEGIN or COMMIT (the database refused), or the work in it.
pub(crate) enum TxFailure<E> {
    Db(DbError),
    Work(E),
}

/// Begins a transaction (IMMEDIATE on SQLite, so the write lock is taken up front and a later
/// read-to-write upgrade cannot fail), runs `f`, and commits or rolls back.
pub fn in_transaction<T, E, F>(conn: &mut AnyConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
    E: From<DbError>,
{
    run_transaction(conn, f).map_err(|failure| match failure {
        TxFailure::Db(e) => E::from(e),
        TxFailure::Work(e) => e,
    })
}

/// [`in_transaction`], telling the database's failures from those of `f`.
pub(crate) fn run_transaction<T, E, F>(conn: &mut AnyConnection, f: F) -> Result<T, TxFailure<E>>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
{
    let begin = match conn {
        AnyConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"),
        AnyConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c),
    };
    begin.map_err(|e| TxFailure::Db(e.into()))?;
    match f(conn) {
        Ok(value) => {
            <AnyConnection as Connection>::TransactionManager::commit_transaction(conn)
                .map_err(|e| TxFailure::Db(e.into()))?;
            Ok(value)
        }
        Err(e) => {
            if let Err(rollback) = <AnyConnection as Connection>::TransactionManager::rollback_transaction(conn) {
                tracing::error!(error = %rollback, "rollback failed");
            }
            Err(TxFailure::Work(e))
        }
    }
}

/// Runs `f` in a savepoint of the caller's transaction: an error rolls back only what `f` did,
/// and (on PostgreSQL) leaves the outer transaction usable.
pub fn savepoint<T, F>(conn: &mut AnyConnection, f: F) -> DbResult<T>
where
    F: FnOnce(&mut AnyConnection) -> DbResult<T>,
{
    conn.transaction::<T, DbError, _>(f)
}

/// `spawn_blocking` that re-raises a panic of the closure in the caller.
pub async fn run_blocking<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Creates the SQLite file's directory and switches the file to WAL (idempotent).
pub(crate) fn prepare_sqlite_file(url: &str) -> DbResult<()> {
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if path != ":memory:"
        && let Some(dir) = Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut conn = SqliteConnection::establish(url).map_err(|e| DbError::Unavailable(e.to_string()))?;
    // WAL persists in the file; readers then never block the writer.
    conn.batch_execute("PRAGMA journal_mode = WAL;")?;
    Ok(())
}

/// A round trip to the database (`SELECT 1`).
pub fn ping(conn: &mut AnyConnection) -> DbResult<()> {
    use diesel::RunQueryDsl;
    diesel::sql_query("SELECT 1").execute(conn)?;
    Ok(())
}

/// The current time, truncated to microseconds: what both backends store, so a value read
/// back equals the value written.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{DurationRound, TimeDelta};
    chrono::Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .expect("microsecond truncation of the current time cannot overflow")
        .naive_utc()
}
