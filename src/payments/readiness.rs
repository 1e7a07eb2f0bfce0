//! What `/readyz` checks before a load balancer sends this instance traffic: the database answers
//! and takes writes, its schema is the one this binary expects, the notify writer threads run,
//! and the background jobs (when this instance runs them) run and none is stuck in a pass.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Payments;
use super::liveness::WorkerState;

/// Each check's word, and whether all of them pass.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// `ok`, `unreachable` or `writes_failing`.
    pub database: &'static str,
    /// `current`, `pending` (with their names in `pending_migrations`) or `unknown` (the
    /// database could not say).
    pub migrations: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_migrations: Vec<String>,
    /// The worst state of the writer threads: `ok`, `stuck` or `stopped`.
    pub notify_writer: &'static str,
    /// `ok`, `off` (this instance runs none), `starting`, `stuck` or `stopped`: the worst job.
    pub jobs: &'static str,
    /// Each job's own state, when they run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub job_states: BTreeMap<String, &'static str>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.database == "ok"
            && self.migrations == "current"
            && self.notify_writer == "ok"
            && matches!(self.jobs, "ok" | "off")
    }
}

impl Payments {
    /// Runs every check; the details of a failure are logged here, the answer (public) says only
    /// which check fails.
    pub async fn readiness(&self) -> Readiness {
        let database = match self.check_database().await {
            Ok(()) => "ok",
            Err(down) => down.as_str(),
        };
        let pending = if database == "ok" { Some(self.db.pending_migrations().await) } else { None };
        let (migrations, pending_migrations) = match pending {
            None => ("unknown", Vec::new()),
            Some(Ok(pending)) if pending.is_empty() => ("current", pending),
            Some(Ok(pending)) => {
                tracing::warn!(?pending, "readiness: migrations are pending (run `wechat-checkout migrate`)");
                ("pending", pending)
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the applied migrations could not be read");
                ("unknown", Vec::new())
            }
        };
        let writers = self.liveness.states("notify-writer");
        let notify_writer = if writers.is_empty() { "stopped" } else { worst(writers.iter().map(|(_, s)| s)) };
        let jobs_running = self.liveness.states("job:");
        let jobs = match () {
            _ if !self.config.jobs.enabled => "off",
            _ if jobs_running.is_empty() => "starting",
            _ => worst(jobs_running.iter().map(|(_, s)| s)),
        };
        for (name, state) in writers.iter().chain(&jobs_running).filter(|(_, s)| *s != WorkerState::Ok) {
            tracing::warn!(worker = %name, state = ?state, "readiness: a worker is not running normally");
        }
        let job_states = jobs_running
            .iter()
            .map(|(name, state)| (name.trim_start_matches("job:").to_owned(), state.as_str()))
            .collect();
        Readiness { database, migrations, pending_migrations, notify_writer, jobs, job_states }
    }
}

/// `stopped` over `stuck` over `ok`.
fn worst<'a>(states: impl Iterator<Item = &'a WorkerState>) -> &'static str {
    states
        .max_by_key(|s| match s {
            WorkerState::Ok => 0,
            WorkerState::Stuck { .. } => 1,
            WorkerState::Stopped => 2,
        })
        .map_or("ok", WorkerState::as_str)
}
