//! Latency of the admin order list on 1,000,000 orders, on SQLite and (when `TEST_DATABASE_URL`
//! is set) PostgreSQL: the first page, a deep page (a cursor half way down), a filtered page
//! (state + Beijing date range + amount range) and a search by id, plus the dashboard and a full
//! CSV export for scale. The goal is a p95 under 30 ms for each list case on both backends.
//!
//! `cargo bench --bench admin_list` seeds a fresh database with batched multi-row INSERTs (90 days
//! of orders in a realistic mix of states and amounts, paid ones with transaction ids, some
//! refunded), starts the real app on a local port, signs in, and times N requests per case over
//! HTTP, printing p50/p95/max. `ADMIN_BENCH_ROWS` and `ADMIN_BENCH_REQUESTS` override the sizes;
//! without `--bench` (as `cargo test --benches` runs it) it does a quick 20,000-row pass.
//! `ADMIN_BENCH_EXTRA_SQL` runs after seeding on both backends (to try an index), `ADMIN_BENCH_SQLITE_PATH`
//! keeps the SQLite file (for EXPLAIN QUERY PLAN), `ADMIN_BENCH_SQLITE_ANALYZE=1` runs ANALYZE on it.
#![allow(clippy::float_arithmetic, reason = "timings and rates, never money")]

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, NaiveDateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};
use wechat_checkout::domain::listing::Key;
use wechat_checkout::web::admin::orders::encode_cursor;
use wechat_checkout::wxpay::time::{beijing_date, format_compact};

const FULL_ROWS: u64 = 1_000_000;
const QUICK_ROWS: u64 = 20_000;
const FULL_REQUESTS: usize = 300;
const QUICK_REQUESTS: usize = 20;
const DAYS: u64 = 90;
/// Rows per INSERT statement, and per transaction.
const ROWS_PER_INSERT: u64 = 500;
const ROWS_PER_TX: u64 = 50_000;
const GOAL: Duration = Duration::from_millis(30);
const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-password-123";

const DESCRIPTIONS: &[&str] = &[
    "演示商店-龙井茶 250g",
    "美团外卖-黄焖鸡米饭（大份）",
    "京东商城-Apple iPhone 15 Pro 256GB",
    "滴滴出行-快车",
    "星巴克-大杯拿铁, 燕麦奶",
    "网易云音乐-黑胶VIP 年卡",
    "拼多多-纸巾 100抽×24包",
    "瑞幸咖啡-生椰拿铁",
];

/// Numbers kept from the seeded orders to search for.
#[derive(Default)]
struct Samples {
    ids: Vec<String>,
}

fn ts(t: NaiveDateTime) -> String {
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f"))
}

fn text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn opt(s: Option<String>) -> String {
    s.unwrap_or_else(|| "NULL".into())
}

/// Generates order `i` of `n` as a VALUES tuple (and, when refunded, a refunds tuple).
fn order_row(
    rng: &mut SmallRng,
    i: u64,
    n: u64,
    start: DateTime<Utc>,
    samples: &mut Samples,
) -> (String, Option<String>) {
    let span = (DAYS * 86_400 * 1_000_000) as i64;
    let step = span / n as i64;
    let created =
        start + chrono::Duration::microseconds(i as i64 * step + rng.random_range(0..step.max(1) as u64) as i64);
    let age_hours = (Utc::now() - created).num_hours();
    let roll = rng.random_range(0..100);
    let state = match roll {
        _ if age_hours < 2 && roll < 40 => "PAYING",
        0..=64 => "PAID",
        65..=92 => "CLOSED",
        93..=95 => "PAYING",
        96..=97 => "CREATED",
        _ => "PAYERROR",
    };
    let amount = match rng.random_range(0..100) {
        0..=39 => 100 + rng.random_range(0..4_900),
        40..=79 => 5_000 + rng.random_range(0..25_000),
        80..=97 => 30_000 + rng.random_range(0..170_000),
        _ => 200_000 + rng.random_range(0..1_800_000),
    } as i64;
    let out_trade_no = format!("WC{}{i:012}", format_compact(created));
    let merchant_order_id = format!("SO{:010}{:04}", i, rng.random_range(0..10_000));
    let paid = state == "PAID";
    let transaction_id = paid.then(|| format!("4200{:06}{:018}", 1000 + rng.random_range(0..9000), i));
    let paid_at = paid.then(|| created + chrono::Duration::seconds(5 + rng.random_range(0..600) as i64));
    let refunded = if paid && rng.random_range(0..100) < 3 { amount / (1 + rng.random_range(0..3) as i64) } else { 0 };
    let closed_at = (state == "CLOSED").then(|| created + chrono::Duration::hours(2));
    if i.is_multiple_of(3_331) {
        samples.ids.push(out_trade_no.clone());
        samples.ids.push(merchant_order_id.clone());
        if let Some(t) = &transaction_id {
            samples.ids.push(t.clone());
        }
    }
    let c = created.naive_utc();
    let row = format!(
        "({},{},{amount},{},{},'MD5',{},{},{},{},{},{refunded},{refunded},{},{},{},{})",
        text(&out_trade_no),
        text(&merchant_order_id),
        text(DESCRIPTIONS[rng.random_range(0..DESCRIPTIONS.len() as u64) as usize]),
        text(state),
        opt((state != "CREATED")
            .then(|| text(&format!("oUpF8uMuAJO_M2pxb1Q9zNjW{:08}", rng.random_range(0..100_000_000))))),
        opt((state != "CREATED").then(|| text(&format!("wx{:030}", i)))),
        opt(transaction_id.as_deref().map(text)),
        opt(paid.then(|| amount.to_string())),
        opt(paid_at.map(|t| ts(t.naive_utc()))),
        ts(c),
        ts(paid_at.map_or(c, |t| t.naive_utc())),
        ts(c + chrono::Duration::hours(2)),
        opt(closed_at.map(|t| ts(t.naive_utc()))),
    );
    let refund = (refunded > 0).then(|| {
        if samples.ids.len().is_multiple_of(7) {
            samples.ids.push(format!("RF{i:012}"));
        }
        format!(
            "({},{},{refunded},'顾客申请','SUCCESS','admin',{},{})",
            text(&format!("RF{i:012}")),
            text(&out_trade_no),
            ts(c + chrono::Duration::days(1)),
            ts(c + chrono::Duration::days(1))
        )
    });
    (row, refund)
}

const INSERT_ORDERS: &str = "INSERT INTO orders (out_trade_no, merchant_order_id, amount_fen, description, state, \
     sign_type, openid, prepay_id, transaction_id, paid_fen, paid_at, refunded_fen, refund_reserved_fen, created_at, \
     updated_at, expires_at, closed_at) VALUES ";
const INSERT_REFUNDS: &str = "INSERT INTO refunds (out_refund_no, out_trade_no, amount_fen, reason, state, \
     requested_by, created_at, updated_at) VALUES ";

/// Seeds `n` orders over the last 90 days; returns numbers to search for.
fn seed(conn: &mut impl SimpleConnection, n: u64) -> Samples {
    // Seeded: every run seeds the same orders.
    let mut rng = SmallRng::seed_from_u64(42);
    let mut samples = Samples::default();
    let start = Utc::now() - chrono::Duration::days(DAYS as i64);
    let mut i = 0;
    while i < n {
        let tx_end = (i + ROWS_PER_TX).min(n);
        let mut sql = String::from("BEGIN;\n");
        while i < tx_end {
            let end = (i + ROWS_PER_INSERT).min(tx_end);
            let (mut rows, mut refunds) = (Vec::new(), Vec::new());
            for j in i..end {
                let (row, refund) = order_row(&mut rng, j, n, start, &mut samples);
                rows.push(row);
                refunds.extend(refund);
            }
            sql.push_str(INSERT_ORDERS);
            sql.push_str(&rows.join(","));
            sql.push_str(";\n");
            if !refunds.is_empty() {
                sql.push_str(INSERT_REFUNDS);
                sql.push_str(&refunds.join(","));
                sql.push_str(";\n");
            }
            i = end;
        }
        sql.push_str("COMMIT;");
        conn.batch_execute(&sql).expect("seed batch");
    }
    samples
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Timestamp)]
    created_at: NaiveDateTime,
    #[diesel(sql_type = Text)]
    out_trade_no: String,
}

/// Cursors around the middle of the unfiltered list, found with OFFSET (here in the bench only,
/// never in the app) through `first_key`.
fn deep_cursors(n: u64, mut first_key: impl FnMut(String) -> KeyRow) -> Vec<String> {
    (0..10)
        .map(|k| {
            let offset = n * (45 + k) / 100;
            let row = first_key(format!(
                "SELECT created_at, out_trade_no FROM orders ORDER BY created_at DESC, out_trade_no DESC \
                 LIMIT 1 OFFSET {offset}"
            ));
            encode_cursor(&Key { created_at: row.created_at, out_trade_no: row.out_trade_no })
        })
        .collect()
}

struct Stats {
    p50: Duration,
    p95: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |p: usize| v[((v.len() * p).div_ceil(100)).saturating_sub(1).min(v.len() - 1)];
    Stats { p50: at(50), p95: at(95), max: *v.last().unwrap() }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn figment(port: u16, db_url: &str) -> rocket::figment::Figment {
    rocket::Config::figment()
        .merge(("address", "127.0.0.1"))
        .merge(("port", port))
        .merge(("log_level", "off"))
        .merge(("shutdown.ctrlc", false))
        .merge(("secret_key", "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk="))
        .merge(("database_url", db_url))
        .merge(("public_base_url", format!("http://127.0.0.1:{port}")))
        .merge(("api_token", "bench-token-0123456789abcdefghij"))
        .merge(("simulator", "on"))
        .merge(("admin_username", ADMIN_USER))
        .merge(("admin_password", ADMIN_PASSWORD))
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Starts the app on `db_url`, signs in, and times every case.
async fn measure(backend: &str, db_url: &str, n: u64, requests: usize, samples: &Samples, deep: &[String]) -> bool {
    let port = free_port();
    let rocket = wechat_checkout::app::build_rocket_from(figment(port, db_url)).expect("app builds");
    let rocket = rocket.ignite().await.expect("app ignites");
    let shutdown = rocket.shutdown();
    tokio::spawn(rocket.launch());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    for _ in 0..400 {
        if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let login = http.get(format!("{base}/admin/login")).send().await.unwrap().text().await.unwrap();
    let res = http
        .post(format!("{base}/admin/login"))
        .form(&[("username", ADMIN_USER), ("password", ADMIN_PASSWORD), ("csrf", &csrf_of(&login)), ("next", "/admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "sign-in");

    let today = beijing_date(Utc::now());
    let (from, to) = (today - Days::new(60), today - Days::new(30));
    let filtered = format!("/admin/orders?state=PAID&from={from}&to={to}&min=10&max=200");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("first page", vec!["/admin/orders".into()]),
        ("deep page (~50%)", deep.iter().map(|c| format!("/admin/orders?after={c}")).collect()),
        ("filtered page", vec![filtered.clone()]),
        ("filtered, page 2+", Vec::new()),
        ("search by id", samples.ids.iter().map(|q| format!("/admin/orders?q={q}")).collect()),
        ("dashboard", vec!["/admin".into()]),
    ];
    // The filtered list's later pages: follow "下一页" a few times.
    let mut cases = cases;
    let mut url = filtered;
    let mut later = Vec::new();
    for _ in 0..5 {
        let html = http.get(format!("{base}{url}")).send().await.unwrap().text().await.unwrap();
        let Some(at) = html.find("rel=\"next\"") else { break };
        let start = html[..at].rfind("href=\"").unwrap() + 6;
        url = html[start..].split('"').next().unwrap().replace("&#38;", "&").replace("&amp;", "&");
        later.push(url.clone());
    }
    cases[3].1 = later;

    println!("\n{backend}: {n} orders, {requests} requests per case (after 10 warm-up requests)");
    println!("{:<20} {:>9} {:>9} {:>9}  rows", "case", "p50 ms", "p95 ms", "max ms");
    let mut all_ok = true;
    for (name, urls) in &cases {
        if urls.is_empty() {
            continue;
        }
        let mut times = Vec::with_capacity(requests);
        let mut rows = 0;
        for k in 0..requests + 10 {
            let url = format!("{base}{}", urls[k % urls.len()]);
            let started = Instant::now();
            let res = http.get(&url).send().await.unwrap();
            let status = res.status();
            let body = res.text().await.unwrap();
            let took = started.elapsed();
            assert!(status.is_success(), "{url}: {status}");
            if k >= 10 {
                times.push(took);
                rows = body.matches("<a href=\"/admin/orders/").count();
            }
        }
        let s = stats(times);
        let is_list = *name != "dashboard";
        let verdict = if !is_list {
            ""
        } else if s.p95 < GOAL {
            "ok"
        } else {
            "MISSES the 30 ms goal"
        };
        all_ok &= !is_list || s.p95 < GOAL;
        println!("{:<20} {:>9.2} {:>9.2} {:>9.2}  {:>4}  {verdict}", name, ms(s.p50), ms(s.p95), ms(s.max), rows);
    }

    // A whole export, to see it stream with flat memory.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = proc_status_kib("VmRSS:");
    let started = Instant::now();
    let mut res = http.get(format!("{base}/admin/orders.csv")).send().await.unwrap();
    let (mut bytes, mut lines, mut last) = (0usize, 0usize, 0u8);
    while let Some(chunk) = res.chunk().await.unwrap() {
        bytes += chunk.len();
        // Record ends may straddle chunks.
        for &b in chunk.iter() {
            if b == b'\n' && last == b'\r' {
                lines += 1;
            }
            last = b;
        }
    }
    let took = started.elapsed();
    println!(
        "CSV export: {} records, {:.1} MiB in {:.2} s ({:.0} rows/s); RSS {:.0} MiB before, peak {:.0} MiB",
        lines.saturating_sub(1),
        bytes as f64 / 1048576.0,
        took.as_secs_f64(),
        lines as f64 / took.as_secs_f64(),
        rss_before as f64 / 1024.0,
        proc_status_kib("VmHWM:") as f64 / 1024.0,
    );
    shutdown.notify();
    tokio::time::sleep(Duration::from_millis(300)).await;
    all_ok
}

fn main() {
    // `cargo bench` passes --bench; anything else (cargo test --benches) gets the quick pass.
    let full = std::env::args().any(|a| a == "--bench");
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let n = env("ADMIN_BENCH_ROWS").unwrap_or(if full { FULL_ROWS } else { QUICK_ROWS }).max(1000);
    let requests =
        env("ADMIN_BENCH_REQUESTS").map_or(if full { FULL_REQUESTS } else { QUICK_REQUESTS }, |r| r as usize);
    let analyze_sqlite = std::env::var("ADMIN_BENCH_SQLITE_ANALYZE").is_ok_and(|v| v == "1");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let mut all_ok = true;

    // Extra SQL run after seeding on both backends, to try an index before proposing it.
    let extra_sql = std::env::var("ADMIN_BENCH_EXTRA_SQL").ok().filter(|s| !s.trim().is_empty());
    let dir = tempfile::tempdir().expect("temp dir");
    // ADMIN_BENCH_SQLITE_PATH keeps the SQLite file for EXPLAIN QUERY PLAN afterwards.
    let url = std::env::var("ADMIN_BENCH_SQLITE_PATH")
        .unwrap_or_else(|_| dir.path().join("bench.sqlite").to_string_lossy().into_owned());
    let _ = std::fs::remove_file(&url);
    wechat_checkout::db::migrate::run_pending(&url).expect("migrations");
    let mut conn = SqliteConnection::establish(&url).expect("sqlite");
    // Loading only: the app's own connections keep synchronous=FULL.
    conn.batch_execute("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;").unwrap();
    let started = Instant::now();
    let samples = seed(&mut conn, n);
    if let Some(sql) = &extra_sql {
        conn.batch_execute(sql).expect("ADMIN_BENCH_EXTRA_SQL");
    }
    if analyze_sqlite {
        conn.batch_execute("ANALYZE;").unwrap();
    }
    conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    println!(
        "SQLite: seeded {n} orders in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if analyze_sqlite { " (ANALYZEd)" } else { "" }
    );
    let deep = deep_cursors(n, |sql| diesel::sql_query(sql).get_result::<KeyRow>(&mut conn).expect("deep key"));
    drop(conn);
    all_ok &= runtime.block_on(measure("SQLite", &url, n, requests, &samples, &deep));

    match std::env::var("TEST_DATABASE_URL") {
        Err(_) => println!("\nTEST_DATABASE_URL not set: PostgreSQL run skipped"),
        Ok(admin_url) => {
            let name =
                format!("wc_bench_{}", wechat_checkout::wxpay::nonce::random_alphanumeric(10).to_ascii_lowercase());
            let mut admin = PgConnection::establish(&admin_url).expect("TEST_DATABASE_URL connects");
            admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create bench database");
            let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(b, _)| b);
            let url = format!("{base}/{name}");
            wechat_checkout::db::migrate::run_pending(&url).expect("migrations");
            let mut conn = PgConnection::establish(&url).expect("postgres");
            let started = Instant::now();
            let samples = seed(&mut conn, n);
            if let Some(sql) = &extra_sql {
                conn.batch_execute(sql).expect("ADMIN_BENCH_EXTRA_SQL");
            }
            // What autovacuum would do shortly after a bulk load.
            for table in ["orders", "refunds"] {
                conn.batch_execute(&format!("VACUUM ANALYZE {table}")).unwrap();
            }
            println!("\nPostgreSQL: seeded {n} orders in {:.1} s", started.elapsed().as_secs_f64());
            let deep = deep_cursors(n, |sql| diesel::sql_query(sql).get_result::<KeyRow>(&mut conn).expect("deep key"));
            drop(conn);
            all_ok &= runtime.block_on(measure("PostgreSQL", &url, n, requests, &samples, &deep));
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
    println!(
        "\n{}",
        if all_ok { "every list case is under the 30 ms p95 goal" } else { "some list case MISSES the 30 ms p95 goal" }
    );
}
