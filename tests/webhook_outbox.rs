//! The webhook outbox: an `order.paid` event exists if and only if the payment it announces
//! committed. It is written by the payment's own transaction (so a rolled-back payment leaves
//! none, and a committed one has it before any job runs), and a process killed between the
//! commit and the delivery still delivers it after a restart, once, signed.

mod common;

use std::time::Duration;

use common::app::{TestApp, TestDb, on_every_backend_with, test_figment};
use common::merchant_endpoint::receiver;
use common::process::{Instance, checkout, create_order, eventually};
use common::{fast_config, start_simulator};
use rocket::figment::Figment;
use wechat_checkout::config::AppConfig;
use wechat_checkout::db::{Db, DbError, webhooks};
use wechat_checkout::domain::webhook::WebhookState;
use wechat_checkout::domain::{Fen, OrderState, PaymentFacts, PaymentSource};
use wechat_checkout::jobs::signature;
use wechat_checkout::payments::apply::confirm_payment;
use wechat_checkout::payments::outbox::WebhookOutbox;
use wechat_checkout::simulator::Outcome;

const SECRET: &str = "whsec-outbox-0123456789abcdef";

/// Webhooks to a local URL, so private addresses are allowed.
fn with_webhooks(f: Figment) -> Figment {
    f.merge(("webhook_secret", SECRET))
        .merge(("webhook_url", "http://127.0.0.1:9/hooks"))
        .merge(("webhook_allow_private", "on"))
}

fn order_state(db: &Db, no: &str) -> OrderState {
    common::app::order_row(db, no).state
}

#[tokio::test]
async fn the_event_is_written_by_the_payments_own_transaction() {
    on_every_backend_with(
        |f, _| with_webhooks(f),
        |app: TestApp, _| async move {
            let (no, _) = app.paying_order("OUTBOX-1", 1990).await;
            let config = AppConfig::from_figment(with_webhooks(test_figment(1, &app.db.url()))).unwrap();
            let outbox = WebhookOutbox::new(std::sync::Arc::new(config));
            let facts = PaymentFacts {
                transaction_id: "4200000000202612020000000001".into(),
                total_fee: Fen::new(1990),
                paid_at: chrono::Utc::now(),
                source: PaymentSource::Notify,
            };
            let db = app.db_handle();

            // The payment is applied, then its transaction fails: neither the payment nor its event
            // is left behind.
            let (n, f, o) = (no.clone(), facts.clone(), outbox.clone());
            let rolled_back: Result<(), DbError> = db
                .write(move |c| {
                    confirm_payment(c, &n, &f, &o)?;
                    Err(DbError::Corrupt("rolled back on purpose".into()))
                })
                .await;
            assert!(rolled_back.is_err());
            assert_eq!(order_state(&db, &no), OrderState::Paying);
            assert!(webhooks::for_order(&mut db.conn().unwrap(), &no).unwrap().is_empty());

            // Committed: the order is PAID and its event is there, before any job has run.
            let (n, f, o) = (no.clone(), facts.clone(), outbox.clone());
            db.write(move |c| confirm_payment(c, &n, &f, &o)).await.unwrap();
            assert_eq!(order_state(&db, &no), OrderState::Paid);
            let events = webhooks::for_order(&mut db.conn().unwrap(), &no).unwrap();
            assert_eq!(events.len(), 1, "{events:?}");
            assert_eq!((events[0].event_type.as_str(), events[0].state), ("order.paid", WebhookState::Pending));
            let data: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
            assert_eq!((data["out_trade_no"].as_str(), data["state"].as_str()), (Some(no.as_str()), Some("PAID")));

            // The same confirmation again (a retried notify) announces nothing new.
            let (n, o) = (no.clone(), outbox.clone());
            db.write(move |c| confirm_payment(c, &n, &facts, &o)).await.unwrap();
            assert_eq!(webhooks::for_order(&mut db.conn().unwrap(), &no).unwrap().len(), 1);
            app
        },
    )
    .await;
}

/// Pays an order through a process that has no jobs (so nothing is delivered), kills it with
/// SIGKILL once the payment committed, and restarts on the same database with jobs on.
async fn crash_between_commit_and_delivery(db: &TestDb, dir: &std::path::Path) {
    let sim = start_simulator(fast_config()).await;
    let endpoint = receiver(0, Duration::ZERO).await;
    let settings = |jobs: &str| {
        vec![
            ("JOBS", jobs.to_owned()),
            ("JOB_TICK_MS", "50".to_owned()),
            ("WEBHOOK_URL", endpoint.url("/hooks")),
            ("WEBHOOK_SECRET", SECRET.to_owned()),
            ("WEBHOOK_ALLOW_PRIVATE", "on".to_owned()),
            ("WEBHOOK_SCHEDULE", "200ms,500ms,1s".to_owned()),
            ("BILL_DIR", dir.join("bills").display().to_string()),
            // Yesterday's bill is not what this test is about.
            ("RECONCILE_AT", "23:59".to_owned()),
        ]
    };
    let mut first = Instance::spawn("before-crash", &db.url(), &sim.api_base(), &sim.api_base(), &settings("off"), dir);
    first.wait_until_up().await;
    let no = create_order(&first, "CRASH-1", 2990).await;
    let prepay = checkout(&first, &no).await;
    sim.sim.pay(&prepay, Outcome::Ok).await.unwrap();

    let handle = Db::connect(&db.url(), 2).unwrap();
    eventually("the payment notify committed", &[&first], || order_state(&handle, &no) == OrderState::Paid).await;
    let events = webhooks::for_order(&mut handle.conn().unwrap(), &no).unwrap();
    assert_eq!(events.len(), 1, "the event was committed with the payment: {events:?}");
    assert_eq!((events[0].state, events[0].attempts), (WebhookState::Pending, 0));
    first.kill();
    assert!(endpoint.received().is_empty(), "nothing was delivered before the crash");

    let mut second =
        Instance::spawn("after-restart", &db.url(), &sim.api_base(), &sim.api_base(), &settings("on"), dir);
    second.wait_until_up().await;
    eventually("the webhook delivered after the restart", &[&second], || !endpoint.received().is_empty()).await;
    // A few more passes: the event is not sent twice.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let received = endpoint.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let header = &received[0].headers[&signature::HEADER.to_ascii_lowercase()];
    assert!(signature::verify(SECRET.as_bytes(), header, &received[0].body, chrono::Utc::now().timestamp(), 300));
    let event = received[0].json();
    assert_eq!(event["type"], "order.paid");
    assert_eq!(
        (event["data"]["out_trade_no"].as_str(), event["data"]["state"].as_str()),
        (Some(no.as_str()), Some("PAID"))
    );
    assert_eq!(event["id"].as_i64(), Some(events[0].id));
    let delivered = webhooks::find(&mut handle.conn().unwrap(), events[0].id).unwrap().unwrap();
    assert_eq!(delivered.state, WebhookState::Delivered);
    second.stop();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_payment_and_its_delivery_loses_no_webhook() {
    let dir = tempfile::tempdir().unwrap();
    crash_between_commit_and_delivery(&TestDb::sqlite(&dir), dir.path()).await;
    match TestDb::postgres() {
        Some(db) => {
            let pg_dir = tempfile::tempdir().unwrap();
            crash_between_commit_and_delivery(&db, pg_dir.path()).await;
            db.cleanup();
        }
        None => eprintln!("TEST_DATABASE_URL not set, PostgreSQL run skipped"),
    }
}
