//! A real wechat-checkout server on a free local port, on a fresh SQLite file or a fresh
//! PostgreSQL database, with the simulator mounted, plus HTTP helpers to drive it.

use std::time::Duration;

use rocket::figment::Figment;
use wechat_checkout::app;

pub const API_TOKEN: &str = "test-token-0123456789abcdefghij";
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-123";

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
    pub http: reqwest::Client,
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
        let rocket = app::build_rocket_from(figment).expect("app builds").ignite().await.expect("app ignites");
        let shutdown = rocket.shutdown();
        tokio::spawn(rocket.launch());
        let base_url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        for _ in 0..200 {
            if http.get(format!("{base_url}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
                return TestApp { base_url, db, http, shutdown, _dir: dir };
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
        let mut url = url.to_owned();
        for _ in 0..10 {
            let res = self.http.get(&url).send().await.unwrap();
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
            let s: serde_json::Value = self
                .http
                .get(self.url(&format!("/pay/{out_trade_no}/status")))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if s["state"] == state {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
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

pub fn prepay_id(jsapi: &serde_json::Value) -> String {
    jsapi["params"]["package"].as_str().unwrap().strip_prefix("prepay_id=").unwrap().to_owned()
}

/// Runs `scenario` on a fresh app on SQLite, then on PostgreSQL when `TEST_DATABASE_URL` is set,
/// printing each run's time.
pub async fn on_every_backend<F, Fut>(scenario: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: std::future::Future<Output = TestApp>,
{
    let started = std::time::Instant::now();
    scenario(TestApp::sqlite().await).await.stop().await;
    eprintln!("sqlite: {:?}", started.elapsed());
    match TestDb::postgres() {
        Some(db) => {
            let started = std::time::Instant::now();
            scenario(TestApp::start(db, None, |f| f).await).await.stop().await;
            eprintln!("postgres: {:?}", started.elapsed());
        }
        None => eprintln!("TEST_DATABASE_URL not set: PostgreSQL run skipped"),
    }
}
