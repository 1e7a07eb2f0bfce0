//! Fuzzing of the bill parser that runs in `cargo test`: over a million inputs (random bytes,
//! random lines, and mutations of valid bills, plain and GZIP), each driven to the end. The only
//! claims are that nothing panics, that every failure is a typed `BillError`, that an error ends
//! the iteration, and that an accepted bill agrees with its own summary. A fixed seed per test
//! keeps failures reproducible; the libFuzzer targets in fuzz/ explore further.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{TimeZone, Utc};
use common::seeded::Rng;
use flate2::Compression;
use flate2::write::GzEncoder;
use wechat_checkout::simulator::bill_text::{BillLayout, BillRecord, BillRecordKind, write_bill};
use wechat_checkout::wxpay::Fen;
use wechat_checkout::wxpay::bill::{self, BillError, BillReader};
use wechat_checkout::wxpay::types::BillType;

#[derive(Default)]
struct Tally {
    inputs: u64,
    accepted: u64,
    rows: u64,
}

/// Runs the parser over one input to the very end.
fn drive(bytes: &[u8], gzip: bool, tally: &mut Tally) -> Result<u64, BillError> {
    tally.inputs += 1;
    let mut reader = BillReader::open(bytes, gzip)?;
    let mut rows = 0u64;
    let mut errors = 0u32;
    let mut items = 0usize;
    for item in reader.by_ref() {
        items += 1;
        match item {
            Ok(_) => rows += 1,
            Err(e) => {
                errors += 1;
                // A row error always names its line.
                assert!(
                    e.line().is_some()
                        || matches!(e, BillError::MissingSummary | BillError::MissingSummaryColumn { .. }),
                    "{e:?}"
                );
            }
        }
        // Each item consumes at least one line, and a GZIP stream this small cannot expand without bound.
        assert!(items <= bytes.len() * 1100 + 2, "the iterator does not end");
    }
    assert!(errors <= 1, "an error must end the iteration");
    assert_eq!(reader.rows_read(), rows);
    tally.rows += rows;
    let summary = reader.finish()?;
    assert_eq!(errors, 0, "finish succeeded after a row error");
    assert_eq!(summary.trade_count, rows);
    tally.accepted += 1;
    Ok(rows)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

const BODIES: &[&str] = &["腾讯充值中心-QQ会员充值", "T恤, \"限量\" 款", "a,`b", "", "``", ",", "价格,`10元,`含税"];
const ATTACHES: &[&str] = &["", "{\"a\":1}", "x,y", "\"", "`", "备注"];

fn record(rng: &mut Rng, n: usize) -> BillRecord {
    let total = rng.below(1_000_000) as i64;
    let coupon = rng.below(total as usize + 1) as i64;
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(rng.below(86_400) as i64);
    let kind = if rng.below(3) == 0 {
        BillRecordKind::Refund {
            refund_id: format!("50000{n:08}"),
            out_refund_no: format!("R{n}"),
            refund_fee: Fen::new(rng.below(total as usize + 1) as i64),
            refund_channel: "ORIGINAL".into(),
            refund_status: "SUCCESS".into(),
            applied_at: at,
            succeeded_at: if rng.below(2) == 0 { Some(at) } else { None },
        }
    } else {
        BillRecordKind::Payment
    };
    BillRecord {
        trade_time: at,
        appid: "wx2421b1c4370ec43b".into(),
        mch_id: "1900000109".into(),
        device_info: String::new(),
        transaction_id: format!("42000{n:08}"),
        out_trade_no: format!("T{n}"),
        openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
        trade_type: "JSAPI".into(),
        bank_type: "CMB_CREDIT".into(),
        body: rng.pick(BODIES).to_string(),
        attach: rng.pick(ATTACHES).to_string(),
        total_fee: Fen::new(total),
        coupon_fee: Fen::new(coupon),
        rate_basis_points: rng.below(100) as u32,
        kind,
    }
}

/// Valid bills of every type and layout, small so that each mutation is cheap to parse.
fn seeds(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for bill_type in [BillType::All, BillType::Success, BillType::Refund, BillType::RechargeRefund] {
        for layout in [BillLayout::Current, BillLayout::Legacy] {
            for size in [0, 1, 3, 6] {
                let records: Vec<BillRecord> = (0..size).map(|n| record(rng, n)).collect();
                let mut bytes = Vec::new();
                write_bill(&mut bytes, bill_type, layout, &records).unwrap();
                seeds.push(bytes);
            }
        }
    }
    let sample = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\n`2021-01-28 17:07:11,`wx81be3101902f7cb2,`1601959334,`0,`,`4200000925202101284997714292,`S20210128170702357723,`ofyak5qR_1wYsC99CsWA6R9MJazA,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.01,`0.00,`0,`0,`0.00,`0.00,`,`,`for testing,`cipher code,`0.00000,`1.00%,`0.01,`0.00,`\n总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n`1,`0.01,`0.00,`0.00,`0.00000,`0.01,`0.00\n";
    seeds.push(sample.as_bytes().to_vec());
    for seed in &seeds {
        assert!(drive(seed, false, &mut Tally::default()).is_ok(), "{}", String::from_utf8_lossy(seed));
    }
    seeds
}

const TOKENS: &[&str] = &[
    ",`",
    "`",
    ",",
    "，",
    "\r\n",
    "\n",
    "\r",
    "总交易单数",
    "总交易单数,手续费总金额,应结订单总金额\r\n`0,`0,`0",
    "-",
    ".",
    "0",
    "0.00",
    "-0.01",
    "99999999999999999999",
    "999999999999999.99",
    "92233720368547.75807",
    "\u{feff}",
    "\u{ff}",
    "\"",
    "2024-13-45 25:61:61",
    "2024-05-01 12:00:00",
    " ",
    "SUCCESS",
    "REFUND",
    "应结订单金额",
    "总金额",
    "手续费",
    "交易时间",
    "商品名称",
    "1e5",
    "+1",
    "１",
];

fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// Swaps two columns in the header and in every row: by-name mapping must not care.
fn swap_columns(bytes: &[u8], i: usize, j: usize) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut out = String::new();
    let mut in_summary = false;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (content, end) = line.split_at(line.trim_end_matches(['\r', '\n']).len());
        in_summary |= content.starts_with(bill::SUMMARY_MARKER);
        let swapped = if in_summary || content.is_empty() {
            content.to_owned()
        } else if n == 0 {
            let mut cells: Vec<&str> = content.split(',').collect();
            cells.get(i.max(j))?;
            cells.swap(i, j);
            cells.join(",")
        } else {
            let mut cells: Vec<&str> = content.strip_prefix('`')?.split(",`").collect();
            cells.get(i.max(j))?;
            cells.swap(i, j);
            format!("`{}", cells.join(",`"))
        };
        out.push_str(&swapped);
        out.push_str(end);
    }
    Some(out.into_bytes())
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    match rng.below(14) {
        0 if !input.is_empty() => {
            let at = rng.below(input.len());
            input[at] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let at = rng.below(input.len());
            input[at] = rng.next() as u8;
        }
        2 => {
            let at = rng.below(input.len() + 1);
            input.insert(at, rng.next() as u8);
        }
        3 if !input.is_empty() => {
            let at = rng.below(input.len());
            let len = 1 + rng.below(8.min(input.len() - at));
            input.drain(at..at + len);
        }
        4 | 5 => {
            let at = rng.below(input.len() + 1);
            let token = rng.pick(TOKENS).as_bytes();
            input.splice(at..at, token.iter().copied());
        }
        6 => input.truncate(rng.below(input.len() + 1)),
        7 | 8 => {
            let mut lines = lines_of(input);
            if lines.is_empty() {
                return;
            }
            let a = rng.below(lines.len());
            let b = rng.below(lines.len());
            match rng.below(4) {
                0 => {
                    lines.remove(a);
                }
                1 => {
                    let copy = lines[a].clone();
                    lines.insert(b, copy);
                }
                2 => lines.swap(a, b),
                _ => {
                    let other = lines_of(rng.pick_ref(seeds).as_slice());
                    let line = rng.pick_ref(&other).clone();
                    lines.insert(b, line);
                }
            }
            *input = lines.concat();
        }
        9 => {
            // Duplicate the summary: the last two lines again.
            let lines = lines_of(input);
            let tail: Vec<u8> = lines.iter().rev().take(2).rev().flatten().copied().collect();
            input.extend_from_slice(&tail);
        }
        10 => {
            if let Some(swapped) = swap_columns(input, rng.below(30), rng.below(30)) {
                *input = swapped;
            }
        }
        11 => {
            // Replace one field of one line with a token.
            let mut lines = lines_of(input);
            if lines.is_empty() {
                return;
            }
            let n = rng.below(lines.len());
            let text = String::from_utf8_lossy(&lines[n]).into_owned();
            let mut cells: Vec<&str> = text.split(",`").collect();
            let at = rng.below(cells.len());
            cells[at] = rng.pick(TOKENS);
            lines[n] = cells.join(",`").into_bytes();
            *input = lines.concat();
        }
        12 => {
            let text = String::from_utf8_lossy(input);
            *input = if text.contains("\r\n") { text.replace("\r\n", "\n") } else { text.replace('\n', "\r\n") }
                .into_bytes();
        }
        _ => {
            let at = rng.below(input.len() + 1);
            let len = rng.below(16);
            let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            input.splice(at..at, junk);
        }
    }
}

/// Inputs fed by all the tests of this file so far; the last one to finish prints the total.
static ALL_INPUTS: AtomicU64 = AtomicU64::new(0);

fn report(name: &str, tally: &Tally, started: Instant) {
    let total = ALL_INPUTS.fetch_add(tally.inputs, Ordering::Relaxed) + tally.inputs;
    println!(
        "{name}: {} inputs, {} accepted, {} rows, {:.1?} (bill parser inputs so far: {total})",
        tally.inputs,
        tally.accepted,
        tally.rows,
        started.elapsed()
    );
}

/// Inputs per test; the four tests add up to 1,000,000.
const RANDOM_BYTES: u64 = 250_000;
const RANDOM_LINES: u64 = 250_000;
const MUTATIONS: u64 = 420_000;
const GZIP_MUTATIONS: u64 = 80_000;

#[test]
fn random_bytes() {
    let started = Instant::now();
    let mut rng = Rng::new(1);
    let mut tally = Tally::default();
    let header = bill::CURRENT_ALL.as_bytes();
    let mut input = Vec::with_capacity(512);
    for i in 0..RANDOM_BYTES {
        input.clear();
        // Half start with a valid header so the bytes reach the row parser.
        if i % 2 == 0 {
            input.extend_from_slice(header);
            input.extend_from_slice(b"\r\n");
        }
        let len = rng.below(200);
        input.extend((0..len).map(|_| rng.next() as u8));
        let _ = drive(&input, false, &mut tally);
    }
    report("random bytes", &tally, started);
    assert_eq!(tally.inputs, RANDOM_BYTES);
}

#[test]
fn random_lines() {
    let started = Instant::now();
    let mut rng = Rng::new(2);
    let mut tally = Tally::default();
    let headers = [
        bill::CURRENT_ALL,
        bill::CURRENT_SUCCESS,
        bill::CURRENT_REFUND,
        bill::LEGACY_ALL,
        bill::LEGACY_SUCCESS,
        bill::LEGACY_REFUND,
    ];
    let summaries = [bill::CURRENT_SUMMARY, bill::LEGACY_SUMMARY];
    let mut input = String::with_capacity(1024);
    for _ in 0..RANDOM_LINES {
        input.clear();
        input.push_str(rng.pick(&headers));
        input.push_str("\r\n");
        for _ in 0..rng.below(5) {
            // A line of backtick-prefixed tokens, about as wide as a real row.
            for cell in 0..(15 + rng.below(16)) {
                input.push_str(if cell == 0 { "`" } else { ",`" });
                input.push_str(rng.pick(TOKENS));
            }
            input.push_str("\r\n");
        }
        if rng.below(4) != 0 {
            input.push_str(rng.pick(&summaries));
            input.push_str("\r\n");
            for cell in 0..(3 + rng.below(6)) {
                input.push_str(if cell == 0 { "`" } else { ",`" });
                input.push_str(rng.pick(&["0", "0.00", "0.00000", "1", "-0.01", "x", ""]));
            }
        }
        let _ = drive(input.as_bytes(), false, &mut tally);
    }
    report("random lines", &tally, started);
}

#[test]
fn mutations_of_valid_bills() {
    let started = Instant::now();
    let mut rng = Rng::new(3);
    let seeds = seeds(&mut rng);
    let mut tally = Tally::default();
    let mut input = Vec::with_capacity(4096);
    let mut swaps_checked = 0u32;
    for _ in 0..MUTATIONS {
        let seed = rng.pick_ref(&seeds);
        input.clear();
        input.extend_from_slice(seed);
        for _ in 0..(1 + rng.below(4)) {
            mutate(&mut rng, &seeds, &mut input);
        }
        let _ = drive(&input, false, &mut tally);
        // Column order is irrelevant: a bill with two columns swapped everywhere still passes.
        let clean = std::str::from_utf8(seed).is_ok_and(|s| !s.contains("a,`b") && !s.contains("价格,`"));
        if clean
            && rng.below(64) == 0
            && let Some(swapped) = swap_columns(seed, rng.below(20), rng.below(20))
        {
            assert_eq!(drive(&swapped, false, &mut tally), drive(seed, false, &mut tally));
            swaps_checked += 1;
        }
    }
    report("mutations", &tally, started);
    println!("column swaps checked against the original: {swaps_checked}");
}

#[test]
fn gzip_mutations() {
    let started = Instant::now();
    let mut rng = Rng::new(4);
    let seeds = seeds(&mut rng);
    let compressed: Vec<Vec<u8>> = seeds.iter().map(|s| gzip(s)).collect();
    let mut tally = Tally::default();
    let mut input = Vec::new();
    for i in 0..GZIP_MUTATIONS {
        if i % 2 == 0 {
            // Corrupt the compressed stream itself.
            input.clear();
            input.extend_from_slice(rng.pick_ref(&compressed).as_slice());
            for _ in 0..(1 + rng.below(3)) {
                match rng.below(3) {
                    0 => input.truncate(rng.below(input.len() + 1)),
                    _ if input.is_empty() => {}
                    _ => {
                        let at = rng.below(input.len());
                        input[at] ^= 1 << rng.below(8);
                    }
                }
            }
            let _ = drive(&input, true, &mut tally);
        } else {
            // Mutate the text, then compress it.
            input.clear();
            input.extend_from_slice(rng.pick_ref(&seeds).as_slice());
            mutate(&mut rng, &seeds, &mut input);
            let _ = drive(&gzip(&input), true, &mut tally);
        }
    }
    report("gzip", &tally, started);
}
