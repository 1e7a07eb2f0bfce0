//! The benchmark driver behind `bench/run`: per backend it starts the release server on a fresh
//! database, seeds real orders through the API, drives each workload with its own load generator, checks what the
//! answers and the database say, and prints one table of figures against their targets.
// Rates, latencies and mebibytes are measurements, not money.
#![allow(clippy::float_arithmetic)]

mod database;
mod loadgen;
mod report;
mod server;
mod shopper;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use wechat_checkout::wxpay::v3::MerchantKey;

use database::BenchDb;
use loadgen::{Figures, Load, Mode, Req};
use report::Table;
use server::{API_TOKEN, Server};

#[derive(Parser, Debug)]
#[command(about = "Benchmarks wechat-checkout's hot paths on SQLite and PostgreSQL and prints a table")]
struct Args {
    /// The release server binary (bench/run builds it).
    #[arg(long)]
    server: PathBuf,
    /// Backends to measure: sqlite, postgres, or both.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<String>,
    /// PostgreSQL server to create the bench database on (a fresh database, dropped afterwards).
    #[arg(long, env = "BENCH_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres: String,
    /// Distinct signed notifies, one per order.
    #[arg(long, default_value_t = 30_000)]
    notifies: usize,
    /// Orders in the duplicate storm (each notify sent 5 times).
    #[arg(long, default_value_t = 4_000)]
    storm_orders: usize,
    /// PAYING orders for the checkout and status pages.
    #[arg(long, default_value_t = 500)]
    paying: usize,
    /// Length of the checkout and status runs, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Threads of the load generator (it shares the machine with the server).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The WeChat Pay API the server is on, which decides the notifies sent: v2 (signed XML) or
    /// v3 (signed JSON with an AES-256-GCM resource, verified with the WeChat Pay public key).
    #[arg(long, default_value = "v2", value_parser = ["v2", "v3"])]
    api_version: String,
}

/// The WeChat Pay public key ID the v3 bench's server is given with the key it signs notifies with.
const BENCH_PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0100000000000000000000000001";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut table = Table::default();
    for backend in &args.backends {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = match backend.as_str() {
            "sqlite" => BenchDb::Sqlite(dir.path().join("bench.sqlite").to_string_lossy().into_owned()),
            "postgres" => match BenchDb::postgres(&args.postgres) {
                Ok(db) => db,
                Err(e) => {
                    eprintln!("PostgreSQL skipped: {} does not answer ({e})", args.postgres);
                    continue;
                }
            },
            other => panic!("unknown backend {other}: sqlite or postgres"),
        };
        eprintln!("== {} ==", db.name());
        run_backend(&args, &db, dir.path(), &mut table).await;
        db.drop_database();
    }
    table.print();
}

/// Runs one workload against the server and prints its line of progress.
struct Driver<'a> {
    args: &'a Args,
    addr: std::net::SocketAddr,
}

impl Driver<'_> {
    fn load(
        &self,
        requests: Vec<Req>,
        mode: Mode,
        headers: &[(&'static str, String)],
        status: u16,
        body: &'static str,
    ) -> Figures {
        let load = Load {
            addr: self.addr,
            requests,
            mode,
            headers: headers.to_vec(),
            expect_status: status,
            expect_body: body,
            connections: self.args.connections,
            threads: self.args.threads,
        };
        let f = loadgen::run(load);
        eprintln!(
            "   {} answers in {:?}: {}/s, p50 {} µs, p99 {} µs, {} unexpected",
            f.answered,
            f.elapsed,
            f.per_second(),
            f.p50_us,
            f.p99_us,
            f.unexpected
        );
        f
    }
}

async fn run_backend(args: &Args, db: &BenchDb, dir: &std::path::Path, table: &mut Table) {
    // Under v3 the server verifies notifies with a public key whose private half signs them here.
    let platform = (args.api_version == "v3").then(|| MerchantKey::generate().expect("an RSA key pair"));
    let extra_env: Vec<(&str, String)> = match &platform {
        Some(key) => vec![
            ("WECHAT_API_VERSION", "v3".to_owned()),
            ("WECHAT_PLATFORM_PUBLIC_KEY", key.public_key_pem()),
            ("WECHAT_PLATFORM_PUBLIC_KEY_ID", BENCH_PUBLIC_KEY_ID.to_owned()),
        ],
        None => Vec::new(),
    };
    let server = Server::start(&args.server, db.url(), dir, &extra_env);
    let base = server.base_url();
    tokio::time::sleep(Duration::from_secs(2)).await;
    table.memory_idle(db.name(), server.rss_kib(), server.start_to_first_answer);
    let driver = Driver { args, addr: ([127, 0, 0, 1], server.port).into() };

    let total = args.notifies + args.storm_orders + args.paying;
    let api = [("authorization", format!("Bearer {API_TOKEN}")), ("content-type", "application/json".to_owned())];
    eprintln!(" creating {total} orders through the API");
    let created = driver.load(workloads::create_orders(total), Mode::Once, &api, 201, "\"out_trade_no\"");
    let orders = db.orders();
    table.create(db.name(), &created, orders.len() == total);

    let (notified, rest) = orders.split_at(args.notifies.min(orders.len()));
    let (storm, paying) = rest.split_at(args.storm_orders.min(rest.len()));
    let notifies = |set: &[(String, i64)], first: usize, copies: usize| match &platform {
        Some(key) => workloads::notifies_v3(set, first, copies, key, BENCH_PUBLIC_KEY_ID),
        None => workloads::notifies(set, first, copies),
    };
    let xml = match platform {
        Some(_) => Vec::new(),
        None => vec![("content-type", "text/xml".to_owned())],
    };
    eprintln!(" {} distinct notifies ({})", notified.len(), args.api_version);
    let distinct = notifies(notified, 0, 1);
    let sampler = server.sample_rss();
    let notify = driver.load(distinct, Mode::Once, &xml, 200, "SUCCESS");
    eprintln!(" duplicate storm: {} orders x 5", storm.len());
    let stormed = driver.load(notifies(storm, args.notifies, 5), Mode::Once, &xml, 200, "SUCCESS");
    let peak_kib = sampler.finish();
    let (states, transitions) = (db.states(), db.paid_transitions());
    let all_paid = |set: &[(String, i64)]| set.iter().all(|(no, _)| states.get(no).is_some_and(|s| s == "PAID"));
    let once = storm.iter().all(|(no, _)| transitions.get(no) == Some(&1));
    table.notify(db.name(), &args.api_version, &notify, all_paid(notified));
    table.storm(db.name(), &args.api_version, &stormed, all_paid(storm) && once);
    table.memory_load(db.name(), peak_kib);
    if platform.is_some() {
        // The page and status figures do not depend on the protocol, and under v3 the server
        // verifies with the bench's key, not the simulator's, so it cannot prepay here.
        server.stop();
        return;
    }

    let paying: Vec<String> = paying.iter().map(|(no, _)| no.clone()).collect();
    let shopper = shopper::Shopper::new(&base);
    let cookie = shopper.sign_in(&paying[0]).await;
    shopper.make_paying(&paying).await;
    let browser = [("cookie", cookie), ("user-agent", shopper::WECHAT_UA.to_owned())];
    let run_for = Mode::For(Duration::from_secs(args.seconds));
    eprintln!(" checkout page of {} PAYING orders for {} s", paying.len(), args.seconds);
    let page = driver.load(workloads::gets(&paying, |no| format!("/pay/{no}")), run_for, &browser, 200, "立即支付");
    table.checkout(db.name(), &page);

    let mut polled = paying.clone();
    polled.extend(notified.iter().take(paying.len()).map(|(no, _)| no.clone()));
    let before = db.fingerprint();
    eprintln!(" status of {} PAYING and PAID orders for {} s", polled.len(), args.seconds);
    let status =
        driver.load(workloads::gets(&polled, |no| format!("/pay/{no}/status")), run_for, &[], 200, "\"state\"");
    tokio::time::sleep(Duration::from_millis(500)).await;
    table.status(db.name(), &status, before == db.fingerprint());
    server.stop();
}
