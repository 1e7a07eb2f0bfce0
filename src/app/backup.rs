//! `wechat-checkout backup --to FILE`: on SQLite an online, checked copy while the server keeps
//! serving (see `db::backup`); on PostgreSQL the `pg_dump` and `pg_restore` commands to run,
//! since the database server's own tool does this better than we could.

use std::path::Path;

use rocket::figment::Figment;

use super::StartError;
use crate::config::AppConfig;
use crate::db::{self, Backend};

/// What `backup` did, for the terminal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A SQLite copy, checked.
    Copied { path: String, bytes: u64 },
    /// PostgreSQL: what to run instead (the URL without its password).
    Instructions(String),
}

pub fn run(figment: &Figment, to: &Path) -> Result<Outcome, StartError> {
    let config = AppConfig::load(figment)?;
    let url = config.database_url.expose();
    match Backend::of_url(url) {
        Backend::Postgres => Ok(Outcome::Instructions(pg_dump_instructions(&config.database_url.redacted(), to))),
        Backend::Sqlite => match db::backup::sqlite(url, to) {
            Ok(report) => Ok(Outcome::Copied { path: report.path.display().to_string(), bytes: report.bytes }),
            Err(db::backup::BackupError::Source(failure)) => Err(super::database_error(&config, failure.into())),
            Err(e @ db::backup::BackupError::NoSource(_)) => Err(StartError::Database(format!("DATABASE_URL: {e}"))),
            Err(e) => Err(StartError::Other(format!("backup: {e}"))),
        },
    }
}

/// The commands an operator runs for PostgreSQL; the password is theirs to supply (`PGPASSWORD`
/// or `~/.pgpass`), never printed.
fn pg_dump_instructions(redacted_url: &str, to: &Path) -> String {
    let file = to.display();
    format!(
        "DATABASE_URL is PostgreSQL: back it up with the server's own tool (nothing was done). Run\n\n  \
         pg_dump --format=custom --file={file} \"{redacted_url}\"\n\n\
         with the password in PGPASSWORD or ~/.pgpass (*** stands for it above). To restore, into an \
         empty database with every instance stopped:\n\n  \
         pg_restore --no-owner --dbname=\"{redacted_url}\" {file}\n\n\
         See docs/operations-backup.md."
    )
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Copied { path, bytes } => {
                write!(f, "backup written to {path} ({bytes} bytes), integrity check ok")
            }
            Outcome::Instructions(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pg_dump_command_carries_no_password() {
        let url = crate::config::DatabaseUrl::new("postgres://shop:s3cret@db.internal:5432/pay");
        let text = pg_dump_instructions(&url.redacted(), Path::new("pay.dump"));
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("pg_dump --format=custom --file=pay.dump \"postgres://shop:***@db.internal:5432/pay\""));
        assert!(text.contains("pg_restore "), "{text}");
    }
}
