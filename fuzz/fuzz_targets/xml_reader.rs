//! libFuzzer target: the hardened XML reader, for both roots it is used with. Beyond "no panic",
//! an accepted document must read back the same after the writer has written it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_checkout::wxpay::xml::{self, ReadOptions};

fuzz_target!(|data: &[u8]| {
    for root in ["xml", "root"] {
        let Ok(fields) = xml::parse_with(data, ReadOptions { root, ..ReadOptions::default() }) else {
            continue;
        };
        // A raw NUL inside CDATA is let through by the reader but cannot be written back
        // (known, reported); keep it out of the round-trip claim.
        if fields.pairs().all(|(k, v)| xml::is_field_name(k) && !v.contains('\0')) {
            let written = xml::write_document(root, fields.pairs());
            let reread = xml::parse_with(written.as_bytes(), ReadOptions { root, max_bytes: usize::MAX });
            assert_eq!(reread.as_ref(), Ok(&fields), "rewritten as {written:?}");
        }
    }
});
