//! Group commit for SQLite's short write transactions (an order created through the API): a
//! write that arrives while another is being committed waits, and all that waited go together in
//! the next transaction, each in a savepoint of its own, so one fsync covers the whole group.
//!
//! SQLite commits one transaction at a time and each commit waits for its fsync; alone, every
//! API call would pay a whole fsync. Grouped, a call sees exactly what it would have seen alone:
//! its own work is all in or all out (its savepoint), its error is its own, and it hears back
//! only after the group's commit is durable. A failed commit fails every write of the group.
//! PostgreSQL needs none of this: concurrent transactions share WAL flushes by themselves.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use diesel::Connection;
use diesel::connection::TransactionManager;

use super::{AnyConnection, Db, DbError};

/// Writes per transaction at most, to bound how long the first one waits for the last.
const MAX_GROUP: usize = 256;

/// A write waiting for the next group: runs its work inside the group's transaction and returns
/// what to tell its caller once the commit is known.
pub(crate) type Job = Box<dyn FnOnce(&mut AnyConnection) -> Finish + Send>;
type Finish = Box<dyn FnOnce(Result<(), &DbError>) + Send>;
/// What a write's work ended with: its own result, or the panic to raise in its caller.
type Outcome<T, E> = Result<Result<T, E>, Box<dyn Any + Send>>;

/// Starts the committer for `db` (a handle without a committer of its own, so the thread ends
/// when the last handle that can send to it is dropped).
pub(crate) fn start(db: Db) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("sqlite-group-commit".into())
        .spawn(move || run(&db, &rx))
        .expect("the group commit thread starts");
    tx
}

fn run(db: &Db, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP
            && let Ok(job) = rx.try_recv()
        {
            jobs.push(job);
        }
        // At most MAX_GROUP: exact as an f64.
        metrics::histogram!("wechat_checkout_group_commit_batch_size", "writer" => "sqlite_writes")
            .record(jobs.len() as f64);
        let mut finishes = Vec::with_capacity(jobs.len());
        let committed = db.write_blocking(|conn| -> Result<(), DbError> {
            finishes.extend(jobs.into_iter().map(|job| job(conn)));
            Ok(())
        });
        if let Err(e) = &committed {
            tracing::error!(error = %e, writes = finishes.len(), "a group of writes could not be committed");
        }
        for finish in finishes {
            finish(committed.as_ref().map(|_| ()));
        }
    }
}

/// Wraps `f` as a job whose outcome arrives on the returned receiver after the group's commit.
pub(crate) fn job<T, E, F>(f: F) -> (Job, tokio::sync::oneshot::Receiver<Outcome<T, E>>)
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move |conn| {
        let outcome = in_savepoint(conn, f);
        Box::new(move |committed: Result<(), &DbError>| {
            let outcome = match (committed, outcome) {
                (_, Err(panic)) => Err(panic),
                (Ok(()), Ok(result)) => Ok(result),
                (Err(e), Ok(_)) => Ok(Err(E::from(DbError::Unavailable(format!("the commit failed: {e}"))))),
            };
            let _ = tx.send(outcome);
        })
    });
    (job, rx)
}

/// Runs `f` in a savepoint of the group's transaction: its error or its panic undoes only its
/// own work, and the group goes on.
fn in_savepoint<T, E, F>(conn: &mut AnyConnection, f: F) -> Outcome<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
    E: From<DbError>,
{
    type Tm = <AnyConnection as Connection>::TransactionManager;
    if let Err(e) = Tm::begin_transaction(conn) {
        return Ok(Err(E::from(e.into())));
    }
    let ran = catch_unwind(AssertUnwindSafe(|| f(conn)));
    let undo = |conn: &mut AnyConnection| {
        if let Err(e) = Tm::rollback_transaction(conn) {
            tracing::error!(error = %e, "rolling back a savepoint failed");
        }
    };
    match ran {
        Ok(Ok(value)) => match Tm::commit_transaction(conn) {
            Ok(()) => Ok(Ok(value)),
            Err(e) => {
                undo(conn);
                Ok(Err(E::from(e.into())))
            }
        },
        Ok(Err(e)) => {
            undo(conn);
            Ok(Err(e))
        }
        Err(panic) => {
            undo(conn);
            Err(panic)
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::RunQueryDsl;

    use super::super::{Db, DbError};

    fn sqlite() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("group.sqlite").to_string_lossy().into_owned();
        crate::db::migrate::run_pending(&url).unwrap();
        (dir, Db::connect(&url, 4).unwrap())
    }

    fn insert(nonce: &str) -> impl FnOnce(&mut super::AnyConnection) -> Result<(), DbError> + Send + 'static {
        let sql = format!("INSERT INTO oauth_states (nonce, used_at) VALUES ('{nonce}', '2026-12-02 10:00:00')");
        move |conn| {
            diesel::sql_query(sql).execute(conn)?;
            Ok(())
        }
    }

    fn stored(db: &Db) -> Vec<String> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            nonce: String,
        }
        let rows: Vec<Row> =
            diesel::sql_query("SELECT nonce FROM oauth_states ORDER BY nonce").load(&mut db.conn().unwrap()).unwrap();
        rows.into_iter().map(|r| r.nonce).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_waiting_together_share_one_commit_and_each_keeps_its_own_result() {
        let (_dir, db) = sqlite();
        db.write_grouped(insert("taken")).await.unwrap();
        let before = db.write_count();
        // Our writers wait while the lock is held, so every write sent meanwhile waits for the
        // same next commit: at most two transactions (the first write may be picked up alone).
        let lock = db.sqlite_write_guard();
        let mut writes = Vec::new();
        for i in 0..50 {
            writes.push(tokio::spawn({
                let db = db.clone();
                async move { db.write_grouped(insert(&format!("n{i:02}"))).await }
            }));
        }
        // One write fails half-way: its first row must be undone with it, and only it fails.
        let failing = tokio::spawn({
            let db = db.clone();
            async move {
                db.write_grouped(|conn| {
                    insert("half")(conn)?;
                    insert("taken")(conn)
                })
                .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        drop(lock);
        for w in writes {
            w.await.unwrap().unwrap();
        }
        assert!(failing.await.unwrap().unwrap_err().is_unique_violation());
        assert!(db.write_count() - before <= 2, "{} transactions for 51 writes", db.write_count() - before);
        let nonces = stored(&db);
        assert_eq!(nonces.len(), 51, "{nonces:?}");
        assert!(!nonces.contains(&"half".to_owned()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_panics_in_its_caller_and_the_others_commit() {
        let (_dir, db) = sqlite();
        let lock = db.sqlite_write_guard();
        let good = tokio::spawn({
            let db = db.clone();
            async move { db.write_grouped(insert("good")).await }
        });
        let bad = tokio::spawn({
            let db = db.clone();
            async move {
                db.write_grouped(|conn| -> Result<(), DbError> {
                    insert("before-panic")(conn)?;
                    panic!("a bug in a use case");
                })
                .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        drop(lock);
        good.await.unwrap().unwrap();
        assert!(bad.await.unwrap_err().is_panic());
        assert_eq!(stored(&db), ["good"]);
        db.write_grouped(insert("after")).await.unwrap();
        assert_eq!(stored(&db), ["after", "good"]);
    }
}
