//! Throughput and memory of the streaming bill parser on a one-million-row ALL bill, plain and GZIP.
//!
//! `cargo bench --bench bill_parse` writes the bill with the simulator's writer straight to a
//! temporary file (records are generated on the fly, never collected), parses it back, runs the
//! summary cross-check, and prints rows, bytes, time, rows/s and the peak resident set size of each
//! phase. The goal is a peak RSS under 64 MiB: memory must not grow with the bill.
//! Run without `--bench` (as `cargo test --benches` would), it does a quick 20,000-row pass.
#![allow(clippy::float_arithmetic, reason = "timings and rates, never money")]

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use wechat_checkout::simulator::bill_text::{
    BillLayout, BillRecord, BillRecordKind, BillTotals, write_bill, write_bill_gzip,
};
use wechat_checkout::wxpay::Fen;
use wechat_checkout::wxpay::bill::BillReader;
use wechat_checkout::wxpay::types::BillType;

const FULL_ROWS: u64 = 1_000_000;
const QUICK_ROWS: u64 = 20_000;
const RSS_GOAL_KIB: u64 = 64 * 1024;

const BODIES: &[&str] = &[
    "腾讯充值中心-QQ会员充值",
    "美团外卖-黄焖鸡米饭（大份）",
    "京东商城-Apple iPhone 15 Pro 256GB 原色钛金属",
    "滴滴出行-快车 北京市海淀区中关村大街1号 → 首都机场T3",
    "星巴克-大杯拿铁, 燕麦奶, 少冰",
    "网易云音乐-黑胶VIP \"年卡\" 自动续费",
    "拼多多-纸巾 100抽×24包 整箱",
    "瑞幸咖啡-生椰拿铁",
];
const ATTACHES: &[&str] = &["", "store=SH001", "{\"coupon\":\"NEW10\",\"channel\":\"mp\"}", "备注: 不要香菜, 谢谢"];

/// The `n`th record of a day: about one in seven is a refund.
fn record(rng: &mut SmallRng, n: u64) -> BillRecord {
    let day = Utc.with_ymd_and_hms(2024, 4, 30, 16, 0, 0).unwrap();
    let trade_time = day + chrono::Duration::seconds((n * 86_400 / FULL_ROWS.max(n + 1)) as i64);
    let total = 1 + rng.random_range(0..50_000) as i64;
    let coupon = if rng.random_range(0..10) == 0 { rng.random_range(0..total as u64 / 10 + 1) as i64 } else { 0 };
    let kind = if rng.random_range(0..7) == 0 {
        BillRecordKind::Refund {
            refund_id: format!("50300000{:020}", n),
            out_refund_no: format!("RF{n:012}"),
            refund_fee: Fen::new(1 + rng.random_range(0..total as u64) as i64),
            refund_channel: "ORIGINAL".into(),
            refund_status: "SUCCESS".into(),
            applied_at: trade_time,
            succeeded_at: Some(trade_time + chrono::Duration::seconds(5)),
        }
    } else {
        BillRecordKind::Payment
    };
    BillRecord {
        trade_time,
        appid: "wx2421b1c4370ec43b".into(),
        mch_id: "1900000109".into(),
        device_info: String::new(),
        transaction_id: format!("42000000{:020}", n),
        out_trade_no: format!("SO{n:014}"),
        openid: format!("oUpF8uMuAJO_M2pxb1Q9z{:07}", rng.random_range(0..10_000_000)),
        trade_type: "JSAPI".into(),
        bank_type: if rng.random_range(0..2) == 0 { "OTHERS".into() } else { "CMB_CREDIT".into() },
        body: BODIES[rng.random_range(0..BODIES.len() as u64) as usize].into(),
        attach: ATTACHES[rng.random_range(0..ATTACHES.len() as u64) as usize].into(),
        total_fee: Fen::new(total),
        coupon_fee: Fen::new(coupon),
        rate_basis_points: 60,
        kind,
    }
}

/// Records generated lazily: the writer streams them and nothing holds the whole day.
fn records(rows: u64) -> impl Iterator<Item = BillRecord> {
    // Seeded: the same bill on every run.
    let mut rng = SmallRng::seed_from_u64(2024);
    (0..rows).map(move |n| record(&mut rng, n))
}

/// A line of /proc/self/status, in KiB (Linux only; 0 elsewhere).
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS so each phase reports its own peak (Linux 4.0+).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Phase {
    name: &'static str,
    rows: u64,
    bytes: u64,
    elapsed: Duration,
    peak_kib: u64,
}

impl Phase {
    fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        println!(
            "{:<18} {:>9} rows {:>8.1} MiB {:>7.2} s {:>10.0} rows/s {:>7.1} MiB/s   peak RSS {:>6.1} MiB",
            self.name,
            self.rows,
            self.bytes as f64 / (1024.0 * 1024.0),
            secs,
            self.rows as f64 / secs,
            self.bytes as f64 / (1024.0 * 1024.0) / secs,
            mib(self.peak_kib),
        );
    }
}

fn write_phase(name: &'static str, file: &mut File, rows: u64, gzip: bool) -> (Phase, BillTotals) {
    reset_peak_rss();
    let started = Instant::now();
    let out = BufWriter::new(&mut *file);
    let totals = if gzip {
        write_bill_gzip(out, BillType::All, BillLayout::Current, records(rows))
    } else {
        write_bill(out, BillType::All, BillLayout::Current, records(rows))
    }
    .expect("write the bill");
    let elapsed = started.elapsed();
    let bytes = file.stream_position().expect("file position");
    (Phase { name, rows: totals.rows, bytes, elapsed, peak_kib: proc_status_kib("VmHWM:") }, totals)
}

fn parse_phase(name: &'static str, file: &mut File, gzip: bool, expected: &BillTotals) -> Phase {
    let bytes = file.seek(SeekFrom::End(0)).expect("seek");
    file.seek(SeekFrom::Start(0)).expect("seek");
    reset_peak_rss();
    let started = Instant::now();
    let mut reader = BillReader::open(&mut *file, gzip).expect("bill header");
    let mut rows = 0u64;
    let mut fee_units = 0i64;
    for row in reader.by_ref() {
        let row = row.expect("bill row");
        rows += 1;
        fee_units += row.service_fee.units();
    }
    let summary = reader.finish().expect("summary cross-check");
    let elapsed = started.elapsed();
    assert_eq!(summary.trade_count, expected.rows);
    assert_eq!(summary.settlement_total, expected.settlement_total);
    assert_eq!(fee_units, expected.fee_total.units());
    Phase { name, rows, bytes, elapsed, peak_kib: proc_status_kib("VmHWM:") }
}

fn main() {
    // `cargo bench` passes --bench; anything else (cargo test --benches) gets the quick pass.
    let full = std::env::args().any(|a| a == "--bench");
    let rows = std::env::var("BILL_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(if full {
        FULL_ROWS
    } else {
        QUICK_ROWS
    });
    let resets = reset_peak_rss();
    println!(
        "bill_parse: ALL bill, current layout, {rows} rows (RSS at start {:.1} MiB)",
        mib(proc_status_kib("VmRSS:"))
    );
    if !resets {
        println!("(cannot reset VmHWM here; each peak covers the run so far)");
    }

    let mut plain = tempfile::tempfile().expect("temp file");
    let (write_plain, totals) = write_phase("write plain", &mut plain, rows, false);
    write_plain.print();
    let parse_plain = parse_phase("parse plain", &mut plain, false, &totals);
    parse_plain.print();
    drop(plain);

    let mut gz = tempfile::tempfile().expect("temp file");
    let (write_gz, gz_totals) = write_phase("write gzip", &mut gz, rows, true);
    write_gz.print();
    assert_eq!(gz_totals, totals);
    let parse_gz = parse_phase("parse gzip", &mut gz, true, &totals);
    parse_gz.print();

    let peak = [&write_plain, &parse_plain, &write_gz, &parse_gz].iter().map(|p| p.peak_kib).max().unwrap_or(0);
    let process_peak = proc_status_kib("VmHWM:").max(peak);
    println!(
        "peak RSS of the parse phases: plain {:.1} MiB, gzip {:.1} MiB (goal < {} MiB): {}",
        mib(parse_plain.peak_kib),
        mib(parse_gz.peak_kib),
        RSS_GOAL_KIB / 1024,
        if parse_plain.peak_kib.max(parse_gz.peak_kib) < RSS_GOAL_KIB { "met" } else { "MISSED" }
    );
    println!("peak RSS of any phase: {:.1} MiB (process VmHWM now {:.1} MiB)", mib(peak), mib(process_peak));
}
