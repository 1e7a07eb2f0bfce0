//! The operations commands, run as an operator runs them (the real binary in its own process):
//! `check-config` on a good configuration and on bad ones, each failure naming the variable to
//! fix; `backup` of a SQLite database while a real server keeps creating orders, and its
//! PostgreSQL instructions; and a database that is away at start, which must end the process
//! with one line naming `DATABASE_URL` instead of a page of pool retries.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::app::{API_TOKEN, TestDb, free_port};
use common::process::{Instance, SECRET_KEY};
use common::{fast_config, raw_double, start_simulator};
use diesel::prelude::*;
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::json;
use wechat_checkout::simulator::{DEMO_API_KEY, DEMO_APP_SECRET, DEMO_APPID, DEMO_MCH_ID, SimulatorHandle};

/// Longest any one command may run before the test gives up on it (it should take seconds).
const HANG_LIMIT: Duration = Duration::from_secs(60);

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("--- stdout ---\n{}--- stderr ---\n{}", self.stdout, self.stderr)
    }

    /// The line of stdout that starts with `status` and is about `subject`.
    fn line(&self, status: &str, subject: &str) -> String {
        let prefix = format!("{status:<6}{subject}:");
        self.stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{}", self.all()))
            .to_owned()
    }
}

/// The settings of a good real-mode configuration against the simulator `sim`, on `db`.
fn good_env(sim: &SimulatorHandle, db: &str) -> Vec<(String, String)> {
    let port = free_port();
    [
        ("RUST_LOG", "warn".to_owned()),
        ("ROCKET_SECRET_KEY", SECRET_KEY.to_owned()),
        ("ROCKET_PORT", port.to_string()),
        ("PUBLIC_BASE_URL", format!("http://127.0.0.1:{port}")),
        ("DATABASE_URL", db.to_owned()),
        ("API_TOKEN", API_TOKEN.to_owned()),
        ("SIMULATOR", "off".to_owned()),
        ("WECHAT_APPID", DEMO_APPID.to_owned()),
        ("WECHAT_MCH_ID", DEMO_MCH_ID.to_owned()),
        ("WECHAT_API_KEY", DEMO_API_KEY.to_owned()),
        ("WECHAT_APP_SECRET", DEMO_APP_SECRET.to_owned()),
        ("WECHAT_API_BASE", sim.api_base()),
        ("WECHAT_OPEN_BASE", sim.api_base()),
        ("WECHAT_SNS_BASE", sim.api_base()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn with(env: &[(String, String)], changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        env.iter().filter(|(k, _)| !changes.iter().any(|(c, _)| c == k)).cloned().collect();
    env.extend(changes.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// Runs the binary with exactly `env` (plus PATH) in `dir`.
async fn run(args: &[&str], env: &[(String, String)], dir: &Path) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-checkout"));
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(HANG_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("`{}` did not finish within {HANG_LIMIT:?}", args.join(" ")))
        .expect("the binary runs");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A PEM certificate for `cn` and its key, valid from yesterday for a year unless `expired`.
fn certificate(cn: &str, expired: bool) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn check_config_passes_a_good_configuration_and_changes_nothing() {
    let sim = start_simulator(fast_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/shop.sqlite");
    let (cert, key) = certificate(DEMO_MCH_ID, false);
    let hook = raw_double(Some("")).await;
    let env = with(
        &good_env(&sim, db.to_str().unwrap()),
        &[
            ("WECHAT_CERT_PEM", &write(dir.path(), "apiclient_cert.pem", &cert)),
            ("WECHAT_KEY_PEM", &write(dir.path(), "apiclient_key.pem", &key)),
            ("WEBHOOK_URL", &format!("{}/hooks/wechat", hook.base_url)),
            ("WEBHOOK_SECRET", "whsec-check-config-0123456789"),
            ("WEBHOOK_ALLOW_PRIVATE", "on"),
        ],
    );
    let first = run(&["check-config"], &env, dir.path()).await;
    assert!(first.success, "{}", first.all());
    assert!(first.line("ok", "database").contains("does not exist yet"), "{}", first.all());
    assert!(!db.exists(), "check-config created the SQLite file");
    assert!(first.line("ok", "WeChat Pay API").contains("ORDERNOTEXIST"), "{}", first.all());
    assert!(first.line("ok", "merchant certificate").contains(&format!("CN {DEMO_MCH_ID}")), "{}", first.all());
    assert!(first.line("ok", "webhook URL").contains("answers"), "{}", first.all());
    assert!(!first.stdout.contains("FAIL"), "{}", first.all());
    assert_eq!(hook.hits.load(std::sync::atomic::Ordering::SeqCst), 1, "one HEAD, no event");

    let migrated = run(&["migrate"], &env, dir.path()).await;
    assert!(migrated.success, "{}", migrated.all());
    let second = run(&["check-config"], &env, dir.path()).await;
    assert!(second.success, "{}", second.all());
    assert!(second.line("ok", "database").ends_with("migrations current"), "{}", second.all());
}

/// Runs check-config with `changes` to the good configuration: it must fail, and the FAIL line
/// about `subject` must name `variable`.
async fn fails_naming(sim: &SimulatorHandle, subject: &str, variable: &str, changes: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let env = with(&good_env(sim, dir.path().join("shop.sqlite").to_str().unwrap()), changes);
    let out = run(&["check-config"], &env, dir.path()).await;
    assert!(!out.success, "check-config passed with {changes:?}:\n{}", out.all());
    let line = out.line("FAIL", subject);
    assert!(line.contains(variable), "the failure does not name {variable}: {line}");
    line
}

#[tokio::test]
async fn check_config_names_the_variable_behind_each_wechat_failure() {
    let sim = start_simulator(fast_config()).await;
    let line = fails_naming(&sim, "WeChat Pay API", "WECHAT_API_KEY", &[("WECHAT_API_KEY", &"k".repeat(32))]).await;
    assert!(line.contains("SIGNERROR"), "{line}");
    fails_naming(&sim, "WeChat Pay API", "WECHAT_MCH_ID", &[("WECHAT_MCH_ID", "1900000999")]).await;
    fails_naming(&sim, "WeChat Pay API", "WECHAT_APPID", &[("WECHAT_APPID", "wx00000000000000ff")]).await;
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let line = fails_naming(&sim, "WeChat Pay API", "WECHAT_API_BASE", &[("WECHAT_API_BASE", &nobody)]).await;
    assert!(line.to_lowercase().contains("refused"), "{line}");
}

#[tokio::test]
async fn check_config_names_the_variable_behind_each_certificate_failure() {
    let sim = start_simulator(fast_config()).await;
    let dir = tempfile::tempdir().unwrap();
    fails_naming(
        &sim,
        "merchant certificate",
        "WECHAT_CERT_P12",
        &[("WECHAT_CERT_P12", "/nonexistent/apiclient_cert.p12")],
    )
    .await;
    let (cert, _) = certificate(DEMO_MCH_ID, false);
    let (_, other_key) = certificate(DEMO_MCH_ID, false);
    let cert = write(dir.path(), "cert.pem", &cert);
    let other_key = write(dir.path(), "other_key.pem", &other_key);
    let line = fails_naming(
        &sim,
        "merchant certificate",
        "WECHAT_KEY_PEM",
        &[("WECHAT_CERT_PEM", &cert), ("WECHAT_KEY_PEM", &other_key)],
    )
    .await;
    assert!(line.contains("does not belong"), "{line}");
    let (old_cert, old_key) = certificate(DEMO_MCH_ID, true);
    let line = fails_naming(
        &sim,
        "merchant certificate",
        "WECHAT_CERT_PEM",
        &[
            ("WECHAT_CERT_PEM", &write(dir.path(), "old.pem", &old_cert)),
            ("WECHAT_KEY_PEM", &write(dir.path(), "old_key.pem", &old_key)),
        ],
    )
    .await;
    assert!(line.contains("expired on 2021-01-01"), "{line}");
}

#[tokio::test]
async fn check_config_names_the_variable_behind_configuration_and_database_failures() {
    let sim = start_simulator(fast_config()).await;
    let line = fails_naming(&sim, "configuration", "WECHAT_SIGN_TYPE", &[("WECHAT_SIGN_TYPE", "SHA1")]).await;
    assert!(line.contains("MD5 or HMAC-SHA256"), "{line}");

    let refused = format!("postgres://shop:s3cret-pw@127.0.0.1:{}/shop", free_port());
    let line = fails_naming(&sim, "database", "DATABASE_URL", &[("DATABASE_URL", &refused)]).await;
    assert!(line.contains("connection refused") && line.contains("postgres://shop:***@127.0.0.1"), "{line}");
    assert!(!line.contains("s3cret-pw"), "{line}");

    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "plain.txt", "a file where a directory should be");
    let under_file = format!("{file}/shop.sqlite");
    let line = fails_naming(&sim, "database", "DATABASE_URL", &[("DATABASE_URL", &under_file)]).await;
    assert!(line.contains("not writable"), "{line}");
    let not_a_db = write(dir.path(), "shop.sqlite", &"this is no database. ".repeat(40));
    let line = fails_naming(&sim, "database", "DATABASE_URL", &[("DATABASE_URL", &not_a_db)]).await;
    assert!(line.contains("is not a SQLite database"), "{line}");

    if let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") {
        let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(b, _)| b);
        let missing = format!("{base}/wc_no_such_database_here");
        let line = fails_naming(&sim, "database", "DATABASE_URL", &[("DATABASE_URL", &missing)]).await;
        assert!(line.contains("\"wc_no_such_database_here\" does not exist"), "{line}");
    } else {
        eprintln!("TEST_DATABASE_URL is not set: the missing PostgreSQL database case is skipped");
    }
}

/// `serve` (and `migrate`) with a database that is away: a non-zero exit and a short message
/// naming DATABASE_URL, not the pool's retries.
async fn start_fails_in_one_line(command: &str, db_url: &str, expect: &str) {
    let sim = start_simulator(fast_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = with(&good_env(&sim, db_url), &[("RUST_LOG", "info"), ("JOBS", "off")]);
    let out = run(&[command], &env, dir.path()).await;
    assert!(!out.success, "{command} started:\n{}", out.all());
    let lines: Vec<&str> = out.stderr.lines().chain(out.stdout.lines()).filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() <= 2, "{command}: too many lines:\n{}", out.all());
    let message = lines.iter().find(|l| l.contains("DATABASE_URL")).unwrap_or_else(|| panic!("{}", out.all()));
    assert!(message.starts_with("wechat-checkout: DATABASE_URL: cannot connect to"), "{message}");
    assert!(message.contains(expect), "{message} does not say {expect:?}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn serve_with_a_database_that_is_away_exits_with_one_line_naming_database_url() {
    let refused = format!("postgres://shop:s3cret@127.0.0.1:{}/shop", free_port());
    start_fails_in_one_line("serve", &refused, "connection refused").await;
    start_fails_in_one_line("migrate", &refused, "connection refused").await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "plain.txt", "not a directory");
    start_fails_in_one_line("serve", &format!("{file}/data/shop.sqlite"), "not writable").await;
    if let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") {
        let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(b, _)| b);
        start_fails_in_one_line("serve", &format!("{base}/wc_no_such_database_here"), "does not exist").await;
    } else {
        eprintln!("TEST_DATABASE_URL is not set: the missing PostgreSQL database case is skipped");
    }
}

#[tokio::test]
async fn backup_on_postgresql_prints_the_commands_without_the_password() {
    let sim = start_simulator(fast_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = good_env(&sim, "postgres://shop:s3cret-pw@db.internal:5432/pay");
    let out = run(&["backup", "--to", "pay.dump"], &env, dir.path()).await;
    assert!(out.success, "{}", out.all());
    assert!(
        out.stdout.contains("pg_dump --format=custom --file=pay.dump \"postgres://shop:***@db.internal:5432/pay\""),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains("pg_restore"), "{}", out.all());
    assert!(!out.all().contains("s3cret-pw"), "{}", out.all());
    assert!(!dir.path().join("pay.dump").exists());
}

/// Creates orders one after another until `stop`, recording each acknowledged (201) one.
async fn write_load(base_url: String, acknowledged: Arc<Mutex<Vec<String>>>, stop: Arc<tokio::sync::Notify>) {
    let http = reqwest::Client::new();
    for i in 0.. {
        let id = format!("LOAD-{i:05}");
        let send = http
            .post(format!("{base_url}/api/v1/orders"))
            .bearer_auth(API_TOKEN)
            .json(&json!({ "amount_fen": 100 + i, "description": "备份-测试商品", "merchant_order_id": id }))
            .send();
        tokio::select! {
            _ = stop.notified() => return,
            res = send => {
                let res = res.expect("the server answers");
                assert_eq!(res.status(), 201, "order {id}");
                acknowledged.lock().unwrap().push(id);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_write_load_holds_every_acknowledged_order() {
    let sim = start_simulator(fast_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite(&dir);
    let extra = [("JOBS", "off".to_owned())];
    let server =
        Instance::spawn_launched("server", &db.url(), &sim.api_base(), &sim.api_base(), &extra, dir.path()).await;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let load = tokio::spawn(write_load(server.base_url.clone(), acknowledged.clone(), stop.clone()));
    while acknowledged.lock().unwrap().len() < 40 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let before: BTreeSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    let env = good_env(&sim, &db.url());
    let out = run(&["backup", "--to", "backup/shop-copy.sqlite"], &env, dir.path()).await;
    let during = acknowledged.lock().unwrap().len() - before.len();
    stop.notify_one();
    load.await.unwrap();
    assert!(out.success, "{}\n{}", out.all(), server.log_text());
    let copy = dir.path().join("backup/shop-copy.sqlite");
    assert!(out.stdout.contains("backup written to backup/shop-copy.sqlite"), "{}", out.all());
    assert!(out.stdout.contains("integrity check ok"), "{}", out.all());

    let mut conn = SqliteConnection::establish(copy.to_str().unwrap()).unwrap();
    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::Text)]
        integrity_check: String,
    }
    let check: Vec<Check> = diesel::sql_query("PRAGMA integrity_check").load(&mut conn).unwrap();
    assert_eq!(check.iter().map(|c| c.integrity_check.as_str()).collect::<Vec<_>>(), ["ok"]);
    use wechat_checkout::db::schema::orders;
    let saved: BTreeSet<String> =
        orders::table.select(orders::merchant_order_id).load::<String>(&mut conn).unwrap().into_iter().collect();
    let missing: Vec<&String> = before.difference(&saved).collect();
    assert!(missing.is_empty(), "acknowledged before the backup but not in it: {missing:?}");
    eprintln!(
        "{} orders acknowledged before the backup, {during} while it ran, {} in the copy",
        before.len(),
        saved.len()
    );

    // A second backup to the same file is refused, and the first copy stays as it was.
    let again = run(&["backup", "--to", "backup/shop-copy.sqlite"], &env, dir.path()).await;
    assert!(!again.success && again.stderr.contains("already exists"), "{}", again.all());
    server.stop();
}
