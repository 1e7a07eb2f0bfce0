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
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::app::{ADMIN_PASSWORD, ADMIN_USER, API_TOKEN, TestDb, free_port, prepay_id};
use common::merchant_endpoint::{Receiver, receiver};
use common::{fast_config, start_simulator};
use diesel::prelude::*;
use rocket::http::{ContentType, Status};
use rocket::{State, post, routes};
use serde_json::{Value, json};
use wechat_checkout::db::{Db, schema};
use wechat_checkout::jobs::signature;
use wechat_checkout::simulator::{DEMO_API_KEY, DEMO_APP_SECRET, DEMO_APPID, DEMO_MCH_ID, Faults, Outcome};

const ORDERS: usize = 12;
const WEBHOOK_SECRET: &str = "whsec-two-instances-0123456789";
const SECRET_KEY: &str = "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";
/// How long the proxy holds each call: long enough that two instances querying one order at
/// the same time would overlap at the proxy, where the overlap is counted.
const HOLD: Duration = Duration::from_millis(150);
const PATIENCE: Duration = Duration::from_secs(60);
const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323b) NetType/WIFI Language/zh_CN";

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

/// One app process; killed if the test ends without stopping it.
struct Instance {
    name: String,
    base_url: String,
    child: Child,
    log: PathBuf,
}

impl Instance {
    fn spawn(name: &str, db_url: &str, api_base: &str, sim_base: &str, webhook_url: &str, dir: &Path) -> Instance {
        let port = free_port();
        let base_url = format!("http://127.0.0.1:{port}");
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wechat-checkout"))
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_SECRET_KEY", SECRET_KEY)
            .env("ROCKET_CLI_COLORS", "false")
            .env("DATABASE_URL", db_url)
            .env("PUBLIC_BASE_URL", &base_url)
            .env("API_TOKEN", API_TOKEN)
            .env("ADMIN_USERNAME", ADMIN_USER)
            .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("SIMULATOR", "off")
            .env("WECHAT_APPID", DEMO_APPID)
            .env("WECHAT_MCH_ID", DEMO_MCH_ID)
            .env("WECHAT_API_KEY", DEMO_API_KEY)
            .env("WECHAT_APP_SECRET", DEMO_APP_SECRET)
            .env("WECHAT_API_BASE", api_base)
            .env("WECHAT_OPEN_BASE", sim_base)
            .env("WECHAT_SNS_BASE", sim_base)
            .env("JOBS", "on")
            // Nothing is due until the test makes every order due at once (see `make_all_due`).
            .env("POLL_SCHEDULE", "1h")
            .env("JOB_TICK_MS", "50")
            .env("JOB_CONCURRENCY", "4")
            // Always past, so both instances want yesterday's reconciliation right away.
            .env("RECONCILE_AT", "00:00")
            .env("BILL_DIR", dir.join(format!("bills-{name}")))
            .env("WEBHOOK_URL", webhook_url)
            .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("WEBHOOK_SCHEDULE", "200ms,500ms,1s,2s")
            .env("INSTANCE_ID", name)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the app binary starts");
        Instance { name: name.to_owned(), base_url, child, log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_until_up(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited with {status} while starting:\n{}", self.name, self.log_text());
            }
            if http.get(self.url("/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not come up:\n{}", self.name, self.log_text());
    }

    /// Stops the process as an orchestrator would (SIGTERM) and waits for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        // The shell's built-in `kill`: a minimal machine may have no /usr/bin/kill.
        let sent = Command::new("sh").args(["-c", &format!("kill -TERM {pid}")]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status} on SIGTERM:\n{}", self.name, self.log_text());
                return;
            }
            assert!(Instant::now() < deadline, "{} did not stop on SIGTERM:\n{}", self.name, self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shopper's WeChat browser: OAuth through the simulator, then the JSAPI parameters.
async fn checkout(instance: &Instance, no: &str) -> String {
    let http = reqwest::Client::builder()
        .user_agent(WECHAT_UA)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut url = instance.url(&format!("/pay/{no}"));
    for _ in 0..10 {
        let res = http.get(&url).send().await.unwrap();
        if !res.status().is_redirection() {
            assert_eq!(res.status(), 200, "checkout page of {no}");
            break;
        }
        let next = res.headers()["location"].to_str().unwrap().split('#').next().unwrap().to_owned();
        url = if next.starts_with("http") { next } else { instance.url(&next) };
    }
    let res =
        http.post(instance.url(&format!("/pay/{no}/jsapi"))).header("Origin", &instance.base_url).send().await.unwrap();
    assert_eq!(res.status(), 200, "jsapi of {no}");
    prepay_id(&res.json::<Value>().await.unwrap())
}

async fn create_order(instance: &Instance, merchant_order_id: &str, amount_fen: i64) -> String {
    let res = reqwest::Client::new()
        .post(instance.url("/api/v1/orders"))
        .bearer_auth(API_TOKEN)
        .json(&json!({ "amount_fen": amount_fen, "description": "双实例-测试商品", "merchant_order_id": merchant_order_id }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["out_trade_no"].as_str().unwrap().to_owned()
}

async fn eventually(what: &str, instances: &[&Instance], mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs: Vec<String> = instances.iter().map(|i| format!("--- {} ---\n{}", i.name, i.log_text())).collect();
    panic!("timed out waiting for {what}\n{}", logs.join("\n"));
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
    let sim = start_simulator(fast_config()).await;
    sim.sim.set_faults(Faults { drop_notify_rate: 1.0, ..Faults::default() });
    let calls = Recorder::default();
    let endpoint = receiver(0, Duration::ZERO).await;
    let hook = endpoint.url("/hooks");
    let mut instances = Vec::new();
    for name in ["app-a", "app-b"] {
        let proxy = start_proxy(name, sim.api_base(), calls.clone()).await;
        instances.push(Instance::spawn(name, &test_db.url(), &proxy, &sim.api_base(), &hook, dir.path()));
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
