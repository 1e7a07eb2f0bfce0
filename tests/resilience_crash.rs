//! kill -9 at a random moment under notify load loses no acknowledged payment and half-writes
//! nothing: a real app process takes 32 notifies at a time and is killed outright while they
//! flow, then restarted on the same database, round after round with fresh orders (and WeChat's
//! retries of the notifies the crash left unanswered). After each restart every notify that was
//! answered SUCCESS is PAID, each PAID order has its transaction id, paid amount, one paid
//! transition and one `paid` delivery in notify_log, no unpaid order carries any of them, and a
//! SQLite file passes `PRAGMA integrity_check`. 3 rounds per backend, 20 with `SOAK=1`; on SQLite,
//! and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::app::{API_TOKEN, TestDb};
use common::notify_load::{
    LoadOrder, NotifyLoad, check_recorded, create_orders, interleave, on_each_backend, sqlite_integrity_check,
    verify_recorded,
};
use common::process::Instance;
use common::{fast_config, start_simulator};
use rand::RngExt;
use serde_json::Value;
use wechat_checkout::db::Db;

/// Fresh orders per round: enough that the load is still running when the kill comes.
const ORDERS_PER_ROUND: usize = 300;

fn rounds() -> usize {
    if std::env::var("SOAK").is_ok_and(|v| v == "1") { 20 } else { 3 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_notify_load_loses_no_acknowledged_payment() {
    let label = format!("{} rounds", rounds());
    on_each_backend(&label, |db, dir| async move { crash_rounds(&db, &dir).await }).await;
}

/// The app alone on the notify path: no jobs, so that only notifies can pay an order.
async fn start(name: &str, db: &TestDb, api_base: &str, dir: &Path) -> Instance {
    Instance::spawn_launched(name, &db.url(), api_base, api_base, &[("JOBS", "off".to_owned())], dir).await
}

async fn crash_rounds(test_db: &TestDb, dir: &Path) {
    // WeChat's API is never called with the jobs off; the simulator only gives it an address.
    let sim = start_simulator(fast_config()).await;
    let api_base = sim.api_base();
    let db = Db::connect(&test_db.url(), 2).unwrap();
    let mut all: Vec<LoadOrder> = Vec::new();
    let mut acks: HashMap<String, usize> = HashMap::new();
    let mut retries: Vec<LoadOrder> = Vec::new();
    let mut instance = start("app-0", test_db, &api_base, dir).await;
    for round in 0..rounds() {
        let fresh = create_orders(&instance.base_url, &format!("CRASH-{round}"), ORDERS_PER_ROUND).await;
        all.extend(fresh.iter().cloned());
        // WeChat notifies again what the last crash left unacknowledged, among the new payments.
        let orders = interleave(std::mem::take(&mut retries), fresh);
        let load = NotifyLoad::start(&instance.base_url, orders);

        // A random moment while notifies are being answered and more are in flight.
        let (after_acks, jitter_us) = {
            let mut rng = rand::rng();
            (rng.random_range(1..=ORDERS_PER_ROUND / 2), rng.random_range(0..5_000))
        };
        assert!(load.until_acked(after_acks).await, "the load ran out of orders before the kill");
        tokio::time::sleep(Duration::from_micros(jitter_us)).await;
        instance.kill_hard();
        let at_kill = load.progress();
        let status = instance.exit_within(Duration::from_secs(10)).await.expect("SIGKILL ends the process");
        assert!(!status.success(), "{status}");
        let outcomes = load.stop().await;
        eprintln!(
            "round {round}: killed after {} acks (+{jitter_us} µs): {:?} at the kill; {} acked, {} failed, {} unanswered",
            after_acks,
            at_kill,
            outcomes.acked.len(),
            outcomes.failed.len(),
            outcomes.unanswered.len()
        );
        // The process died with notifies in flight or queued: some got no answer.
        assert!(!outcomes.unanswered.is_empty(), "the kill came after the load");
        assert!(outcomes.failed.is_empty(), "nothing should answer FAIL here: {:?}", outcomes.failed);
        for no in &outcomes.acked {
            *acks.entry(no.clone()).or_default() += 1;
        }

        // Restart on the same database, then check everything the crashed process touched.
        drop(instance);
        instance = start(&format!("app-{}", round + 1), test_db, &api_base, dir).await;
        let recorded = check_recorded(&db, &all, &acks);
        eprintln!("round {round}: after restart {recorded:?}");
        assert_paid_through_api(&mut instance, &outcomes.acked).await;
        if let TestDb::Sqlite(path) = test_db {
            assert_eq!(sqlite_integrity_check(&path.to_string_lossy()), "ok");
        }
        let not_acked: std::collections::HashSet<String> = outcomes.not_acked().into_iter().collect();
        retries = all.iter().filter(|o| not_acked.contains(&o.out_trade_no)).cloned().collect();
    }

    // WeChat's last retries, with nobody killing the app: each is acked and then all are PAID.
    let load = NotifyLoad::start(&instance.base_url, std::mem::take(&mut retries));
    let outcomes = load.stop_when_done().await;
    assert!(outcomes.not_acked().is_empty(), "{outcomes:?}");
    for no in &outcomes.acked {
        *acks.entry(no.clone()).or_default() += 1;
    }
    let recorded = check_recorded(&db, &all, &acks);
    assert_eq!(recorded.paid, all.len(), "every order is PAID once WeChat's retries got through");
    instance.stop();
    sim.shutdown().await;
}

/// The restarted app itself reports every acked order PAID through the merchant API.
async fn assert_paid_through_api(instance: &mut Instance, acked: &[String]) {
    let http = reqwest::Client::new();
    for no in acked {
        let res = http.get(instance.url(&format!("/api/v1/orders/{no}"))).bearer_auth(API_TOKEN).send().await;
        let order: Value = match res {
            Ok(res) => res.json().await.unwrap(),
            Err(e) => {
                let exited = instance.exit_within(Duration::ZERO).await;
                panic!("{no}: {e}; the app has exited: {exited:?}; its log:\n{}", instance.log_text())
            }
        };
        assert_eq!(order["state"], "PAID", "{no} was acked: {order}");
    }
}

/// The check the crash rounds rely on can fail: on a real database it refuses an acked order left unpaid, a PAID
/// order without its paid transition, and an unpaid order carrying a transaction id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_refuses_what_a_bad_crash_would_leave() {
    use diesel::prelude::*;
    use wechat_checkout::db::schema::{order_events as e, orders as o};

    let app = common::app::TestApp::sqlite().await;
    let orders = create_orders(&app.base_url, "CHECK", 3).await;
    let (paid, unpaid, spare) = (&orders[0], &orders[1], &orders[2]);
    let outcomes = NotifyLoad::start(&app.base_url, vec![paid.clone(), spare.clone()]).stop_when_done().await;
    assert_eq!(outcomes.acked.len(), 2, "{outcomes:?}");
    let db = app.db_handle();
    let acks: HashMap<String, usize> = outcomes.acked.iter().map(|no| (no.clone(), 1)).collect();
    assert_eq!(check_recorded(&db, &orders, &acks).paid, 2, "a sound database passes");
    let refused = |acks: &HashMap<String, usize>| verify_recorded(&db, &orders, acks).is_err();

    let mut acked_unpaid = acks.clone();
    acked_unpaid.insert(unpaid.out_trade_no.clone(), 1);
    assert!(refused(&acked_unpaid), "an acked order that is not PAID");

    let mut conn = db.conn().unwrap();
    diesel::update(o::table.find(&unpaid.out_trade_no))
        .set(o::transaction_id.eq(Some(unpaid.transaction_id.clone())))
        .execute(&mut conn)
        .unwrap();
    assert!(refused(&acks), "an unpaid order with a transaction id");
    diesel::update(o::table.find(&unpaid.out_trade_no))
        .set(o::transaction_id.eq(None::<String>))
        .execute(&mut conn)
        .unwrap();
    assert!(!refused(&acks), "sound again");

    diesel::delete(e::table.filter(e::out_trade_no.eq(&paid.out_trade_no)).filter(e::kind.eq("payment_confirmed")))
        .execute(&mut conn)
        .unwrap();
    assert!(refused(&acks), "a PAID order without its paid transition");
    app.stop().await;
}
