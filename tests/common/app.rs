//! A real wechat-checkout server on a free local port, on a fresh SQLite file or a fresh
//! PostgreSQL database, with the simulator mounted, plus HTTP helpers to drive it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocket::figment::Figment;
use serde_json::Value;
use wechat_checkout::app;
use wechat_checkout::config::AppConfig;
use wechat_checkout::db::{Db, notify_log, orders};
use wechat_checkout::jobs::JobContext;
use wechat_checkout::payments::Payments;
use wechat_checkout::payments::outbox::WebhookOutbox;
use wechat_checkout::wxpay::{GatewayConfig, HttpPayGateway, Merchant, PayGateway};

pub const API_TOKEN: &str = "test-token-0123456789abcdefghij";
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-123";
/// Generous limit for anything that should happen within moments (a notify, a few job ticks).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Which database a test runs on.
#[derive(Clone, Debug)]
pub enum TestDb {
    Sqlite(std::path::PathBuf),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub fn sqlite(dir: &tempfile::TempDir) -> TestDb {
        TestDb::Sqlite(dir.path().join("test.sqlite"))
    }

    /// A new, empty PostgreSQL database when `TEST_DATABASE_URL` is set.
    pub fn postgres() -> Option<TestDb> {
        let admin_url = std::env::var("TEST_DATABASE_URL").ok()?;
        let name = format!("wc_test_{}", wechat_checkout::wxpay::nonce::random_alphanumeric(12).to_ascii_lowercase());
        let mut conn =
            <diesel::PgConnection as diesel::Connection>::establish(&admin_url).expect("TEST_DATABASE_URL connects");
        diesel::RunQueryDsl::execute(diesel::sql_query(format!("CREATE DATABASE {name}")), &mut conn)
            .expect("create test database");
        Some(TestDb::Postgres { admin_url, name })
    }

    /// Drops a PostgreSQL test database (connections closed by force); nothing for SQLite.
    pub fn cleanup(&self) {
        if let TestDb::Postgres { admin_url, name } = self {
            let mut conn = <diesel::PgConnection as diesel::Connection>::establish(admin_url).unwrap();
            let drop = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            let _ = diesel::RunQueryDsl::execute(drop, &mut conn);
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(path) => path.to_string_lossy().into_owned(),
            TestDb::Postgres { admin_url, name } => {
                let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(b, _)| b);
                format!("{base}/{name}")
            }
        }
    }
}

pub struct TestApp {
    pub base_url: String,
    pub db: TestDb,
    /// The running app's own database handle, for its write counter.
    pub app_db: Db,
    /// The running app's own webhook outbox, for changes applied behind its back.
    pub outbox: WebhookOutbox,
    pub http: reqwest::Client,
    /// `v2` or `v3`: the WeChat Pay API the app is on.
    pub api_version: String,
    shutdown: rocket::Shutdown,
    _dir: Option<tempfile::TempDir>,
}

/// Figment settings for a test instance; `extra` may override any of them.
pub fn test_figment(port: u16, db_url: &str) -> Figment {
    rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("port", port))
        .merge(("log_level", "off"))
        .merge(("shutdown.ctrlc", false))
        .merge(("secret_key", "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk="))
        .merge(("database_url", db_url))
        .merge(("public_base_url", format!("http://127.0.0.1:{port}")))
        .merge(("api_token", API_TOKEN))
        .merge(("simulator", "on"))
        .merge(("admin_username", ADMIN_USER))
        .merge(("admin_password", ADMIN_PASSWORD))
        // Suites that exercise the background jobs switch them on; elsewhere they would only
        // add WeChat calls the assertions do not expect.
        .merge(("jobs", "off"))
}

/// A port free right now, chosen below Linux's ephemeral range (32768–60999) so that the many
/// outgoing connections of a test run cannot take it between this check and the server's bind.
pub fn free_port() -> u16 {
    use rand::RngExt;
    for _ in 0..1000 {
        let port = rand::rng().random_range(15_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 15000..32000");
}

impl TestApp {
    /// Starts on SQLite in a temporary directory.
    pub async fn sqlite() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::sqlite(&dir);
        Self::start(db, Some(dir), |f| f).await
    }

    pub async fn start(db: TestDb, dir: Option<tempfile::TempDir>, tweak: impl FnOnce(Figment) -> Figment) -> TestApp {
        let port = free_port();
        let figment = tweak(test_figment(port, &db.url()));
        let api_version = figment.extract_inner::<String>("wechat_api_version").unwrap_or_else(|_| "v2".into());
        let rocket = app::build_rocket_from(figment).expect("app builds").ignite().await.expect("app ignites");
        let shutdown = rocket.shutdown();
        let payments = rocket.state::<Payments>().expect("the app manages Payments");
        let (app_db, outbox) = (payments.db.clone(), payments.outbox.clone());
        tokio::spawn(rocket.launch());
        let base_url = format!("http://127.0.0.1:{port}");
        let http = browser();
        for _ in 0..200 {
            if http.get(format!("{base_url}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
                return TestApp { base_url, db, app_db, outbox, http, api_version, shutdown, _dir: dir };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the app did not come up on {base_url}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Creates an order through the merchant API; returns its JSON.
    pub async fn create_order(&self, merchant_order_id: &str, amount_fen: i64) -> serde_json::Value {
        let res = self
            .http
            .post(self.url("/api/v1/orders"))
            .bearer_auth(API_TOKEN)
            .json(&serde_json::json!({
                "amount_fen": amount_fen,
                "description": "演示商店-测试商品",
                "merchant_order_id": merchant_order_id,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "create order: {}", res.text().await.unwrap_or_default());
        res.json().await.unwrap()
    }

    /// POSTs any order request to the merchant API: its status and JSON answer (a refusal too).
    pub async fn post_order(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let res = self.http.post(self.url("/api/v1/orders")).bearer_auth(API_TOKEN).json(body).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn order(&self, out_trade_no: &str) -> serde_json::Value {
        self.http
            .get(self.url(&format!("/api/v1/orders/{out_trade_no}")))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Follows redirects by hand (the cookie jar sees every hop), returning the final response.
    pub async fn follow(&self, url: &str) -> reqwest::Response {
        self.follow_in(&self.http, url).await
    }

    /// [`TestApp::follow`] in another browser (see [`browser`]): another shopper.
    pub async fn follow_in(&self, http: &reqwest::Client, url: &str) -> reqwest::Response {
        let mut url = url.to_owned();
        for _ in 0..10 {
            let res = http.get(&url).send().await.unwrap();
            if !res.status().is_redirection() {
                return res;
            }
            let next = res.headers()["location"].to_str().unwrap().to_owned();
            url = if next.starts_with("http") { next } else { self.url(&next) };
        }
        panic!("too many redirects");
    }

    /// Opens the checkout (OAuth included) and asks for the JSAPI parameters.
    pub async fn jsapi(&self, out_trade_no: &str) -> serde_json::Value {
        let page = self.follow(&self.url(&format!("/pay/{out_trade_no}"))).await;
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("立即支付"), "{html}");
        let res = self
            .http
            .post(self.url(&format!("/pay/{out_trade_no}/jsapi")))
            .header("Origin", &self.base_url)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Plays the shopper in the simulator.
    pub async fn shopper(&self, prepay_id: &str, outcome: &str) -> reqwest::Response {
        self.http
            .post(self.url("/simulator/shopper/pay"))
            .json(&serde_json::json!({ "prepay_id": prepay_id, "outcome": outcome }))
            .send()
            .await
            .unwrap()
    }

    /// Waits (briefly) for an order to reach `state` through the status endpoint.
    pub async fn wait_for_state(&self, out_trade_no: &str, state: &str) -> bool {
        for _ in 0..100 {
            if self.get_json(&format!("/pay/{out_trade_no}/status")).await["state"] == state {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// A pool of its own on the app's database, to read and plant rows behind the app's back.
    pub fn db_handle(&self) -> Db {
        Db::connect(&self.db.url(), 2).unwrap()
    }

    fn port(&self) -> u16 {
        self.base_url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// POSTs to the simulator's control API (faults, clock, settling refunds); returns its JSON.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        let res = self.http.post(self.url(&format!("/simulator/control/{path}"))).json(&body).send().await.unwrap();
        assert!(res.status().is_success(), "control {path}: {}", res.status());
        res.json().await.unwrap()
    }

    /// GETs `path` without credentials and returns its JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http.get(self.url(path)).send().await.unwrap().json().await.unwrap()
    }

    /// The simulator's view of an order.
    pub async fn sim_order(&self, out_trade_no: &str) -> Value {
        self.get_json(&format!("/simulator/control/orders/{out_trade_no}")).await
    }

    /// An order with a prepay (PAYING): its out_trade_no and prepay_id.
    pub async fn paying_order(&self, merchant_order_id: &str, amount_fen: i64) -> (String, String) {
        let order = self.create_order(merchant_order_id, amount_fen).await;
        let no = order["out_trade_no"].as_str().unwrap().to_owned();
        let prepay = prepay_id(&self.jsapi(&no).await);
        (no, prepay)
    }

    /// An order paid through the simulator whose payment notify was applied and logged, so that
    /// nothing arrives later by surprise. Waits on the database, not the status page, which could
    /// settle the order through an orderquery of its own.
    pub async fn paid_order(&self, merchant_order_id: &str, amount_fen: i64) -> String {
        let (no, prepay) = self.paying_order(merchant_order_id, amount_fen).await;
        assert_eq!(self.shopper(&prepay, "ok").await.status(), 200);
        let db = self.db_handle();
        eventually(&format!("the payment notify of {no}"), || {
            order_row(&db, &no).state.as_str() == "PAID"
                && !notify_log::for_order(&mut db.conn().unwrap(), &no).unwrap().is_empty()
        })
        .await;
        no
    }

    /// The jobs of another instance on the app's database: its own pool, `Payments` and lease
    /// name, talking to the app's simulator over HTTP through the gateway `wrap` returns.
    pub fn job_context(
        &self,
        instance_id: &str,
        tweak: impl FnOnce(Figment) -> Figment,
        wrap: impl FnOnce(Arc<dyn PayGateway>) -> Arc<dyn PayGateway>,
    ) -> JobContext {
        let figment = test_figment(self.port(), &self.db.url())
            .merge(("wechat_api_version", self.api_version.as_str()))
            .merge(("instance_id", instance_id));
        let config = AppConfig::from_figment(tweak(figment)).unwrap();
        let db = Db::connect(config.database_url.expose(), 8).unwrap();
        let merchant = Merchant {
            appid: config.wechat.appid.clone(),
            mch_id: config.wechat.mch_id.clone(),
            key: config.wechat.api_key.clone(),
            sign_type: config.wechat.sign_type,
        };
        // The app's own protocol: a v3 app's jobs are v3 jobs.
        let real: Arc<dyn PayGateway> = match app::v3_gateway(&config, &db).unwrap() {
            Some(v3) => v3,
            None => Arc::new(
                HttpPayGateway::new(merchant.clone(), GatewayConfig::with_base(&config.wechat.api_base)).unwrap(),
            ),
        };
        let payments = Payments::new(db, wrap(real), merchant, Arc::new(config));
        JobContext::new(payments)
    }

    /// Issues an API token named `name` with `scope` straight into the database (the console's
    /// form is tested with the console) and returns it.
    pub async fn issue_token(&self, name: &str, scope: &str) -> String {
        let token = format!("{name}-token-0123456789abcdefghijklmnop");
        let (hash, name, scope) =
            (wechat_checkout::domain::records::token_hash(&token), name.to_owned(), scope.to_owned());
        self.db_handle()
            .write(move |c| {
                let created_at = wechat_checkout::db::now();
                let new =
                    wechat_checkout::db::tokens::NewToken { name: &name, token_hash: &hash, created_at, scope: &scope };
                wechat_checkout::db::tokens::insert(c, &new)
            })
            .await
            .unwrap();
        token
    }

    pub async fn stop(self) {
        self.shutdown.notify();
        if let TestDb::Postgres { admin_url, name } = &self.db {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut conn = <diesel::PgConnection as diesel::Connection>::establish(admin_url).unwrap();
            let _ = diesel::RunQueryDsl::execute(
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
                &mut conn,
            );
        }
    }
}

/// A browser of its own (cookie jar, no automatic redirects). The simulator's OAuth knows a
/// shopper by a cookie, so each browser signs in as another openid.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub fn prepay_id(jsapi: &serde_json::Value) -> String {
    jsapi["params"]["package"].as_str().unwrap().strip_prefix("prepay_id=").unwrap().to_owned()
}

pub fn order_row(db: &Db, out_trade_no: &str) -> wechat_checkout::domain::Order {
    orders::find(&mut db.conn().unwrap(), out_trade_no).unwrap().unwrap()
}

/// Polls `check` every 25 ms until it holds or [`PATIENCE`] runs out.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Runs `scenario` on a fresh SQLite database (with its directory), then on a fresh PostgreSQL
/// database when `TEST_DATABASE_URL` is set (dropped afterwards), printing each run's time. The
/// scenario starts the app itself, for suites whose settings name an endpoint it starts first.
pub async fn on_every_database<F, Fut>(name: &str, scenario: F)
where
    F: Fn(TestDb, Option<tempfile::TempDir>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    scenario(TestDb::sqlite(&dir), Some(dir)).await;
    eprintln!("{name} on sqlite: {:?}", started.elapsed());
    match TestDb::postgres() {
        Some(db) => {
            let started = Instant::now();
            scenario(db.clone(), None).await;
            db.cleanup();
            eprintln!("{name} on postgres: {:?}", started.elapsed());
        }
        None => eprintln!("{name}: TEST_DATABASE_URL not set, PostgreSQL run skipped"),
    }
}

/// Runs `scenario` on a fresh app on SQLite, then on PostgreSQL when `TEST_DATABASE_URL` is set,
/// printing each run's time.
pub async fn on_every_backend<F, Fut>(scenario: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: std::future::Future<Output = TestApp>,
{
    on_every_backend_with(|f, _| f, |app, _| scenario(app)).await;
}

/// [`on_every_backend`] with `tweak` applied to each app's settings. Both are given a fresh path
/// for the run's bills, so that an app that downloads bills can keep them out of the working
/// directory and the scenario can find them.
pub async fn on_every_backend_with<T, F, Fut>(tweak: T, scenario: F)
where
    T: Fn(Figment, &Path) -> Figment,
    F: Fn(TestApp, PathBuf) -> Fut,
    Fut: std::future::Future<Output = TestApp>,
{
    let dir = tempfile::tempdir().unwrap();
    let bills = dir.path().join("bills");
    let db = TestDb::sqlite(&dir);
    let started = Instant::now();
    scenario(TestApp::start(db, Some(dir), |f| tweak(f, &bills)).await, bills.clone()).await.stop().await;
    eprintln!("sqlite: {:?}", started.elapsed());
    match TestDb::postgres() {
        Some(db) => {
            let dir = tempfile::tempdir().unwrap();
            let bills = dir.path().join("bills");
            let started = Instant::now();
            scenario(TestApp::start(db, None, |f| tweak(f, &bills)).await, bills.clone()).await.stop().await;
            eprintln!("postgres: {:?}", started.elapsed());
        }
        None => eprintln!("TEST_DATABASE_URL not set: PostgreSQL run skipped"),
    }
}

/// [`on_every_backend_with`] on WeChat Pay API v2, then again on v3 (`WECHAT_API_VERSION=v3`, the
/// simulator speaking v3): for the suites whose scenarios go through WeChat only by the app's own
/// calls and the simulator's notifies, so that they hold on either protocol.
pub async fn on_every_backend_and_version_with<T, F, Fut>(tweak: T, scenario: F)
where
    T: Fn(Figment, &Path) -> Figment,
    F: Fn(TestApp, PathBuf) -> Fut,
    Fut: std::future::Future<Output = TestApp>,
{
    for version in ["v2", "v3"] {
        eprintln!("WeChat Pay API {version}:");
        on_every_backend_with(|f, bills| tweak(f, bills).merge(("wechat_api_version", version)), &scenario).await;
    }
}

/// [`on_every_backend`] on WeChat Pay API v2, then on v3.
pub async fn on_every_backend_and_version<F, Fut>(scenario: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: std::future::Future<Output = TestApp>,
{
    on_every_backend_and_version_with(|f, _| f, |app, _| scenario(app)).await;
}
