//! `Simulator`: the cheap, cloneable handle to the shared state (config, state mutex, fault
//! dice, notify HTTP client, background-task generation) and the small methods tests call.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::SimulatorError;
use super::config::{Faults, SimMerchant, SimulatorConfig, check_time_factor, scale};
use super::faults::{ApiFaults, FaultDice, NotifyPlan};
use super::model::{NotifyAttempt, SimOrderView};
use super::state::{SimState, write_atomically};

/// A fake WeChat Pay: cloning is cheap and every clone sees the same state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    config: SimulatorConfig,
    state: Mutex<SimState>,
    dice: Mutex<FaultDice>,
    http: reqwest::Client,
    /// Bumped by reset and shutdown: background tasks of an older generation stop.
    generation: watch::Sender<u64>,
    /// Sequence of state changes, and the last one written to the state file.
    change_seq: AtomicU64,
    written_seq: Mutex<u64>,
    /// Notify jobs a task is delivering right now.
    active_jobs: Mutex<HashSet<u64>>,
    /// `config.time_factor` until the control API changes it.
    time_factor: Mutex<f64>,
}

/// A running delivery's hold on its job; released when the task ends (or is dropped).
pub(crate) struct JobClaim {
    sim: Simulator,
    id: u64,
}

impl Drop for JobClaim {
    fn drop(&mut self) {
        lock(&self.sim.inner.active_jobs).remove(&self.id);
    }
}

/// The simulated clock at a given offset from the real one.
pub(crate) fn clock(offset_ms: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::milliseconds(offset_ms)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge the simulator: the state is still consistent enough for a
    // test double, since every change is made in one critical section.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Simulator {
    /// Builds a simulator, loading `state_file` when it exists.
    pub fn new(config: SimulatorConfig) -> Result<Simulator, SimulatorError> {
        config.validate()?;
        let state = match &config.state_file {
            Some(path) => SimState::load(path)?,
            None => SimState::default(),
        };
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.notify_timeout)
            .connect_timeout(config.notify_timeout)
            .user_agent("Mozilla/4.0 (WeChat Pay notify; wechat-checkout simulator)")
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SimulatorError::Config(format!("notify HTTP client: {e}")))?;
        let dice = FaultDice::new(config.faults.clone(), config.seed);
        let time_factor = Mutex::new(config.time_factor);
        Ok(Simulator {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(state),
                dice: Mutex::new(dice),
                http,
                generation: watch::Sender::new(0),
                change_seq: AtomicU64::new(0),
                written_seq: Mutex::new(0),
                active_jobs: Mutex::new(HashSet::new()),
                time_factor,
            }),
        })
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.inner.config
    }

    /// Replaces the fault settings (rates outside 0..=1 are clamped when rolled).
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.inner.dice).faults = faults;
    }

    pub fn faults(&self) -> Faults {
        lock(&self.inner.dice).faults.clone()
    }

    /// Starts the fault dice over from `seed`, keeping the current faults: a run that sets its
    /// own seed replays the same draws (as far as the order of the calls is the same).
    pub fn reseed(&self, seed: u64) {
        let mut dice = lock(&self.inner.dice);
        *dice = FaultDice::new(dice.faults.clone(), Some(seed));
    }

    /// The time factor in force (see [`SimulatorConfig::time_factor`]).
    pub fn time_factor(&self) -> f64 {
        *lock(&self.inner.time_factor)
    }

    /// Changes the time factor for notify retries and refund settlements scheduled from now on
    /// (a mounted simulator has no other way to get one, its config being the app's).
    pub fn set_time_factor(&self, factor: f64) -> Result<(), String> {
        check_time_factor(factor)?;
        *lock(&self.inner.time_factor) = factor;
        Ok(())
    }

    /// Scales a delay of the real service by the time factor in force.
    pub(crate) fn scaled(&self, d: Duration) -> Duration {
        scale(d, self.time_factor())
    }

    /// The simulated clock: real time plus the offset `advance_clock` accumulated.
    pub fn now(&self) -> DateTime<Utc> {
        clock(self.read(|s| s.clock_offset_ms))
    }

    /// Moves the simulated clock forward (orders age, codes expire, bills become available).
    /// Notify retries and refund settlement run on real (scaled) time and are not hurried.
    pub fn advance_clock(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.write(|s| s.clock_offset_ms = s.clock_offset_ms.saturating_add(ms));
    }

    /// A snapshot of the order with this out_trade_no (under any configured merchant).
    pub fn order(&self, out_trade_no: &str) -> Option<SimOrderView> {
        self.read(|s| {
            let mut matches: Vec<_> = s.orders.values().filter(|o| o.out_trade_no == out_trade_no).collect();
            matches.sort_by(|a, b| a.mch_id.cmp(&b.mch_id));
            matches.first().map(|o| o.view(&s.notify_log))
        })
    }

    /// Every notify attempt so far, oldest first.
    pub fn notify_log(&self) -> Vec<NotifyAttempt> {
        self.read(|s| s.notify_log.clone())
    }

    /// Forgets every order, refund, code and notify, resets the clock, the faults and the time
    /// factor, and stops pending deliveries and refund settlements. The v3 platform keys stay:
    /// merchants keep the certificates they downloaded, as they would across a real day.
    pub fn reset(&self) {
        self.inner.generation.send_modify(|g| *g += 1);
        self.write(|s| {
            let platform = s.v3_platform.take();
            *s = SimState::default();
            s.v3_platform = platform;
        });
        *lock(&self.inner.dice) = FaultDice::new(self.inner.config.faults.clone(), self.inner.config.seed);
        *lock(&self.inner.time_factor) = self.inner.config.time_factor;
    }

    /// Stops background work (pending notifies and refund settlements) for good.
    pub(crate) fn stop_background(&self) {
        self.inner.generation.send_modify(|g| *g += 1);
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The appids bound to a mch_id, Official Accounts and Mini Programs (they share its API key).
    pub(crate) fn merchants_for_mch(&self, mch_id: &str) -> Vec<&SimMerchant> {
        let config = &self.inner.config;
        config.merchants.iter().chain(&config.mini_programs).filter(|m| m.mch_id == mch_id).collect()
    }

    /// The API key of a mch_id.
    pub(crate) fn api_key_for(&self, mch_id: &str) -> Option<crate::wxpay::sign::ApiKey> {
        self.merchants_for_mch(mch_id).first().map(|m| m.api_key.clone())
    }

    pub(crate) fn roll_api(&self) -> ApiFaults {
        lock(&self.inner.dice).roll_api()
    }

    pub(crate) fn roll_notify(&self) -> NotifyPlan {
        lock(&self.inner.dice).roll_notify()
    }

    pub(crate) fn roll_signtest(&self) -> bool {
        lock(&self.inner.dice).roll_signtest()
    }

    /// Reads the state. Never call `.await` inside `f`.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&SimState) -> R) -> R {
        f(&lock(&self.inner.state))
    }

    /// Changes the state, then saves it when a state file is configured.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> R {
        let (result, snapshot) = {
            let mut state = lock(&self.inner.state);
            let result = f(&mut state);
            let seq = self.inner.change_seq.fetch_add(1, Ordering::SeqCst) + 1;
            let snapshot = self.inner.config.state_file.as_ref().map(|_| (seq, state.to_json()));
            (result, snapshot)
        };
        if let (Some((seq, json)), Some(path)) = (snapshot, &self.inner.config.state_file) {
            let mut written = lock(&self.inner.written_seq);
            // A newer snapshot may have overtaken this one between the two locks.
            if seq > *written {
                match json
                    .map_err(|e| e.to_string())
                    .and_then(|j| write_atomically(path, &j).map_err(|e| e.to_string()))
                {
                    Ok(()) => *written = seq,
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "simulator: cannot save state"),
                }
            }
        }
        result
    }

    /// The current background generation.
    pub(crate) fn generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }

    /// Sleeps `d` (real time); false when the simulator was reset or stopped meanwhile.
    pub(crate) async fn sleep_unless_stopped(&self, d: Duration, generation: u64) -> bool {
        let mut rx = self.inner.generation.subscribe();
        if *rx.borrow_and_update() != generation {
            return false;
        }
        let stopped = tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = rx.wait_for(|g| *g != generation) => true,
        };
        !stopped && self.generation() == generation
    }

    /// Claims a notify job for one delivery task; None when a task already delivers it.
    pub(crate) fn claim_job(&self, id: u64) -> Option<JobClaim> {
        lock(&self.inner.active_jobs).insert(id).then(|| JobClaim { sim: self.clone(), id })
    }

    /// Runs a background task on the current tokio runtime, if there is one.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(task);
            }
            Err(_) => tracing::warn!("simulator: no tokio runtime, background work skipped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clock_advances_and_reset_rewinds_it() {
        let sim = Simulator::new(SimulatorConfig::default()).unwrap();
        let before = sim.now();
        sim.advance_clock(Duration::from_secs(3600));
        let after = sim.now();
        assert!(after - before >= chrono::Duration::seconds(3600));
        let gen0 = sim.generation();
        sim.reset();
        assert!(sim.now() - before < chrono::Duration::seconds(60));
        assert_ne!(sim.generation(), gen0);
        assert!(!sim.sleep_unless_stopped(Duration::from_millis(1), gen0).await);
        assert!(sim.sleep_unless_stopped(Duration::from_millis(1), sim.generation()).await);
    }

    #[test]
    fn the_time_factor_changes_at_run_time_and_reset_restores_it() {
        let sim = Simulator::new(SimulatorConfig::default()).unwrap();
        assert_eq!(sim.scaled(Duration::from_secs(15)), Duration::from_secs(15));
        sim.set_time_factor(0.001).unwrap();
        assert_eq!(sim.scaled(Duration::from_secs(15)), Duration::from_millis(15));
        assert!(sim.set_time_factor(0.0).is_err() && sim.set_time_factor(f64::NAN).is_err());
        assert_eq!(sim.time_factor(), 0.001, "a refused factor changes nothing");
        sim.reset();
        assert_eq!(sim.time_factor(), 1.0);
    }
}
