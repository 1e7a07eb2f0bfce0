//! libFuzzer target: the streaming bill parser, driven to the end. The first byte chooses plain
//! text or GZIP. Beyond "no panic", an error must end the iteration and an accepted bill must
//! agree with its own summary.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_checkout::wxpay::bill::BillReader;

fuzz_target!(|data: &[u8]| {
    let (gzip, body) = match data.split_first() {
        Some((flag, rest)) => (flag & 1 == 1, rest),
        None => (false, data),
    };
    let Ok(mut reader) = BillReader::open(body, gzip) else {
        return;
    };
    let mut rows = 0u64;
    let mut errors = 0u32;
    for item in reader.by_ref() {
        match item {
            Ok(_) => rows += 1,
            Err(_) => errors += 1,
        }
    }
    assert!(errors <= 1, "an error must end the iteration");
    if let Ok(summary) = reader.finish() {
        assert_eq!(errors, 0);
        assert_eq!(summary.trade_count, rows);
    }
});
