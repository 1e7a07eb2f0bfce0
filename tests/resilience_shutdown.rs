//! SIGTERM under notify load acknowledges a notify only after its commit, and the process exits
//! within its documented grace: a real app process (jobs on, the repository's Rocket.toml) takes
//! 32 notifies at a time and is sent SIGTERM while they flow. It must exit cleanly within the
//! bound Rocket.toml documents (plus a generous margin: this is liveness, not speed), and after a
//! restart on the same database every notify answered SUCCESS, before or after the signal, is
//! PAID and nothing is half-written (see `check_recorded`); a notify cut off without an answer
//! may or may not be paid, and WeChat's retry of it is acked once the app is back. 2 rounds per
//! backend, 10 with `SOAK=1`; on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::app::TestDb;
use common::notify_load::{
    LoadOrder, NotifyLoad, check_recorded, create_orders, interleave, on_each_backend, sqlite_integrity_check,
};
use common::process::Instance;
use common::{fast_config, start_simulator};
use rand::RngExt;
use wechat_checkout::db::Db;

/// The exit bound documented in Rocket.toml: the shutdown fairing waits up to 10 s for the jobs,
/// Rocket's `grace` (2 s) + `mercy` (3 s) + 1 s run meanwhile, and the runtime gets 0.5 s more.
const DOCUMENTED_EXIT: Duration = Duration::from_millis(10_500);
/// Slack for a loaded two-core machine: the property is that the process exits, not how fast.
const MARGIN: Duration = Duration::from_secs(10);
const ORDERS_PER_ROUND: usize = 300;

fn rounds() -> usize {
    if std::env::var("SOAK").is_ok_and(|v| v == "1") { 10 } else { 2 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_notify_load_acks_only_committed_notifies_and_exits_in_grace() {
    let label = format!("{} rounds", rounds());
    on_each_backend(&label, |db, dir| async move { shutdown_rounds(&db, &dir).await }).await;
}

/// The app as deployed: the repository's Rocket.toml (its shutdown settings are what is under
/// test; the environment still sets the port), and the background jobs on, so that their
/// shutdown fairing is part of the exit. Nothing is due for them: no order here has a prepay.
async fn start(name: &str, db: &TestDb, api_base: &str, dir: &Path) -> Instance {
    let extra =
        [("ROCKET_CONFIG", concat!(env!("CARGO_MANIFEST_DIR"), "/Rocket.toml").to_owned()), ("JOBS", "on".to_owned())];
    Instance::spawn_launched(name, &db.url(), api_base, api_base, &extra, dir).await
}

async fn shutdown_rounds(test_db: &TestDb, dir: &Path) {
    let sim = start_simulator(fast_config()).await;
    let api_base = sim.api_base();
    let db = Db::connect(&test_db.url(), 2).unwrap();
    let mut all: Vec<LoadOrder> = Vec::new();
    let mut acks: HashMap<String, usize> = HashMap::new();
    let mut retries: Vec<LoadOrder> = Vec::new();
    let mut instance = start("app-0", test_db, &api_base, dir).await;
    let mut answered_after_term = 0;
    for round in 0..rounds() {
        let fresh = create_orders(&instance.base_url, &format!("TERM-{round}"), ORDERS_PER_ROUND).await;
        all.extend(fresh.iter().cloned());
        let orders = interleave(std::mem::take(&mut retries), fresh);
        let load = NotifyLoad::start(&instance.base_url, orders);

        let (after_acks, jitter_us) = {
            let mut rng = rand::rng();
            (rng.random_range(1..=ORDERS_PER_ROUND / 2), rng.random_range(0..5_000))
        };
        assert!(load.until_acked(after_acks).await, "the load ran out of orders before SIGTERM");
        tokio::time::sleep(Duration::from_micros(jitter_us)).await;
        let at_term = load.progress();
        let signalled = Instant::now();
        instance.terminate();
        let status = instance.exit_within(DOCUMENTED_EXIT + MARGIN).await;
        let exit_time = signalled.elapsed();
        let status = status.unwrap_or_else(|| {
            panic!("no exit {exit_time:?} after SIGTERM (documented: {DOCUMENTED_EXIT:?}):\n{}", instance.log_text())
        });
        let outcomes = load.stop().await;
        let after = outcomes.acked.len() + outcomes.failed.len() - at_term.acked - at_term.failed;
        answered_after_term += after;
        eprintln!(
            "round {round}: SIGTERM after {} acks: exit {status} in {exit_time:?}; {after} answered after the \
             signal; {} acked, {} failed, {} unanswered, {} not sent",
            at_term.acked,
            outcomes.acked.len(),
            outcomes.failed.len(),
            outcomes.unanswered.len(),
            outcomes.not_sent.len()
        );
        assert!(status.success(), "SIGTERM is a clean exit, not {status}:\n{}", instance.log_text());
        // A notify still waiting for its commit is cut off, never answered FAIL or SUCCESS early.
        assert!(outcomes.failed.is_empty(), "FAIL answers: {:?}", outcomes.failed);
        for no in &outcomes.acked {
            *acks.entry(no.clone()).or_default() += 1;
        }

        drop(instance);
        instance = start(&format!("app-{}", round + 1), test_db, &api_base, dir).await;
        let recorded = check_recorded(&db, &all, &acks);
        eprintln!("round {round}: after restart {recorded:?}");
        if let TestDb::Sqlite(path) = test_db {
            assert_eq!(sqlite_integrity_check(&path.to_string_lossy()), "ok");
        }
        let not_acked: HashSet<String> = outcomes.not_acked().into_iter().collect();
        retries = all.iter().filter(|o| not_acked.contains(&o.out_trade_no)).cloned().collect();
    }
    // The requests in flight at the signal were let finish, not dropped: graceful, not abrupt.
    assert!(answered_after_term > 0, "no notify in flight at SIGTERM was answered");

    // WeChat's retries once the app is back: each is acked, and every order is PAID.
    let outcomes = NotifyLoad::start(&instance.base_url, std::mem::take(&mut retries)).stop_when_done().await;
    assert!(outcomes.not_acked().is_empty(), "{outcomes:?}");
    for no in &outcomes.acked {
        *acks.entry(no.clone()).or_default() += 1;
    }
    assert_eq!(check_recorded(&db, &all, &acks).paid, all.len(), "every order is PAID after WeChat's retries");
    instance.stop();
    sim.shutdown().await;
}
