//! Time and peak memory of one day's reconciliation: the ALL bill of 1,000,000 payments (1,020,002
//! rows with the day's refunds) against 1,000,000 local paid orders, on SQLite and (when
//! `BENCH_DATABASE_URL` or `TEST_DATABASE_URL` is set) PostgreSQL. The goal is under 10 s and under
//! 256 MiB per run.
//!
//! `cargo bench --bench reconcile` seeds a fresh database with batched multi-row INSERTs (as
//! `admin_list` does): N orders PAID across one Beijing day (2024-05-01, the first exactly at
//! midnight), one in fifty refunded the same day, a few paid just outside the day (the window's
//! edges: they must be left alone) and two stuck in PAYING. It then writes the day's ALL bill, GZIP,
//! with the simulator's bill writer (records generated on the fly, as `bill_parse` does), matching
//! the orders except for planted differences of every kind the reconciler reports: payments missing
//! on each side, amount differences, paid-not-local (confirmed through orderquery), and refunds
//! missing on each side or differing in amount or status. Every fact of an order is a pure
//! function of its index, so seeder, bill writer, gateway double and checks agree without sharing
//! state. The run's figures and the exact set of findings are asserted: a reconciler that reports
//! wrong numbers fails the bench.
//!
//! What is timed is one call of `reconcile_date`, the job's own entry point, in a child process
//! started for it, so that neither the seeding nor the bill writing can inflate its peak RSS (the
//! child's VmHWM is also reset right before the call). The call covers the claim, the "download"
//! (a gateway double hard-links the pre-written bill into `bill_dir`: no network, no simulator), parsing
//! the GZIP bill into `BillSide`, the keyset walk of the day's paid orders and refunds, the look-ups
//! of unmatched bill rows, recording findings and exceptions, orderquery for the paid-not-local
//! ones (answered by the double), and storing the figures. Not timed: seeding, writing the bill,
//! starting the child (runtime, pool), checking the results. The peak includes the child's runtime
//! and connection pool, as a `wechat-checkout reconcile --date` process would.
//!
//! It prints the time per phase, rows/s, peak RSS and whether the goal is met; it never fails on
//! a threshold. `RECONCILE_BENCH_ROWS` overrides N; without `--bench` (as `cargo test --benches`
//! runs it) it does a quick 20,000-order pass. `RECONCILE_BENCH_KEEP=1` keeps the temporary
//! directory (SQLite file and bill) and prints where it is.
#![allow(clippy::float_arithmetic, reason = "timings and rates, never money")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};
use serde::{Deserialize, Serialize};
use wechat_checkout::config::AppConfig;
use wechat_checkout::db::Db;
use wechat_checkout::db::reconciliation;
use wechat_checkout::domain::reconciliation::RunFigures;
use wechat_checkout::domain::reconciliation::RunState;
use wechat_checkout::jobs::JobContext;
use wechat_checkout::payments::Payments;
use wechat_checkout::payments::reconcile::findings::FindingKind;
use wechat_checkout::payments::reconcile::progress::{Phase, Progress};
use wechat_checkout::payments::reconcile::{self as reconcile_job, RunOptions, RunOutcome};
use wechat_checkout::simulator::bill_text::{BillLayout, BillRecord, BillRecordKind, BillTotals, write_bill_gzip};
use wechat_checkout::wxpay::download_bill::{BillDownload, DownloadBill};
use wechat_checkout::wxpay::order_query::{CloseOrder, OrderQuery, OrderQueryReply};
use wechat_checkout::wxpay::refund::{Refund, RefundQuery, RefundQueryReply, RefundReply};
use wechat_checkout::wxpay::time::{beijing_day_start, format_compact};
use wechat_checkout::wxpay::types::{BillType, OrderRef, TradeState};
use wechat_checkout::wxpay::unified_order::{UnifiedOrder, UnifiedOrderReply};
use wechat_checkout::wxpay::{Fen, Fields, Merchant, PayGateway, WxError};

const FULL_ORDERS: u64 = 1_000_000;
const QUICK_ORDERS: u64 = 20_000;
const GOAL: Duration = Duration::from_secs(10);
const RSS_GOAL_KIB: u64 = 256 * 1024;
/// Rows per INSERT statement, and per transaction (as in `admin_list`).
const ROWS_PER_INSERT: usize = 500;
const ROWS_PER_TX: usize = 50_000;
/// One order in this many is refunded the day it was paid.
const REFUND_EVERY: u64 = 50;
const CHILD_FLAG: &str = "--reconcile-child";
const RESULT_PREFIX: &str = "RESULT ";

fn bill_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()
}

/// SplitMix64's finalizer of (index, salt): a deterministic "random" fact of one order.
fn mix(i: u64, salt: u64) -> u64 {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A planted difference on one of the day's orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plant {
    /// Left out of the bill.
    MissingAtWechat,
    /// Billed one fen more than paid.
    AmountDiffers,
    /// Its refund is left out of the bill.
    RefundMissingAtWechat,
    /// Its refund is billed one fen more.
    RefundAmountDiffers,
    /// Its refund FAILED here; the bill shows it paid out.
    RefundStatusDiffers,
}

/// Orders outside the day's `0..n`, as offsets from `n`: kept clear of each other.
const PAID_NOT_LOCAL: [u64; 2] = [0, 1];
const MISSING_LOCAL: [u64; 3] = [10, 11, 12];
const REFUND_MISSING_LOCAL: [u64; 2] = [20, 21];
const NEIGHBOURS_FROM: u64 = 100;

/// The day's orders and bill, as functions of `n`.
struct Plan {
    n: u64,
    start: DateTime<Utc>,
    plants: HashMap<u64, Plant>,
    neighbours: u64,
}

impl Plan {
    fn new(n: u64) -> Plan {
        let mut plan =
            Plan { n, start: beijing_day_start(bill_date()), plants: HashMap::new(), neighbours: (n / 100).max(4) };
        let wanted = [
            (Plant::MissingAtWechat, 3, false),
            (Plant::AmountDiffers, 3, false),
            (Plant::RefundMissingAtWechat, 2, true),
            (Plant::RefundAmountDiffers, 2, true),
            (Plant::RefundStatusDiffers, 1, true),
        ];
        let mut slot = 0;
        for (plant, count, refunded) in wanted {
            for _ in 0..count {
                slot += 1;
                let mut i = n * slot / 12;
                while plan.is_refunded(i) != refunded || plan.plants.contains_key(&i) {
                    i += 1;
                }
                plan.plants.insert(i, plant);
            }
        }
        plan
    }

    fn plant(&self, i: u64) -> Option<Plant> {
        self.plants.get(&i).copied()
    }

    fn paid_not_local(&self) -> impl Iterator<Item = u64> {
        PAID_NOT_LOCAL.map(|k| self.n + k).into_iter()
    }

    fn missing_local(&self) -> impl Iterator<Item = u64> {
        MISSING_LOCAL.map(|k| self.n + k).into_iter()
    }

    fn refund_missing_local(&self) -> impl Iterator<Item = u64> {
        REFUND_MISSING_LOCAL.map(|k| self.n + k).into_iter()
    }

    fn neighbours(&self) -> std::ops::Range<u64> {
        self.n + NEIGHBOURS_FROM..self.n + NEIGHBOURS_FROM + self.neighbours
    }

    fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::days(1)
    }

    /// When order `i` was paid (or, for the extras, billed): the day's orders spread evenly over
    /// the day, the first at midnight exactly; neighbours just before the day and from its end on.
    fn paid_at(&self, i: u64) -> DateTime<Utc> {
        if i < self.n {
            let step = 86_400_000_000 / self.n;
            let jitter = if i == 0 { 0 } else { mix(i, 1) % step };
            return self.start + chrono::Duration::microseconds((i * step + jitter) as i64);
        }
        if self.neighbours().contains(&i) {
            let k = (i - self.n - NEIGHBOURS_FROM) as i64;
            return match k {
                0 => self.start - chrono::Duration::microseconds(1),
                1 => self.end(),
                _ if k % 2 == 0 => self.start - chrono::Duration::seconds(37 * k),
                _ => self.end() + chrono::Duration::seconds(37 * k),
            };
        }
        self.start + chrono::Duration::hours(12) + chrono::Duration::seconds((i - self.n) as i64)
    }

    fn created_at(&self, i: u64) -> DateTime<Utc> {
        self.paid_at(i) - chrono::Duration::seconds(5 + (mix(i, 2) % 600) as i64)
    }

    /// The real format: `WC` + Beijing creation time + 12 digits (here the index).
    fn order_no(&self, i: u64) -> String {
        format!("WC{}{i:012}", format_compact(self.created_at(i)))
    }

    /// The index back from an order number.
    fn index_of(no: &str) -> Option<u64> {
        no.get(no.len().checked_sub(12)?..)?.parse().ok()
    }

    fn amount(&self, i: u64) -> i64 {
        let r = mix(i, 3);
        (match r % 100 {
            0..=39 => 100 + r / 100 % 4_900,
            40..=79 => 5_000 + r / 100 % 25_000,
            80..=97 => 30_000 + r / 100 % 170_000,
            _ => 200_000 + r / 100 % 1_800_000,
        }) as i64
    }

    fn bill_amount(&self, i: u64) -> i64 {
        self.amount(i) + i64::from(self.plant(i) == Some(Plant::AmountDiffers))
    }

    fn transaction_id(&self, i: u64) -> String {
        format!("4200{:06}{i:018}", 1000 + mix(i, 4) % 9000)
    }

    fn is_refunded(&self, i: u64) -> bool {
        i < self.n && i % REFUND_EVERY == 7
    }

    /// Refunded within the hour after payment, never past the day's end.
    fn refund_at(&self, i: u64) -> DateTime<Utc> {
        let at = self.paid_at(i) + chrono::Duration::seconds(60 + (mix(i, 5) % 3600) as i64);
        at.min(self.end() - chrono::Duration::seconds(1))
    }

    fn refund_no(&self, i: u64) -> String {
        format!("RF{}{i:012}", format_compact(self.refund_at(i)))
    }

    fn refund_amount(&self, i: u64) -> i64 {
        (self.amount(i) / (1 + (mix(i, 6) % 3) as i64)).max(1)
    }

    fn bill_refund_amount(&self, i: u64) -> i64 {
        self.refund_amount(i) + i64::from(self.plant(i) == Some(Plant::RefundAmountDiffers))
    }

    fn refund_state(&self, i: u64) -> &'static str {
        if self.plant(i) == Some(Plant::RefundStatusDiffers) { "FAILED" } else { "SUCCESS" }
    }
}

// ---------------------------------------------------------------------------------------------
// The bill.

fn record(plan: &Plan, i: u64, trade_time: DateTime<Utc>, total: i64, kind: BillRecordKind) -> BillRecord {
    BillRecord {
        trade_time,
        appid: "wx2421b1c4370ec43b".into(),
        mch_id: "1900000109".into(),
        device_info: String::new(),
        transaction_id: plan.transaction_id(i),
        out_trade_no: plan.order_no(i),
        openid: format!("oUpF8uMuAJO_M2pxb1Q9zNjW{:08}", mix(i, 7) % 100_000_000),
        trade_type: "JSAPI".into(),
        bank_type: if mix(i, 8).is_multiple_of(2) { "OTHERS".into() } else { "CMB_CREDIT".into() },
        body: "演示商店-龙井茶 250g".into(),
        attach: String::new(),
        total_fee: Fen::new(total),
        coupon_fee: Fen::ZERO,
        rate_basis_points: 60,
        kind,
    }
}

fn refund_record(plan: &Plan, i: u64, out_refund_no: String, fee: i64) -> BillRecord {
    let at = plan.refund_at(i);
    let kind = BillRecordKind::Refund {
        refund_id: format!("5030{i:024}"),
        out_refund_no,
        refund_fee: Fen::new(fee),
        refund_channel: "ORIGINAL".into(),
        refund_status: "SUCCESS".into(),
        applied_at: at,
        succeeded_at: Some(at + chrono::Duration::seconds(5)),
    };
    record(plan, i, at, plan.amount(i), kind)
}

/// The bill's rows, generated lazily in the day's order, then the rows with no local counterpart.
fn bill_records(plan: &Plan) -> impl Iterator<Item = BillRecord> + '_ {
    let day = (0..plan.n).flat_map(move |i| {
        let payment = (plan.plant(i) != Some(Plant::MissingAtWechat))
            .then(|| record(plan, i, plan.paid_at(i), plan.bill_amount(i), BillRecordKind::Payment));
        let refund = (plan.is_refunded(i) && plan.plant(i) != Some(Plant::RefundMissingAtWechat))
            .then(|| refund_record(plan, i, plan.refund_no(i), plan.bill_refund_amount(i)));
        payment.into_iter().chain(refund)
    });
    let paid_elsewhere = plan
        .paid_not_local()
        .chain(plan.missing_local())
        .map(move |i| record(plan, i, plan.paid_at(i), plan.amount(i), BillRecordKind::Payment));
    // Refunds of a real order (the day's second) under numbers we never issued.
    let unknown_refunds = plan.refund_missing_local().map(move |k| {
        let mut r = refund_record(plan, 1, plan.refund_no(k), 100 + k as i64);
        if let BillRecordKind::Refund { refund_id, .. } = &mut r.kind {
            *refund_id = format!("5030{k:024}");
        }
        r
    });
    day.chain(paid_elsewhere).chain(unknown_refunds)
}

/// What a correct run stores and finds.
struct Expected {
    figures: RunFigures,
    /// (kind code, item key) of every finding.
    findings: BTreeSet<(&'static str, String)>,
    applied: u64,
}

fn expected(plan: &Plan) -> Expected {
    let mut f = RunFigures::default();
    let mut findings = BTreeSet::new();
    let mut find = |kind: FindingKind, key: String| findings.insert((kind.code(), key));
    for i in 0..plan.n {
        let plant = plan.plant(i);
        f.local_paid_count += 1;
        f.local_paid_fen += plan.amount(i);
        match plant {
            Some(Plant::MissingAtWechat) => {
                find(FindingKind::MissingAtWechat, plan.order_no(i));
            }
            Some(Plant::AmountDiffers) => {
                find(FindingKind::AmountDiffers, plan.order_no(i));
            }
            _ => f.matched += 1,
        }
        if plant != Some(Plant::MissingAtWechat) {
            f.bill_paid_count += 1;
            f.bill_paid_fen += plan.bill_amount(i);
        }
        if !plan.is_refunded(i) {
            continue;
        }
        match plant {
            Some(Plant::RefundMissingAtWechat) => {
                find(FindingKind::RefundMissingAtWechat, plan.refund_no(i));
                continue;
            }
            Some(Plant::RefundAmountDiffers) => {
                find(FindingKind::RefundAmountDiffers, plan.refund_no(i));
            }
            Some(Plant::RefundStatusDiffers) => {
                find(FindingKind::RefundStatusDiffers, plan.refund_no(i));
            }
            _ => f.matched += 1,
        }
        f.bill_refund_count += 1;
        f.bill_refund_fen += plan.bill_refund_amount(i);
    }
    for i in plan.paid_not_local() {
        find(FindingKind::PaidNotLocal, plan.order_no(i));
    }
    for i in plan.missing_local() {
        find(FindingKind::MissingLocal, plan.order_no(i));
    }
    for i in plan.paid_not_local().chain(plan.missing_local()) {
        f.bill_paid_count += 1;
        f.bill_paid_fen += plan.amount(i);
    }
    for k in plan.refund_missing_local() {
        find(FindingKind::RefundMissingLocal, plan.refund_no(k));
        f.bill_refund_count += 1;
        f.bill_refund_fen += 100 + k as i64;
    }
    f.bill_rows = f.bill_paid_count + f.bill_refund_count;
    f.findings = findings.len() as i64;
    Expected { figures: f, findings, applied: PAID_NOT_LOCAL.len() as u64 }
}

// ---------------------------------------------------------------------------------------------
// Seeding.

/// A timestamp literal in the text diesel writes on SQLite (`%F %T%.f`), so that keyset bounds
/// read back and bound again compare as the app's own rows do.
fn ts(t: DateTime<Utc>) -> String {
    format!("'{}'", t.naive_utc().format("%Y-%m-%d %H:%M:%S%.f"))
}

const INSERT_ORDERS: &str = "INSERT INTO orders (out_trade_no, merchant_order_id, amount_fen, description, state, \
     sign_type, openid, prepay_id, transaction_id, paid_fen, paid_at, refunded_fen, refund_reserved_fen, created_at, \
     updated_at, expires_at) VALUES ";
const INSERT_REFUNDS: &str = "INSERT INTO refunds (out_refund_no, out_trade_no, amount_fen, reason, state, \
     requested_by, created_at, updated_at, succeeded_at) VALUES ";

fn order_row(plan: &Plan, i: u64) -> String {
    let paid = i < plan.n || plan.neighbours().contains(&i);
    let created = plan.created_at(i);
    let amount = plan.amount(i);
    let refunded = if plan.is_refunded(i) && plan.refund_state(i) == "SUCCESS" { plan.refund_amount(i) } else { 0 };
    let updated = if plan.is_refunded(i) { plan.refund_at(i) } else { plan.paid_at(i) };
    let (state, tx, paid_fen, paid_at) = if paid {
        ("PAID", format!("'{}'", plan.transaction_id(i)), amount.to_string(), ts(plan.paid_at(i)))
    } else {
        ("PAYING", "NULL".into(), "NULL".into(), "NULL".into())
    };
    format!(
        "('{}','SO{i:012}',{amount},'演示商店-龙井茶 250g','{state}','MD5','oUpF8uMuAJO_M2pxb1Q9zNjW{:08}',\
         'wx{i:030}',{tx},{paid_fen},{paid_at},{refunded},{refunded},{},{},{})",
        plan.order_no(i),
        mix(i, 7) % 100_000_000,
        ts(created),
        ts(updated),
        ts(created + chrono::Duration::hours(2)),
    )
}

fn refund_row(plan: &Plan, i: u64) -> String {
    let at = plan.refund_at(i);
    let state = plan.refund_state(i);
    let succeeded = if state == "SUCCESS" { ts(at + chrono::Duration::seconds(5)) } else { "NULL".into() };
    format!(
        "('{}','{}',{},'顾客申请','{state}','admin',{},{},{succeeded})",
        plan.refund_no(i),
        plan.order_no(i),
        plan.refund_amount(i),
        ts(at),
        ts(at + chrono::Duration::seconds(5)),
    )
}

/// Seeds the plan's orders and refunds; returns how many orders.
fn seed(conn: &mut impl SimpleConnection, plan: &Plan) -> usize {
    let orders: Vec<u64> = (0..plan.n).chain(plan.paid_not_local()).chain(plan.neighbours()).collect();
    for tx in orders.chunks(ROWS_PER_TX) {
        let mut sql = String::from("BEGIN;\n");
        for chunk in tx.chunks(ROWS_PER_INSERT) {
            let rows: Vec<String> = chunk.iter().map(|&i| order_row(plan, i)).collect();
            sql.push_str(INSERT_ORDERS);
            sql.push_str(&rows.join(","));
            sql.push_str(";\n");
            let refunds: Vec<String> =
                chunk.iter().filter(|&&i| plan.is_refunded(i)).map(|&i| refund_row(plan, i)).collect();
            if !refunds.is_empty() {
                sql.push_str(INSERT_REFUNDS);
                sql.push_str(&refunds.join(","));
                sql.push_str(";\n");
            }
        }
        sql.push_str("COMMIT;");
        conn.batch_execute(&sql).expect("seed batch");
    }
    orders.len()
}

/// A dedicated PostgreSQL database, dropped (connections closed by force) even when a check fails.
struct PgBenchDb {
    admin_url: String,
    name: String,
}

impl PgBenchDb {
    fn create(admin_url: &str) -> PgBenchDb {
        let name = format!("wc_bench_{}", wechat_checkout::wxpay::nonce::random_alphanumeric(10).to_ascii_lowercase());
        let mut admin = PgConnection::establish(admin_url).expect("the PostgreSQL URL connects");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create the bench database");
        PgBenchDb { admin_url: admin_url.to_owned(), name }
    }

    fn url(&self) -> String {
        let base = self.admin_url.rsplit_once('/').map_or(self.admin_url.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }
}

impl Drop for PgBenchDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The child: one timed reconciliation.

/// WeChat for the child: serves the pre-written bill and answers orderquery for the planted
/// paid-not-local orders; any other call is a bench bug.
struct PreparedBill {
    bill: PathBuf,
    plan: Plan,
}

fn not_served(what: &str) -> WxError {
    WxError::InvalidRequest(format!("{what} is not served by the reconcile bench"))
}

#[async_trait]
impl PayGateway for PreparedBill {
    async fn unified_order(&self, _: &UnifiedOrder) -> Result<UnifiedOrderReply, WxError> {
        Err(not_served("unifiedorder"))
    }

    async fn order_query(&self, req: &OrderQuery) -> Result<OrderQueryReply, WxError> {
        let OrderRef::OutTradeNo(no) = &req.order else { return Err(not_served("orderquery by transaction id")) };
        let i = Plan::index_of(no).filter(|i| self.plan.paid_not_local().any(|p| p == *i));
        let Some(i) = i else { return Err(not_served("orderquery of an order not planted as paid-not-local")) };
        let fee = Fen::new(self.plan.amount(i));
        Ok(OrderQueryReply {
            trade_state: TradeState::Success,
            trade_state_desc: Some("支付成功".into()),
            out_trade_no: no.clone(),
            transaction_id: Some(self.plan.transaction_id(i)),
            total_fee: Some(fee),
            cash_fee: Some(fee),
            openid: None,
            trade_type: None,
            bank_type: None,
            attach: None,
            time_end: Some(self.plan.paid_at(i)),
            raw: Fields::new(),
        })
    }

    async fn close_order(&self, _: &CloseOrder) -> Result<(), WxError> {
        Err(not_served("closeorder"))
    }

    async fn refund(&self, _: &Refund) -> Result<RefundReply, WxError> {
        Err(not_served("refund"))
    }

    async fn refund_query(&self, _: &RefundQuery) -> Result<RefundQueryReply, WxError> {
        Err(not_served("refundquery"))
    }

    async fn download_bill(&self, req: &DownloadBill, dest: &Path) -> Result<BillDownload, WxError> {
        assert_eq!((req.bill_date, req.bill_type, req.gzip), (bill_date(), BillType::All, true));
        let io = |e: std::io::Error| not_served(&format!("the prepared bill ({e})"));
        let _ = std::fs::remove_file(dest);
        // Same file system (one temporary directory): a link costs nothing, unlike a copy.
        if std::fs::hard_link(&self.bill, dest).is_err() {
            std::fs::copy(&self.bill, dest).map_err(io)?;
        }
        let bytes = std::fs::metadata(dest).map_err(io)?.len();
        Ok(BillDownload::Written { bytes, gzip: true })
    }
}

/// A line of /proc/self/status, in KiB (Linux only; 0 elsewhere).
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux 4.0+).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PhaseFigures {
    name: String,
    secs: f64,
    items: u64,
    /// RSS and peak RSS when the phase ended.
    rss_kib: u64,
    hwm_kib: u64,
}

/// Records when each phase begins and ends, and the memory at its end.
#[derive(Default)]
struct Recorder {
    phases: Mutex<Vec<(PhaseFigures, Instant)>>,
}

impl Progress for Recorder {
    fn begin(&self, phase: Phase, _: Option<u64>) {
        let figures = PhaseFigures { name: phase.label().into(), secs: 0.0, items: 0, rss_kib: 0, hwm_kib: 0 };
        self.phases.lock().unwrap().push((figures, Instant::now()));
    }

    fn advance(&self, _: u64, items: u64) {
        if let Some((p, _)) = self.phases.lock().unwrap().last_mut() {
            p.items = items;
        }
    }

    fn end(&self) {
        if let Some((p, began)) = self.phases.lock().unwrap().last_mut() {
            p.secs = began.elapsed().as_secs_f64();
            p.rss_kib = proc_status_kib("VmRSS:");
            p.hwm_kib = proc_status_kib("VmHWM:");
        }
    }
}

/// What the child reports to the parent (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
struct ChildReport {
    secs: f64,
    hwm_reset: bool,
    rss_before_kib: u64,
    peak_kib: u64,
    bill_rows: i64,
    differences: u64,
    new_findings: u64,
    applied: u64,
    query_errors: u64,
    phases: Vec<PhaseFigures>,
}

fn child_config(db_url: &str, bill_dir: &Path) -> AppConfig {
    let figment = rocket::Config::figment()
        .merge(("secret_key", "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk="))
        .merge(("database_url", db_url))
        .merge(("public_base_url", "http://127.0.0.1:8000"))
        .merge(("api_token", "bench-token-0123456789abcdefghij"))
        .merge(("simulator", "on"))
        .merge(("jobs", "off"))
        .merge(("bill_dir", bill_dir.to_string_lossy().into_owned()))
        .merge(("instance_id", "reconcile-bench"));
    AppConfig::from_figment(figment).expect("bench configuration")
}

/// Runs one reconciliation of the bill date and prints its report.
fn child(db_url: &str, bill: &Path, bill_dir: &Path, n: u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let report = runtime.block_on(async {
        let config = child_config(db_url, bill_dir);
        let db = Db::connect(config.database_url.expose(), config.db_pool_size).expect("database");
        let merchant = Merchant {
            appid: config.wechat.appid.clone(),
            mch_id: config.wechat.mch_id.clone(),
            key: config.wechat.api_key.clone(),
            sign_type: config.wechat.sign_type,
        };
        let gateway = PreparedBill { bill: bill.to_owned(), plan: Plan::new(n) };
        let payments = Payments::new(db, Arc::new(gateway), merchant, Arc::new(config));
        let ctx = JobContext::new(payments);
        let recorder = Arc::new(Recorder::default());
        let opts = RunOptions { any_state: true, progress: recorder.clone(), requested_by: None };

        let hwm_reset = reset_peak_rss();
        let rss_before_kib = proc_status_kib("VmRSS:");
        let started = Instant::now();
        let outcome = ctx.payments.reconcile_date(bill_date(), opts).await;
        let secs = started.elapsed().as_secs_f64();
        let peak_kib = proc_status_kib("VmHWM:");

        let outcome = outcome.expect("reconcile_date");
        let RunOutcome::Finished(r) = outcome else { panic!("the run did not finish: {}", outcome.headline()) };
        let phases: Vec<PhaseFigures> = recorder.phases.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
        // The kernel syncs per-thread RSS counters lazily, so a phase's reading may exceed the last.
        let peak_kib = phases.iter().map(|p| p.hwm_kib).fold(peak_kib, u64::max);
        ChildReport {
            secs,
            hwm_reset,
            rss_before_kib,
            peak_kib,
            bill_rows: r.figures.bill_rows,
            differences: r.differences,
            new_findings: r.new_findings,
            applied: r.applied,
            query_errors: r.query_errors,
            phases,
        }
    });
    println!("{RESULT_PREFIX}{}", serde_json::to_string(&report).expect("report as JSON"));
}

// ---------------------------------------------------------------------------------------------
// The parent: seed, write, run the child, check, print.

/// Runs the timed reconciliation in a fresh process and returns its report.
fn run_child(db_url: &str, bill: &Path, bill_dir: &Path, n: u64) -> ChildReport {
    let exe = std::env::current_exe().expect("this bench's executable");
    let out = Command::new(exe)
        .arg(CHILD_FLAG)
        .arg(db_url)
        .arg(bill)
        .arg(bill_dir)
        .arg(n.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("start the reconciliation process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the reconciliation process failed ({}):\n{stdout}", out.status);
    let line = stdout.lines().find_map(|l| l.strip_prefix(RESULT_PREFIX)).expect("a RESULT line from the child");
    serde_json::from_str(line).expect("the child's report")
}

/// Asserts the stored run and findings, and the child's own counts, against the plan.
fn check(db_url: &str, expected: &Expected, report: &ChildReport) {
    let db = Db::connect(db_url, 2).expect("database");
    let mut conn = db.conn().expect("connection");
    let key = reconcile_job::date_key(bill_date());
    let run = reconciliation::find_run(&mut conn, &key).expect("read the run").expect("a run row");
    assert_eq!(run.state, RunState::Done, "run state");
    assert_eq!(run.figures, expected.figures, "stored figures (left: the reconciler's, right: the plan's)");
    let rows = reconciliation::findings_of(&mut conn, &key, None, 10_000).expect("read the findings");
    let found: BTreeSet<(&'static str, String)> = rows
        .iter()
        .map(|f| (FindingKind::parse(&f.kind).expect("a known finding kind").code(), f.item_key.clone()))
        .collect();
    assert_eq!(found.len(), rows.len(), "findings recorded twice");
    let missed: Vec<_> = expected.findings.difference(&found).collect();
    let invented: Vec<_> = found.difference(&expected.findings).collect();
    assert!(missed.is_empty() && invented.is_empty(), "findings missed: {missed:?}; findings invented: {invented:?}");
    let applied = rows.iter().filter(|f| f.resolution.as_deref() == Some(reconcile_job::APPLIED_VIA_ORDERQUERY));
    assert_eq!(applied.count() as u64, expected.applied, "findings resolved through orderquery");
    let total = expected.findings.len() as u64;
    assert_eq!(
        (report.differences, report.new_findings, report.applied, report.query_errors),
        (total, total, expected.applied, 0),
        "the run's (differences, new findings, applied, orderquery errors)"
    );
}

fn kind_counts(expected: &Expected) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (kind, _) in &expected.findings {
        *counts.entry(kind).or_default() += 1;
    }
    counts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

struct Verdict {
    backend: &'static str,
    report: ChildReport,
}

fn print_run(backend: &str, r: &ChildReport, local_orders: usize) {
    println!("{backend}: reconciled {} bill rows against {local_orders} local orders", r.bill_rows);
    println!("  {:<28} {:>8} {:>10} {:>10} {:>10}", "phase", "s", "items", "RSS MiB", "peak MiB");
    for p in &r.phases {
        println!("  {:<28} {:>8.2} {:>10} {:>10.1} {:>10.1}", p.name, p.secs, p.items, mib(p.rss_kib), mib(p.hwm_kib));
    }
    println!(
        "  total {:.2} s, {:.0} bill rows/s; RSS {:.1} MiB before the run, peak {:.1} MiB{}",
        r.secs,
        r.bill_rows as f64 / r.secs,
        mib(r.rss_before_kib),
        mib(r.peak_kib),
        if r.hwm_reset { "" } else { " (VmHWM not resettable here: the peak covers the child's start)" }
    );
}

/// Seeds `db_url`, runs and checks the reconciliation.
fn bench_backend(
    backend: &'static str,
    db_url: &str,
    mut seed_conn: impl SimpleConnection,
    plan: &Plan,
    expected: &Expected,
    bill: &Path,
    work: &Path,
) -> Verdict {
    let started = Instant::now();
    let local_orders = seed(&mut seed_conn, plan);
    match backend {
        // What autovacuum does soon after a bulk load; it also sets the visibility map that
        // index-only scans need.
        "PostgreSQL" => {
            // One statement per call: VACUUM cannot run in the implicit transaction of a batch.
            for table in ["orders", "refunds"] {
                seed_conn.batch_execute(&format!("VACUUM ANALYZE {table}")).unwrap();
            }
        }
        _ => seed_conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);").unwrap(),
    }
    drop(seed_conn);
    println!("\n{backend}: seeded {local_orders} orders in {:.1} s", started.elapsed().as_secs_f64());
    let bill_dir = work.join(format!("bills-{}", backend.to_ascii_lowercase()));
    let report = run_child(db_url, bill, &bill_dir, plan.n);
    print_run(backend, &report, local_orders);
    check(db_url, expected, &report);
    println!("  figures and all {} findings as planted", expected.findings.len());
    Verdict { backend, report }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(CHILD_FLAG) {
        let [db_url, bill, bill_dir, n] = &args[2..] else { panic!("usage: {CHILD_FLAG} DB_URL BILL BILL_DIR N") };
        child(db_url, Path::new(bill), Path::new(bill_dir), n.parse().expect("N"));
        return;
    }
    // `cargo bench` passes --bench; anything else (cargo test --benches) gets the quick pass.
    let full = args.iter().any(|a| a == "--bench");
    let n = std::env::var("RECONCILE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(if full { FULL_ORDERS } else { QUICK_ORDERS })
        .max(1_000);
    let plan = Plan::new(n);
    let expected = expected(&plan);
    println!(
        "reconcile: {n} orders paid on {} (Beijing), {} bill rows, planted findings: {}",
        bill_date(),
        expected.figures.bill_rows,
        kind_counts(&expected)
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path();
    let bill = work.join("prepared-all.csv.gz");
    let started = Instant::now();
    let file = File::create(&bill).expect("bill file");
    let totals: BillTotals =
        write_bill_gzip(BufWriter::new(file), BillType::All, BillLayout::Current, bill_records(&plan))
            .expect("write the bill");
    let f = &expected.figures;
    assert_eq!(
        (totals.rows as i64, totals.order_total.get(), totals.refund_total.get()),
        (f.bill_rows, f.bill_paid_fen, f.bill_refund_fen),
        "the bill written differs from the plan"
    );
    println!(
        "wrote the GZIP bill ({:.1} MiB) in {:.1} s",
        std::fs::metadata(&bill).map_or(0, |m| m.len()) as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );

    let mut verdicts = Vec::new();
    let sqlite_url = work.join("bench.sqlite").to_string_lossy().into_owned();
    wechat_checkout::db::migrate::run_pending(&sqlite_url).expect("migrations");
    let mut conn = SqliteConnection::establish(&sqlite_url).expect("sqlite");
    // Loading only: the child's own connections keep the app's settings (synchronous=FULL).
    conn.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;").unwrap();
    verdicts.push(bench_backend("SQLite", &sqlite_url, conn, &plan, &expected, &bill, work));

    let pg_url = std::env::var("BENCH_DATABASE_URL").or_else(|_| std::env::var("TEST_DATABASE_URL"));
    match pg_url {
        Err(_) => println!("\nBENCH_DATABASE_URL / TEST_DATABASE_URL not set: PostgreSQL run skipped"),
        Ok(admin_url) => {
            let pg = PgBenchDb::create(&admin_url);
            let url = pg.url();
            wechat_checkout::db::migrate::run_pending(&url).expect("migrations");
            let conn = PgConnection::establish(&url).expect("postgres");
            verdicts.push(bench_backend("PostgreSQL", &url, conn, &plan, &expected, &bill, work));
        }
    }

    println!("\nsummary ({n} orders; goal < {} s and < {} MiB):", GOAL.as_secs(), RSS_GOAL_KIB / 1024);
    for Verdict { backend, report: r } in &verdicts {
        let met = r.secs < GOAL.as_secs_f64() && r.peak_kib < RSS_GOAL_KIB;
        println!(
            "  {backend:<11} {:>7.2} s {:>10.0} rows/s   peak RSS {:>6.1} MiB   goal {}",
            r.secs,
            r.bill_rows as f64 / r.secs,
            mib(r.peak_kib),
            if met { "met" } else { "NOT met" }
        );
    }
    if std::env::var("RECONCILE_BENCH_KEEP").is_ok_and(|v| v == "1") {
        println!("kept {}", dir.keep().display());
    }
}
