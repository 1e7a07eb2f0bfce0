//! Why the database cannot be reached, in plain words. Before the pool is built, one direct
//! connection (with a short connect timeout) is made and its error classified, so a database
//! that is away at start gives one message an operator can act on, at once, instead of the
//! pool's retries for 15 s. `check-config` uses the same classification.

use std::fmt;
use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};

use super::Backend;

/// How long libpq waits for the server when the URL does not say (`connect_timeout`).
pub const CONNECT_TIMEOUT_SECS: u32 = 5;

/// What is wrong, as the operator should hear it (the variable and URL are added by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectProblem {
    Refused,
    UnknownHost(String),
    /// Password authentication failed, or the role does not exist; the server's words.
    AuthFailed(String),
    NoSuchDatabase(String),
    Timeout,
    /// SQLite: the directory that holds (or would hold) the file cannot be written.
    DirectoryNotWritable {
        dir: PathBuf,
        reason: String,
    },
    /// SQLite: the file exists but holds something else.
    NotADatabase(PathBuf),
    /// SQLite: the path names a directory.
    IsADirectory(PathBuf),
    /// Anything else, in the driver's words (one line).
    Other(String),
}

impl fmt::Display for ConnectProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectProblem::Refused => {
                f.write_str("connection refused (is the server running, and is the host and port right?)")
            }
            ConnectProblem::UnknownHost(host) => write!(f, "unknown host {host:?} (is the host name right?)"),
            ConnectProblem::AuthFailed(detail) => {
                write!(f, "authentication failed: {detail} (check the user name and password)")
            }
            ConnectProblem::NoSuchDatabase(name) => write!(
                f,
                "database {name:?} does not exist (create it, e.g. `createdb {name}`, or fix the database name)"
            ),
            ConnectProblem::Timeout => write!(
                f,
                "no answer within {CONNECT_TIMEOUT_SECS} s (is the host reachable, or is a firewall dropping the connection?)"
            ),
            ConnectProblem::DirectoryNotWritable { dir, reason } => write!(
                f,
                "the directory {} is not writable ({reason}); SQLite keeps the file and its -wal and -shm files there",
                dir.display()
            ),
            ConnectProblem::NotADatabase(path) => write!(f, "{} is not a SQLite database", path.display()),
            ConnectProblem::IsADirectory(path) => {
                write!(f, "{} is a directory; DATABASE_URL names the SQLite file", path.display())
            }
            ConnectProblem::Other(text) => f.write_str(text),
        }
    }
}

/// A failed first connection: which kind of database, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot connect to {}: {problem}", backend_label(*backend))]
pub struct ConnectFailure {
    pub backend: Backend,
    pub problem: ConnectProblem,
}

pub fn backend_label(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "PostgreSQL",
        Backend::Sqlite => "SQLite",
    }
}

/// Classifies libpq's error text (`connection to server at "h", port 5432 failed: FATAL: …`).
pub fn classify_postgres(message: &str) -> ConnectProblem {
    let lower = message.to_lowercase();
    if lower.contains("connection refused") {
        return ConnectProblem::Refused;
    }
    if let Some(host) = quoted_after(message, "could not translate host name ") {
        return ConnectProblem::UnknownHost(host);
    }
    if lower.contains("timeout expired") || lower.contains("timed out") {
        return ConnectProblem::Timeout;
    }
    if let Some(name) = quoted_after(message, "database ").filter(|_| lower.contains("does not exist")) {
        return ConnectProblem::NoSuchDatabase(name);
    }
    const AUTH: &[&str] = &[
        "password authentication failed",
        "authentication failed",
        "no password supplied",
        "no pg_hba.conf entry",
        "role \"",
    ];
    if AUTH.iter().any(|needle| lower.contains(needle)) {
        return ConnectProblem::AuthFailed(server_words(message));
    }
    ConnectProblem::Other(one_line(message))
}

/// The server's own sentence: what follows the last `FATAL:`, or the whole text.
fn server_words(message: &str) -> String {
    let tail = message.rsplit_once("FATAL:").map_or(message, |(_, t)| t);
    one_line(tail)
}

/// The first `"…"` after `prefix` in `message`.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// libpq's messages span lines (a hint on the second): one line for a terminal or a log.
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// The URL with `connect_timeout` added if it has none, so an unreachable host fails in seconds.
pub fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}connect_timeout={CONNECT_TIMEOUT_SECS}")
}

/// One direct connection, as the start of the app needs it: for SQLite the file (and its
/// directory) is created and WAL switched on, as [`super::Db::connect`] does.
pub fn probe(url: &str) -> Result<(), ConnectFailure> {
    match Backend::of_url(url) {
        Backend::Postgres => probe_postgres(url).map(drop),
        Backend::Sqlite => prepare_sqlite(url),
    }
}

pub(crate) fn probe_postgres(url: &str) -> Result<PgConnection, ConnectFailure> {
    PgConnection::establish(&with_connect_timeout(url))
        .map_err(|e| ConnectFailure { backend: Backend::Postgres, problem: classify_postgres(&e.to_string()) })
}

/// The file path a SQLite URL names (`sqlite://` stripped).
pub fn sqlite_path(url: &str) -> &Path {
    Path::new(url.strip_prefix("sqlite://").unwrap_or(url))
}

/// Creates the SQLite file's directory and the file, switching it to WAL (idempotent), with
/// each way that can fail put in words.
pub(crate) fn prepare_sqlite(url: &str) -> Result<(), ConnectFailure> {
    let fail = |problem| ConnectFailure { backend: Backend::Sqlite, problem };
    let path = sqlite_path(url);
    if url == ":memory:" {
        return Ok(());
    }
    if path.is_dir() {
        return Err(fail(ConnectProblem::IsADirectory(path.to_owned())));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(ConnectProblem::DirectoryNotWritable { dir: dir.to_owned(), reason: io_words(&e) }))?;
    let mut conn = SqliteConnection::establish(url).map_err(|e| fail(sqlite_problem(path, &e.to_string())))?;
    // WAL persists in the file; readers then never block the writer. This is also the first
    // statement that reads the file, so a file that is not a database fails here.
    conn.batch_execute("PRAGMA journal_mode = WAL;").map_err(|e| fail(sqlite_problem(path, &e.to_string())))
}

/// A SQLite error about `path` in words: a file that is not a database, or a directory where
/// the file (or its -wal/-shm) cannot be created.
pub(crate) fn sqlite_problem(path: &Path, message: &str) -> ConnectProblem {
    let lower = message.to_lowercase();
    if lower.contains("not a database") {
        return ConnectProblem::NotADatabase(path.to_owned());
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if (lower.contains("unable to open") || lower.contains("readonly") || lower.contains("read-only"))
        && let Err(e) = directory_writable(dir)
    {
        return ConnectProblem::DirectoryNotWritable { dir: dir.to_owned(), reason: io_words(&e) };
    }
    ConnectProblem::Other(format!("{}: {}", path.display(), one_line(message)))
}

/// Whether `serve` could create the SQLite file at `path` (which does not exist yet), without
/// creating it: the nearest existing ancestor must be a directory a file can be created in.
pub fn sqlite_creatable(path: &Path) -> Result<(), ConnectFailure> {
    let fail = |dir: &Path, reason: String| ConnectFailure {
        backend: Backend::Sqlite,
        problem: ConnectProblem::DirectoryNotWritable { dir: dir.to_owned(), reason },
    };
    let mut dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    while !dir.exists() {
        dir = dir.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    }
    if !dir.is_dir() {
        return Err(fail(dir, "it is a file, not a directory".into()));
    }
    directory_writable(dir).map_err(|e| fail(dir, io_words(&e)))
}

/// Whether a file can be created in `dir`: tried, since permissions alone do not tell (root,
/// read-only mounts, ACLs).
pub fn directory_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".wechat-checkout-write-test-{}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
    std::fs::remove_file(&probe)
}

/// An I/O error without the `(os error 13)` suffix.
fn io_words(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real libpq texts (PostgreSQL 15), as `PgConnection::establish` returns them.
    const REFUSED: &str = "connection to server at \"127.0.0.1\", port 5999 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\n";
    const NO_DB: &str =
        "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database \"shop\" does not exist\n";
    const NO_ROLE: &str =
        "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  role \"nobody\" does not exist\n";
    const BAD_PASSWORD: &str = "connection to server at \"db\" (10.0.0.5), port 5432 failed: FATAL:  password authentication failed for user \"app\"\n";
    const NO_HOST: &str = "could not translate host name \"nohost.invalid\" to address: Name or service not known\n";
    const TIMEOUT: &str = "connection to server at \"10.255.255.1\", port 5432 failed: timeout expired\n";
    const NO_PASSWORD: &str = "connection to server at \"db\", port 5432 failed: fe_sendauth: no password supplied\n";
    const HBA: &str = "connection to server at \"db\", port 5432 failed: FATAL:  no pg_hba.conf entry for host \"10.0.0.9\", user \"app\", database \"shop\", no encryption\n";

    #[test]
    fn libpq_errors_become_plain_words() {
        assert_eq!(classify_postgres(REFUSED), ConnectProblem::Refused);
        assert_eq!(classify_postgres(NO_DB), ConnectProblem::NoSuchDatabase("shop".into()));
        assert_eq!(classify_postgres(NO_HOST), ConnectProblem::UnknownHost("nohost.invalid".into()));
        assert_eq!(classify_postgres(TIMEOUT), ConnectProblem::Timeout);
        assert_eq!(
            classify_postgres(BAD_PASSWORD),
            ConnectProblem::AuthFailed("password authentication failed for user \"app\"".into())
        );
        assert_eq!(classify_postgres(NO_ROLE), ConnectProblem::AuthFailed("role \"nobody\" does not exist".into()));
        assert!(matches!(classify_postgres(NO_PASSWORD), ConnectProblem::AuthFailed(_)));
        // The pg_hba refusal names a database too; it is about who may connect, not a missing one.
        assert!(matches!(classify_postgres(HBA), ConnectProblem::AuthFailed(_)), "{:?}", classify_postgres(HBA));
        let other = classify_postgres("server closed the connection unexpectedly\n\tThis probably means…\n");
        assert_eq!(
            other,
            ConnectProblem::Other("server closed the connection unexpectedly; This probably means…".into())
        );
    }

    #[test]
    fn messages_say_what_to_do() {
        let failure = ConnectFailure { backend: Backend::Postgres, problem: ConnectProblem::Refused };
        assert_eq!(
            failure.to_string(),
            "cannot connect to PostgreSQL: connection refused (is the server running, and is the host and port right?)"
        );
        assert!(ConnectProblem::NoSuchDatabase("shop".into()).to_string().contains("createdb shop"));
    }

    #[test]
    fn a_connect_timeout_is_added_once() {
        assert_eq!(with_connect_timeout("postgres://h/db"), "postgres://h/db?connect_timeout=5");
        assert_eq!(
            with_connect_timeout("postgres://h/db?sslmode=off"),
            "postgres://h/db?sslmode=off&connect_timeout=5"
        );
        assert_eq!(with_connect_timeout("postgres://h/db?connect_timeout=2"), "postgres://h/db?connect_timeout=2");
    }

    #[test]
    fn sqlite_paths_that_cannot_work_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain.txt");
        std::fs::write(&file, "not a database, just some text that is long enough to be read as a header").unwrap();
        let under_file = file.join("shop.sqlite");
        let e = prepare_sqlite(under_file.to_str().unwrap()).unwrap_err();
        assert!(matches!(e.problem, ConnectProblem::DirectoryNotWritable { .. }), "{e}");
        let e = prepare_sqlite(file.to_str().unwrap()).unwrap_err();
        assert_eq!(e.problem, ConnectProblem::NotADatabase(file.clone()), "{e}");
        let e = prepare_sqlite(dir.path().to_str().unwrap()).unwrap_err();
        assert!(matches!(e.problem, ConnectProblem::IsADirectory(_)), "{e}");
        prepare_sqlite(dir.path().join("new/shop.sqlite").to_str().unwrap()).unwrap();
    }
}
