//! The requests of each workload: orders to create, signed notifies, page and status GETs.

use wechat_checkout::simulator::{DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID};
use wechat_checkout::wxpay::{ApiKey, Fields, Merchant, SignType};

use crate::loadgen::Req;

/// `n` distinct orders through the merchant API; amounts from 1 fen to 99.99 yuan.
pub fn create_orders(n: usize) -> Vec<Req> {
    (0..n)
        .map(|i| {
            let amount = 1 + (i * 7919) % 9999;
            let body = serde_json::json!({
                "amount_fen": amount,
                "description": "演示商店-压测商品",
                "merchant_order_id": format!("bench-{i}"),
            });
            Req::post("/api/v1/orders", body.to_string())
        })
        .collect()
}

/// A successful payment notify from WeChat for one order, signed with the demo merchant's key.
fn notify_body(merchant: &Merchant, out_trade_no: &str, amount_fen: i64, serial: usize) -> String {
    let (fee, transaction_id, nonce) =
        (amount_fen.to_string(), format!("42000000002026{serial:014}"), format!("bench{serial:027}"));
    let mut fields: Fields = [
        ("appid", DEMO_APPID),
        ("mch_id", DEMO_MCH_ID),
        ("nonce_str", nonce.as_str()),
        ("result_code", "SUCCESS"),
        ("return_code", "SUCCESS"),
        ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
        ("is_subscribe", "N"),
        ("trade_type", "JSAPI"),
        ("bank_type", "OTHERS"),
        ("total_fee", fee.as_str()),
        ("fee_type", "CNY"),
        ("cash_fee", fee.as_str()),
        ("transaction_id", transaction_id.as_str()),
        ("out_trade_no", out_trade_no),
        ("time_end", "20261202101010"),
    ]
    .into_iter()
    .collect();
    let sign = merchant.sign(&fields);
    fields.insert("sign", sign);
    fields.to_xml()
}

/// One distinct signed notify per order, each sent `copies` times in a row (so that the copies
/// of one notify are in flight together on different connections).
pub fn notifies(orders: &[(String, i64)], first_serial: usize, copies: usize) -> Vec<Req> {
    let merchant = Merchant {
        appid: DEMO_APPID.into(),
        mch_id: DEMO_MCH_ID.into(),
        key: ApiKey::new(DEMO_API_KEY).expect("the demo key is valid"),
        sign_type: SignType::Md5,
    };
    orders
        .iter()
        .enumerate()
        .flat_map(|(i, (no, amount))| {
            let req = Req::post("/wechat/notify", notify_body(&merchant, no, *amount, first_serial + i));
            std::iter::repeat_n(req, copies)
        })
        .collect()
}

/// A GET of `path_of(order)` for each order.
pub fn gets(orders: &[String], path_of: impl Fn(&str) -> String) -> Vec<Req> {
    orders.iter().map(|no| Req::get(path_of(no))).collect()
}
