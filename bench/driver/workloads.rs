//! The requests of each workload: orders to create, signed notifies, page and status GETs.

use wechat_checkout::simulator::{DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID};
use wechat_checkout::wxpay::demo::DEMO_APIV3_KEY;
use wechat_checkout::wxpay::v3::aead::EncryptedResource;
use wechat_checkout::wxpay::v3::verify::response_message;
use wechat_checkout::wxpay::v3::{ApiV3Key, MerchantKey};
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

/// One distinct v3 payment notify per order (`copies` times each): the Transaction sealed with
/// AES-256-GCM under the demo APIv3 key, the envelope signed with `platform` as WeChat would sign
/// it under the WeChat Pay public key `key_id`. Signing is the slow part, so two threads share it.
pub fn notifies_v3(
    orders: &[(String, i64)],
    first_serial: usize,
    copies: usize,
    platform: &MerchantKey,
    key_id: &str,
) -> Vec<Req> {
    let apiv3 = ApiV3Key::new(DEMO_APIV3_KEY).expect("the demo APIv3 key is valid");
    let one = |i: usize, no: &str, amount: i64| {
        let serial = first_serial + i;
        let transaction = serde_json::json!({
            "appid": DEMO_APPID, "mchid": DEMO_MCH_ID, "out_trade_no": no,
            "transaction_id": format!("42000000002026{serial:014}"), "trade_type": "JSAPI",
            "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
            "success_time": "2026-12-02T10:10:10+08:00", "payer": { "openid": "oUpF8uMEb4qRXf22hE3X68TekukE" },
            "amount": { "total": amount, "payer_total": amount, "currency": "CNY", "payer_currency": "CNY" },
        });
        let resource =
            EncryptedResource::seal(&apiv3, "transaction", Some("transaction"), transaction.to_string().as_bytes());
        let body = serde_json::json!({
            "id": format!("bench-{serial}"), "create_time": "2026-12-02T10:10:11+08:00",
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
            "resource": resource,
        })
        .to_string();
        let (timestamp, nonce) = (chrono::Utc::now().timestamp().to_string(), format!("{serial:032}"));
        let signature = platform.sign(&response_message(&timestamp, &nonce, body.as_bytes()));
        let mut req = Req::post("/wechat/v3/notify", body);
        req.headers = vec![
            ("content-type", "application/json".to_owned()),
            ("wechatpay-timestamp", timestamp),
            ("wechatpay-nonce", nonce),
            ("wechatpay-serial", key_id.to_owned()),
            ("wechatpay-signature", signature),
            ("wechatpay-signature-type", "WECHATPAY2-SHA256-RSA2048".to_owned()),
        ];
        std::iter::repeat_n(req, copies)
    };
    let half = orders.len() / 2;
    let (a, b) = orders.split_at(half);
    std::thread::scope(|scope| {
        let first =
            scope.spawn(|| a.iter().enumerate().flat_map(|(i, (no, fen))| one(i, no, *fen)).collect::<Vec<_>>());
        let second: Vec<Req> = b.iter().enumerate().flat_map(|(i, (no, fen))| one(half + i, no, *fen)).collect();
        let mut all = first.join().expect("the signing thread finishes");
        all.extend(second);
        all
    })
}
