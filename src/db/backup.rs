//! An online copy of a SQLite database (`wechat-checkout backup`): `VACUUM INTO` reads one
//! consistent snapshot in a read transaction, which in WAL mode neither blocks the server's
//! writers nor is blocked by them, and writes a compact copy. The copy is then opened and
//! checked (`PRAGMA integrity_check`) before it is reported. PostgreSQL has `pg_dump` for this.

use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

use super::diagnose::{self, ConnectFailure};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} already exists; a backup never overwrites a file (choose a new name)", .0.display())]
    Exists(PathBuf),
    #[error("there is no database at {} to back up", .0.display())]
    NoSource(PathBuf),
    #[error(transparent)]
    Source(#[from] ConnectFailure),
    #[error("the copy to {} failed: {reason}", path.display())]
    Copy { path: PathBuf, reason: String },
    #[error("the copy at {} does not pass the integrity check: {reason}", path.display())]
    Integrity { path: PathBuf, reason: String },
}

/// A finished, checked copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
}

#[derive(QueryableByName)]
struct CheckRow {
    #[diesel(sql_type = Text)]
    integrity_check: String,
}

/// Copies the SQLite database at `url` to `to` while other processes keep reading and writing it.
pub fn sqlite(url: &str, to: &Path) -> Result<BackupReport, BackupError> {
    if to.exists() {
        return Err(BackupError::Exists(to.to_owned()));
    }
    let source = diagnose::sqlite_path(url);
    if !source.is_file() {
        return Err(BackupError::NoSource(source.to_owned()));
    }
    let copy_failed = |reason: String| BackupError::Copy { path: to.to_owned(), reason };
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| copy_failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let dest = to.to_str().ok_or_else(|| copy_failed("the path is not valid UTF-8".into()))?;
    let mut conn = SqliteConnection::establish(url).map_err(|e| ConnectFailure {
        backend: super::Backend::Sqlite,
        problem: diagnose::sqlite_problem(source, &e.to_string()),
    })?;
    // The server may hold the write lock for a moment (a checkpoint); wait rather than fail.
    conn.batch_execute("PRAGMA busy_timeout = 10000;").map_err(|e| copy_failed(e.to_string()))?;
    diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(dest)
        .execute(&mut conn)
        .map_err(|e| copy_failed(e.to_string()))?;
    drop(conn);
    check(to)?;
    let bytes = std::fs::metadata(to).map_err(|e| copy_failed(e.to_string()))?.len();
    Ok(BackupReport { path: to.to_owned(), bytes })
}

/// `PRAGMA integrity_check` on the file at `path`: Ok when SQLite answers the single row `ok`.
pub fn check(path: &Path) -> Result<(), BackupError> {
    let failed = |reason: String| BackupError::Integrity { path: path.to_owned(), reason };
    let url = path.to_str().ok_or_else(|| failed("the path is not valid UTF-8".into()))?;
    let mut conn = SqliteConnection::establish(url).map_err(|e| failed(e.to_string()))?;
    let rows: Vec<CheckRow> =
        diesel::sql_query("PRAGMA integrity_check").load(&mut conn).map_err(|e| failed(e.to_string()))?;
    match rows.as_slice() {
        [row] if row.integrity_check == "ok" => Ok(()),
        rows => Err(failed(rows.iter().map(|r| r.integrity_check.as_str()).collect::<Vec<_>>().join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_made_checked_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("shop.sqlite");
        let url = db.to_str().unwrap();
        diagnose::probe(url).unwrap();
        let mut conn = SqliteConnection::establish(url).unwrap();
        conn.batch_execute("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('it''s here');").unwrap();
        let to = dir.path().join("copy's.sqlite");
        let report = sqlite(url, &to).unwrap();
        assert!(report.bytes > 0 && report.path == to);
        let mut copy = SqliteConnection::establish(to.to_str().unwrap()).unwrap();
        #[derive(QueryableByName)]
        struct X {
            #[diesel(sql_type = Text)]
            x: String,
        }
        let rows: Vec<X> = diesel::sql_query("SELECT x FROM t").load(&mut copy).unwrap();
        assert_eq!(rows[0].x, "it's here");
        assert!(matches!(sqlite(url, &to), Err(BackupError::Exists(_))));
        let missing = dir.path().join("none.sqlite");
        assert!(matches!(sqlite(missing.to_str().unwrap(), &dir.path().join("b")), Err(BackupError::NoSource(_))));
    }
}
