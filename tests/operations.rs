//! Running the service: `/livez` and `/readyz` (ready with its jobs; not ready while the
//! database refuses connections or a migration is pending, and ready again without a restart),
//! and the demo following the port it serves on.

mod common;

use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl};
use serde_json::Value;

use common::app::{TestApp, TestDb};
use common::process::{Instance, UNSET};

/// `/readyz`'s status and body.
async fn readyz(app: &TestApp) -> (u16, Value) {
    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// Polls `/readyz` until its status is `want`; the last answer either way.
async fn readyz_becomes(app: &TestApp, want: u16) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = readyz(app).await;
        if status == want || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn livez_and_readyz_on_an_instance_running_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite(&dir);
    let app = TestApp::start(db, Some(dir), |f| f.merge(("jobs", "on"))).await;

    let live = app.http.get(app.url("/livez")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.json::<Value>().await.unwrap()["status"], "alive");

    let (status, body) = readyz_becomes(&app, 200).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["migrations"], "current");
    assert_eq!(body["notify_writer"], "ok");
    assert_eq!(body["jobs"], "ok");
    for job in ["poll", "expire", "refund-sync", "reconcile", "webhooks", "retention"] {
        assert_eq!(body["job_states"][job], "ok", "{job}: {body}");
    }
}

#[tokio::test]
async fn readyz_names_a_pending_migration_until_it_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite(&dir);
    let url = db.url();
    let app = TestApp::start(db, Some(dir), |f| f).await;
    let (status, body) = readyz(&app).await;
    assert_eq!((status, body["jobs"].as_str()), (200, Some("off")), "{body}");

    // As if a newer binary brought a migration no one has applied yet: forget the latest one.
    let mut conn = diesel::SqliteConnection::establish(&url).unwrap();
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let latest: Version = diesel::sql_query("SELECT MAX(version) AS version FROM __diesel_schema_migrations")
        .get_result(&mut conn)
        .unwrap();
    diesel::sql_query(format!("DELETE FROM __diesel_schema_migrations WHERE version = '{}'", latest.version))
        .execute(&mut conn)
        .unwrap();

    let (status, body) = readyz(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!((body["status"].as_str(), body["migrations"].as_str()), (Some("not_ready"), Some("pending")));
    let pending = body["pending_migrations"].as_array().unwrap();
    // Diesel keeps a migration's version as its name's digits (`2026-12-02-000001_x` → `20261202000001`).
    let name = pending.first().and_then(Value::as_str).unwrap_or_default().replace('-', "");
    assert!(pending.len() == 1 && name.starts_with(&latest.version), "{body}");
    assert_eq!(body["database"], "ok", "the database itself is fine: {body}");

    diesel::sql_query(format!("INSERT INTO __diesel_schema_migrations (version) VALUES ('{}')", latest.version))
        .execute(&mut conn)
        .unwrap();
    let (status, body) = readyz(&app).await;
    assert_eq!((status, body["migrations"].as_str()), (200, Some("current")), "{body}");
}

#[tokio::test]
async fn readyz_fails_while_postgresql_refuses_connections_and_recovers() {
    let Some(db) = TestDb::postgres() else {
        eprintln!("skipped: set TEST_DATABASE_URL to run the PostgreSQL readiness test");
        return;
    };
    let TestDb::Postgres { admin_url, name } = &db else { unreachable!() };
    let (admin_url, name) = (admin_url.clone(), name.clone());
    let app = TestApp::start(db, None, |f| f).await;
    assert_eq!(readyz(&app).await.0, 200);

    // The database goes away for this app: no new connections, and its open ones cut.
    let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
    diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).execute(&mut admin).unwrap();
    diesel::sql_query(format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        .execute(&mut admin)
        .unwrap();

    let (status, body) = readyz_becomes(&app, 503).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "unreachable", "{body}");
    assert_eq!(body["migrations"], "unknown", "{body}");
    let live = app.http.get(app.url("/livez")).send().await.unwrap();
    assert_eq!(live.status(), 200, "the process itself is alive: no reason to restart it");

    diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).execute(&mut admin).unwrap();
    let (status, body) = readyz_becomes(&app, 200).await;
    assert_eq!(status, 200, "ready again without a restart: {body}");
    assert_eq!(body["database"], "ok");
    app.db.cleanup();
}

/// With `ROCKET_PORT` and no `PUBLIC_BASE_URL`, the demo (simulator mode, by itself on loopback)
/// works on that port: its OAuth redirects, the simulator's redirects back, and the notify all
/// go to the port the server listens on, not 8000.
#[tokio::test]
async fn the_demo_follows_rocket_port() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = dir.path().join("demo.sqlite").to_string_lossy().into_owned();
    let unset = |k: &'static str| (k, UNSET.to_owned());
    let extra = [
        unset("PUBLIC_BASE_URL"),
        unset("SIMULATOR"),
        unset("WECHAT_APPID"),
        unset("WECHAT_MCH_ID"),
        unset("WECHAT_API_KEY"),
        unset("WECHAT_APP_SECRET"),
        unset("WECHAT_API_BASE"),
        unset("WECHAT_OPEN_BASE"),
        unset("WECHAT_SNS_BASE"),
    ];
    let instance = Instance::spawn_launched("demo", &db_url, "", "", &extra, dir.path()).await;
    assert!(instance.log_text().contains(&format!("Demo shop: {}/", instance.base_url)), "{}", instance.log_text());

    let no = common::process::create_order(&instance, "PORT-1", 1990).await;
    let http = reqwest::Client::builder()
        .user_agent(common::process::WECHAT_UA)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut url = instance.url(&format!("/pay/{no}"));
    let mut absolute = Vec::new();
    for _ in 0..10 {
        let res = http.get(&url).send().await.unwrap();
        if !res.status().is_redirection() {
            assert_eq!(res.status(), 200, "{url}");
            break;
        }
        let next = res.headers()["location"].to_str().unwrap().split('#').next().unwrap().to_owned();
        url = if next.starts_with("http") { next } else { instance.url(&next) };
        absolute.push(url.clone());
    }
    assert!(absolute.iter().any(|u| u.contains("/simulator/")), "OAuth went through the simulator: {absolute:?}");
    for u in &absolute {
        assert!(u.starts_with(&format!("{}/", instance.base_url)), "a redirect left the server's port: {u}");
    }
    let res =
        http.post(instance.url(&format!("/pay/{no}/jsapi"))).header("Origin", &instance.base_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let prepay_id = common::app::prepay_id(&res.json::<Value>().await.unwrap());
    let paid = http
        .post(instance.url("/simulator/shopper/pay"))
        .json(&serde_json::json!({ "prepay_id": prepay_id, "outcome": "ok" }))
        .send()
        .await
        .unwrap();
    assert!(paid.status().is_success(), "{}", paid.status());
    common::process::eventually("the notify reaches the server's own port", &[&instance], || {
        let conn = diesel::SqliteConnection::establish(&db_url);
        conn.ok().is_some_and(|mut c| {
            #[derive(diesel::QueryableByName)]
            struct State {
                #[diesel(sql_type = diesel::sql_types::Text)]
                state: String,
            }
            diesel::sql_query(format!("SELECT state FROM orders WHERE out_trade_no = '{no}'"))
                .get_result::<State>(&mut c)
                .is_ok_and(|s| s.state == "PAID")
        })
    })
    .await;
    instance.stop();
}
