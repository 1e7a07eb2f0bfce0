//! The database check: reachable (the same first connection and plain-words classification as
//! at start), and whether migrations are pending (`serve` applies them). A SQLite file that does
//! not exist yet is not created: only whether `serve` could create it is tried.

use super::{Line, Status};
use crate::app::open_database;
use crate::config::AppConfig;
use crate::db::diagnose;
use crate::db::{Backend, DbError};

const SUBJECT: &str = "database";

pub(super) async fn check(config: &AppConfig) -> Line {
    let url = config.database_url.expose();
    let backend = Backend::of_url(url);
    let shown = format!("{} at {}", diagnose::backend_label(backend), config.database_url.redacted());
    if backend == Backend::Sqlite && url != ":memory:" && !diagnose::sqlite_path(url).exists() {
        return match diagnose::sqlite_creatable(diagnose::sqlite_path(url)) {
            Ok(()) => Line::new(
                Status::Ok,
                SUBJECT,
                format!("{shown} does not exist yet; serve creates it and applies the migrations"),
            ),
            Err(failure) => fail(config, failure.into()),
        };
    }
    // Two connections at most: this is a look, not a server.
    let db = match open_database(config, 2) {
        Ok(db) => db,
        Err(e) => return Line::new(Status::Fail, SUBJECT, e.to_string()),
    };
    match db.pending_migrations().await {
        Ok(pending) if pending.is_empty() => Line::new(Status::Ok, SUBJECT, format!("{shown}, migrations current")),
        Ok(pending) => Line::new(
            Status::Ok,
            SUBJECT,
            format!(
                "{shown}, {} migration(s) pending ({}); serve (or `wechat-checkout migrate`) applies them",
                pending.len(),
                pending.join(", ")
            ),
        ),
        Err(e) => Line::new(Status::Fail, SUBJECT, format!("DATABASE_URL: {shown} answers, but: {e}")),
    }
}

fn fail(config: &AppConfig, e: DbError) -> Line {
    Line::new(Status::Fail, SUBJECT, crate::app::database_error(config, e).to_string())
}
