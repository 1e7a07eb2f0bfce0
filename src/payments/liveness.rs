//! Heartbeats of this process's long-running workers (the notify writer threads and the
//! background jobs), so `/readyz` can tell a worker that died or hangs from one that idles.
//!
//! A worker is registered when it starts, marks each unit of work (a notify batch, a job pass)
//! busy then idle, and is marked stopped when it ends, by a guard that also runs when it panics.
//! Busy for longer than its own bound means stuck: a notify batch waits at most seconds for its
//! connection, a job pass is bounded by its leases, and the reconciler of a large day may work
//! for many minutes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `/readyz` says about one worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// Waiting for work, or working for less than its bound.
    Ok,
    /// Working on one unit for longer than its bound.
    Stuck { busy_for: Duration },
    /// The worker ended (or panicked) while the process still runs.
    Stopped,
}

impl WorkerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            WorkerState::Ok => "ok",
            WorkerState::Stuck { .. } => "stuck",
            WorkerState::Stopped => "stopped",
        }
    }
}

struct Beat {
    busy_since: Option<Instant>,
    stopped: bool,
    stuck_after: Duration,
}

/// Every worker of the process by name (`notify-writer-0`, `job:poll`, …).
#[derive(Default)]
pub struct Liveness {
    workers: Mutex<BTreeMap<String, Beat>>,
}

impl Liveness {
    /// Registers a worker; the returned guard marks it stopped when dropped.
    pub fn register(self: &Arc<Self>, name: impl Into<String>, stuck_after: Duration) -> Heartbeat {
        let name = name.into();
        self.lock().insert(name.clone(), Beat { busy_since: None, stopped: false, stuck_after });
        Heartbeat { liveness: self.clone(), name }
    }

    /// Each registered worker whose name starts with `prefix`, with its state now.
    pub fn states(&self, prefix: &str) -> Vec<(String, WorkerState)> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, beat)| {
                let state = match beat.busy_since {
                    _ if beat.stopped => WorkerState::Stopped,
                    Some(since) if now.duration_since(since) > beat.stuck_after => {
                        WorkerState::Stuck { busy_for: now.duration_since(since) }
                    }
                    _ => WorkerState::Ok,
                };
                (name.clone(), state)
            })
            .collect()
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut Beat)) {
        if let Some(beat) = self.lock().get_mut(name) {
            change(beat);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Beat>> {
        // A panic while holding this lock cannot leave a beat half-written; carry on.
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One worker's handle on its heartbeat.
pub struct Heartbeat {
    liveness: Arc<Liveness>,
    name: String,
}

impl Heartbeat {
    /// Starts a unit of work; it ends when the returned guard is dropped (a panic included).
    pub fn busy(&self) -> Busy<'_> {
        self.liveness.update(&self.name, |b| b.busy_since = Some(Instant::now()));
        Busy(self)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.liveness.update(&self.name, |b| b.stopped = true);
    }
}

/// A unit of work in progress.
pub struct Busy<'a>(&'a Heartbeat);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.liveness.update(&self.0.name, |b| b.busy_since = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_ok_stuck_or_stopped() {
        let liveness = Arc::new(Liveness::default());
        let beat = liveness.register("job:poll", Duration::from_millis(30));
        assert_eq!(liveness.states("job:"), vec![("job:poll".to_owned(), WorkerState::Ok)]);
        {
            let _busy = beat.busy();
            assert_eq!(liveness.states("job:")[0].1, WorkerState::Ok);
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(liveness.states("job:")[0].1.as_str(), "stuck");
        }
        assert_eq!(liveness.states("job:")[0].1, WorkerState::Ok, "idle again once the pass ends");
        assert!(liveness.states("notify-writer").is_empty());
        drop(beat);
        assert_eq!(liveness.states("job:")[0].1, WorkerState::Stopped);
    }

    #[test]
    fn a_panicking_worker_is_seen_stopped() {
        let liveness = Arc::new(Liveness::default());
        let l = liveness.clone();
        let worker = std::thread::spawn(move || {
            let beat = l.register("notify-writer-0", Duration::from_secs(60));
            let _busy = beat.busy();
            panic!("a bug in the writer");
        });
        assert!(worker.join().is_err());
        assert_eq!(liveness.states("notify-writer"), vec![("notify-writer-0".to_owned(), WorkerState::Stopped)]);
    }
}
