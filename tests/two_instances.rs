//! Two real app processes on one PostgreSQL database with the jobs on, as behind a load balancer:
//! the simulator drops every payment notify, so only the pollers can settle the orders, and every
//! order is made due at the same instant so that both pollers race for each one. Each
//! instance talks to WeChat through its own recording proxy, which holds every call a moment and
//! counts the calls in flight per order; the test shows no order was ever queried by both at
//! once, each order was confirmed once, each webhook went out once, and the day's
//! reconciliation ran once. Runs only when TEST_DATABASE_URL is set (`.ci/run` sets it).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::app::{TestDb, free_port};
use common::merchant_endpoint::{Receiver, receiver};
use common::process::{Instance, checkout, create_order, eventually};
use common::{fast_config, start_simulator};
use diesel::prelude::*;
use rocket::http::{ContentType, Status};
use rocket::{State, post, routes};
use wechat_checkout::db::{Db, schema};
use wechat_checkout::jobs::signature;
use wechat_checkout::simulator::{Faults, Outcome, SimulatorConfig};

const ORDERS: usize = 12;
const WEBHOOK_SECRET: &str = "whsec-two-instances-0123456789";
/// How long the proxy holds each call: long enough that two instances querying one order at
/// the same time would overlap at the proxy, where the overlap is counted.
const HOLD: Duration = Duration::from_millis(150);

// ---- The recording proxy between the instances and WeChat (the simulator) -------------------

#[derive(Default)]
struct Calls {
    /// (API path, order or bill date) → calls in flight now.
    in_flight: HashMap<(String, String), usize>,
    /// (API path, order or bill date) → the most calls ever in flight at once.
    max_in_flight: HashMap<(String, String), usize>,
    /// (instance, API path) → calls made.
    per_instance: BTreeMap<(String, String), usize>,
    /// (API path, order or bill date) → calls made.
    total: HashMap<(String, String), usize>,
}

type Recorder = Arc<Mutex<Calls>>;

struct Proxy {
    instance: String,
    upstream: String,
    http: reqwest::Client,
    calls: Recorder,
}

/// The text of one XML element of a request (CDATA or not).
fn xml_field(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + body[start..].find(&format!("</{name}>"))?;
    let text = &body[start..end];
    Some(text.trim_start_matches("<![CDATA[").trim_end_matches("]]>").to_owned())
}

#[post("/<path..>", data = "<body>")]
async fn forward(path: PathBuf, body: Vec<u8>, proxy: &State<Proxy>) -> (Status, (ContentType, Vec<u8>)) {
    let path = format!("/{}", path.display());
    let text = String::from_utf8_lossy(&body);
    let subject = xml_field(&text, "out_trade_no").or_else(|| xml_field(&text, "bill_date")).unwrap_or_default();
    let key = (path.clone(), subject);
    {
        let mut calls = proxy.calls.lock().unwrap();
        let now = {
            let n = calls.in_flight.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        let max = calls.max_in_flight.entry(key.clone()).or_default();
        *max = (*max).max(now);
        *calls.total.entry(key.clone()).or_default() += 1;
        *calls.per_instance.entry((proxy.instance.clone(), path.clone())).or_default() += 1;
    }
    tokio::time::sleep(HOLD).await;
    let reply = proxy.http.post(format!("{}{path}", proxy.upstream)).body(body).send().await;
    *proxy.calls.lock().unwrap().in_flight.get_mut(&key).unwrap() -= 1;
    match reply {
        Ok(r) => {
            let status = Status::from_code(r.status().as_u16()).unwrap_or(Status::BadGateway);
            let kind = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .and_then(ContentType::parse_flexible)
                .unwrap_or(ContentType::Binary);
            (status, (kind, r.bytes().await.map(|b| b.to_vec()).unwrap_or_default()))
        }
        Err(e) => (Status::BadGateway, (ContentType::Text, e.to_string().into_bytes())),
    }
}

/// Starts a proxy for one instance; returns its base URL.
async fn start_proxy(instance: &str, upstream: String, calls: Recorder) -> String {
    let port = free_port();
    let figment = rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("port", port))
        .merge(("log_level", "off"))
        .merge(("shutdown.ctrlc", false))
        .merge(("limits.bytes", "1 MiB"));
    let proxy = Proxy { instance: instance.to_owned(), upstream, http: reqwest::Client::new(), calls };
    let rocket = rocket::custom(figment).mount("/", routes![forward]).manage(proxy).ignite().await.unwrap();
    tokio::spawn(rocket.launch());
    format!("http://127.0.0.1:{port}")
}

// ---- The app processes ----------------------------------------------------------------------

fn spawn(name: &str, db_url: &str, api_base: &str, sim_base: &str, webhook_url: &str, dir: &Path) -> Instance {
    let extra = [
        ("JOBS", "on".to_owned()),
        // Nothing is due until the test makes every order due at once (see `make_all_due`).
        ("POLL_SCHEDULE", "1h".to_owned()),
        ("JOB_TICK_MS", "50".to_owned()),
        ("JOB_CONCURRENCY", "4".to_owned()),
        // Always past, so both instances want yesterday's reconciliation right away.
        ("RECONCILE_AT", "00:00".to_owned()),
        ("BILL_DIR", dir.join(format!("bills-{name}")).display().to_string()),
        ("WEBHOOK_URL", webhook_url.to_owned()),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        // The merchant endpoint listens on 127.0.0.1.
        ("WEBHOOK_ALLOW_PRIVATE", "on".to_owned()),
        ("WEBHOOK_SCHEDULE", "200ms,500ms,1s,2s".to_owned()),
    ];
    Instance::spawn(name, db_url, api_base, sim_base, &extra, dir)
}

/// Every order due for a query at the same instant, so both instances' pollers list all of them
/// on their next ticks and race for each one.
fn make_all_due(db: &Db, nos: &[String]) {
    use schema::orders::dsl as o;
    let mut conn = db.conn().unwrap();
    let now = wechat_checkout::db::now();
    let n = diesel::update(o::orders.filter(o::out_trade_no.eq_any(nos)))
        .set(o::next_query_at.eq(Some(now)))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, nos.len());
}

fn paid_states(db: &Db, nos: &[String]) -> usize {
    use schema::orders::dsl as o;
    let mut conn = db.conn().unwrap();
    o::orders
        .filter(o::out_trade_no.eq_any(nos))
        .filter(o::state.eq("PAID"))
        .count()
        .get_result::<i64>(&mut conn)
        .unwrap() as usize
}

fn confirmations(db: &Db, no: &str) -> usize {
    use schema::order_events::dsl as e;
    let mut conn = db.conn().unwrap();
    e::order_events
        .filter(e::out_trade_no.eq(no))
        .filter(e::kind.eq("payment_confirmed"))
        .count()
        .get_result::<i64>(&mut conn)
        .unwrap() as usize
}

fn reconciliation_state(db: &Db, bill_date: &str) -> Option<String> {
    use schema::reconciliation_runs::dsl as r;
    let mut conn = db.conn().unwrap();
    r::reconciliation_runs.filter(r::bill_date.eq(bill_date)).select(r::state).first(&mut conn).optional().unwrap()
}

fn delivered_ids(endpoint: &Receiver) -> BTreeMap<i64, usize> {
    endpoint.counts()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_processes_handle_each_order_once() {
    let Some(test_db) = TestDb::postgres() else {
        eprintln!("TEST_DATABASE_URL not set: the two-instance test needs PostgreSQL; skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Yesterday's bill is ready at once (WeChat: from 10:00 Beijing), so that yesterday's
    // reconciliation finishes whatever the time of day the test runs at.
    let sim = start_simulator(SimulatorConfig { bill_ready_hour: 0, ..fast_config() }).await;
    sim.sim.set_faults(Faults { drop_notify_rate: 1.0, ..Faults::default() });
    let calls = Recorder::default();
    let endpoint = receiver(0, Duration::ZERO).await;
    let hook = endpoint.url("/hooks");
    let mut instances = Vec::new();
    for name in ["app-a", "app-b"] {
        let proxy = start_proxy(name, sim.api_base(), calls.clone()).await;
        instances.push(spawn(name, &test_db.url(), &proxy, &sim.api_base(), &hook, dir.path()));
    }
    for instance in &mut instances {
        instance.wait_until_up().await;
    }
    let (a, b) = (&instances[0], &instances[1]);

    // Orders created and paid through either instance, as a load balancer would spread them.
    let mut nos = Vec::new();
    for i in 0..ORDERS {
        let instance = &instances[i % 2];
        let no = create_order(instance, &format!("TWO-{i}"), 100 + i as i64).await;
        let prepay = checkout(&instances[(i + 1) % 2], &no).await;
        sim.sim.pay(&prepay, Outcome::Ok).await.unwrap();
        nos.push(no);
    }

    let db = Db::connect(&test_db.url(), 2).unwrap();
    make_all_due(&db, &nos);
    eventually("every order PAID through the pollers", &[a, b], || paid_states(&db, &nos) == ORDERS).await;
    let notifies = sim.sim.notify_log();
    assert!(!notifies.is_empty() && notifies.iter().all(|n| n.copy == "dropped"), "{notifies:?}");
    eventually("one webhook per order", &[a, b], || delivered_ids(&endpoint).len() == ORDERS).await;
    let yesterday = (chrono::Utc::now().with_timezone(&wechat_checkout::wxpay::time::beijing()).date_naive()
        - chrono::Duration::days(1))
    .format("%Y-%m-%d")
    .to_string();
    eventually("yesterday's reconciliation finished", &[a, b], || {
        reconciliation_state(&db, &yesterday).is_some_and(|s| s == "DONE" || s == "NO_BILL")
    })
    .await;
    // Let both instances run a few more passes: nothing may happen twice after the fact either.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let calls = std::mem::take(&mut *calls.lock().unwrap());
    eprintln!("calls per instance: {:?}", calls.per_instance);
    for ((path, subject), max) in &calls.max_in_flight {
        assert_eq!(*max, 1, "{path} for {subject:?} was in flight {max} times at once");
    }
    for no in &nos {
        assert_eq!(confirmations(&db, no), 1, "{no} confirmed once");
        let queried = calls.total.get(&("/pay/orderquery".to_owned(), no.clone())).copied().unwrap_or(0);
        assert!(queried >= 1, "{no} was paid only through a query");
    }
    let bill_date = yesterday.replace('-', "");
    assert_eq!(calls.total.get(&("/pay/downloadbill".to_owned(), bill_date)), Some(&1), "one bill download");

    // Each event once, signed, for the right order.
    let received = endpoint.received();
    assert!(delivered_ids(&endpoint).values().all(|n| *n == 1), "{:?}", delivered_ids(&endpoint));
    let mut announced: Vec<String> = Vec::new();
    for r in &received {
        let header = &r.headers[&signature::HEADER.to_ascii_lowercase()];
        assert!(signature::verify(WEBHOOK_SECRET.as_bytes(), header, &r.body, chrono::Utc::now().timestamp(), 300));
        let event = r.json();
        assert_eq!(event["type"], "order.paid");
        announced.push(event["data"]["out_trade_no"].as_str().unwrap().to_owned());
    }
    announced.sort();
    let mut expected = nos.clone();
    expected.sort();
    assert_eq!(announced, expected);

    for instance in instances {
        instance.stop();
    }
    sim.shutdown().await;
    test_db.cleanup();
}
