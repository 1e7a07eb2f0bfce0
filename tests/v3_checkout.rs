//! The checkout on WeChat Pay API v3 (`WECHAT_API_VERSION=v3`), over real HTTP against the
//! mounted simulator speaking v3: the demo merchant's key pair made at first start, platform
//! certificates downloaded and verified, the shopper flow with an RSA `paySign` the simulated
//! bridge checks, the AES-GCM payment notify applied once however often it arrives, hostile
//! notifies refused and logged apart, close, and a refund settled by its v3 refund notify. On
//! SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use common::admin::{console_refund, sign_in};
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, on_every_backend_with, order_row, prepay_id};
use rocket::figment::Figment;
use serde_json::{Value, json};
use wechat_checkout::db::{events, notify_log, refunds};
use wechat_checkout::domain::RefundState;
use wechat_checkout::wxpay::v3::MerchantKey;
use wechat_checkout::wxpay::v3::verify::response_message;

fn v3(f: Figment, _: &std::path::Path) -> Figment {
    f.merge(("wechat_api_version", "v3"))
}

async fn post_notify(app: &TestApp, path: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut req = app.http.post(app.url(path)).header("Content-Type", "application/json").body(body.to_owned());
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn log_of(app: &TestApp, no: &str) -> Vec<wechat_checkout::domain::records::NotifyRecord> {
    notify_log::for_order(&mut app.db_handle().conn().unwrap(), no).unwrap()
}

fn refused(app: &TestApp) -> Vec<wechat_checkout::domain::records::NotifyRecord> {
    let all = notify_log::page(&mut app.db_handle().conn().unwrap(), None, None, None, 10_000).unwrap();
    all.into_iter().filter(|r| r.out_trade_no.is_none()).collect()
}

#[tokio::test]
async fn a_v3_shopper_pays_and_the_notify_is_applied_once() {
    on_every_backend_with(v3, |app, _| async move {
        let order = app.create_order("V3-PAY-1", 1990).await;
        let no = order["out_trade_no"].as_str().unwrap().to_owned();
        let jsapi = app.jsapi(&no).await;
        assert_eq!(jsapi["state"], "PAYING");
        let params = &jsapi["params"];
        assert_eq!(params["signType"], "RSA");
        assert_eq!(params["paySign"].as_str().unwrap().len(), 344, "a 2048-bit RSA signature: {params}");

        // The simulated bridge checks the RSA paySign with the merchant's public key.
        let verify: Value =
            app.http.post(app.url("/simulator/bridge/verify")).json(params).send().await.unwrap().json().await.unwrap();
        assert_eq!(verify["ok"], true, "{verify}");
        let mut tampered = params.clone();
        tampered["timeStamp"] = json!((params["timeStamp"].as_str().unwrap().parse::<i64>().unwrap() + 1).to_string());
        let refused_sign: Value = app
            .http
            .post(app.url("/simulator/bridge/verify"))
            .json(&tampered)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(refused_sign["ok"], false, "{refused_sign}");

        assert_eq!(app.order(&no).await["state"], "PAYING");
        assert!(app.shopper(&prepay_id(&jsapi), "ok").await.status().is_success());
        // Waiting on the database, not the status page (whose own v3 query could settle it first).
        common::app::eventually("the v3 payment notify", || !log_of(&app, &no).is_empty()).await;
        let order = app.order(&no).await;
        assert_eq!((order["state"].as_str(), order["paid_fen"].as_i64()), (Some("PAID"), Some(1990)));
        let log = log_of(&app, &no);
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].verdict, "paid");
        assert_eq!(log[0].reply, r#"{"code":"SUCCESS","message":"成功"}"#);
        // Kept as received: its signature headers, then the body with the resource still encrypted.
        assert!(log[0].raw_body.starts_with("Wechatpay-Timestamp: "), "{}", log[0].raw_body);
        assert!(log[0].raw_body.contains("\n\n{") && log[0].raw_body.contains("\"ciphertext\""));

        // Delivered ten times at once (as WeChat may): one payment, nine duplicates, all answered 200.
        let (again, prepay) = app.paying_order("V3-PAY-2", 800).await;
        app.control("faults", json!({ "concurrent_notifies": 10 })).await;
        assert!(app.shopper(&prepay, "ok").await.status().is_success());
        common::app::eventually("ten deliveries", || log_of(&app, &again).len() >= 10).await;
        let log = log_of(&app, &again);
        assert_eq!(log.iter().filter(|r| r.verdict == "paid").count(), 1, "{log:?}");
        assert_eq!(log.iter().filter(|r| r.verdict == "duplicate").count(), 9, "{log:?}");
        let attempts: Value = app.get_json("/simulator/control/notifies").await;
        let answered: Vec<_> =
            attempts.as_array().unwrap().iter().filter(|a| a["out_trade_no"] == again.as_str()).collect();
        assert!(answered.iter().all(|a| a["http_status"] == 200 && a["accepted"] == true), "{answered:?}");
        let timeline = events::for_order(&mut app.db_handle().conn().unwrap(), &no).unwrap();
        assert_eq!(timeline.iter().filter(|e| e.kind == "payment_confirmed").count(), 1);
        app
    })
    .await;
}

#[tokio::test]
async fn hostile_v3_notifies_change_nothing_and_are_logged_apart() {
    on_every_backend_with(v3, |app, _| async move {
        let (no, _) = app.paying_order("V3-HOSTILE-1", 500).await;
        let platform: Value = app.get_json("/simulator/control/v3/platform").await;
        let serial = platform["certificate_serial"].as_str().unwrap().to_owned();
        let body = json!({"id":"x","create_time":"2026-12-03T10:00:00+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","summary":"支付成功",
            "resource":{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"AAAA","associated_data":"transaction","nonce":"abcdefghijkl"}}).to_string();
        let forger = MerchantKey::generate().unwrap();
        let now = chrono::Utc::now().timestamp().to_string();
        let sign = |key: &MerchantKey, ts: &str, body: &str| key.sign(&response_message(ts, "n0nce", body.as_bytes()));
        let headers = |ts: &str, serial: &str, signature: String| {
            vec![
                ("Wechatpay-Timestamp", ts.to_owned()),
                ("Wechatpay-Nonce", "n0nce".to_owned()),
                ("Wechatpay-Serial", serial.to_owned()),
                ("Wechatpay-Signature", signature),
                ("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048".to_owned()),
            ]
        };
        let cases = [
            ("a signature by another key", headers(&now, &serial, sign(&forger, &now, &body))),
            ("an unknown serial", headers(&now, "0123456789ABCDEF", sign(&forger, &now, &body))),
            ("a SIGNTEST probe", headers(&now, &serial, format!("WECHATPAY/SIGNTEST/{}", sign(&forger, &now, &body)))),
            ("no signature headers", Vec::new()),
        ];
        for (what, h) in &cases {
            let (status, answer) = post_notify(&app, "/wechat/v3/notify", h, &body).await;
            assert_eq!((status, answer["code"].as_str()), (401, Some("FAIL")), "{what}");
            let (status, _) = post_notify(&app, "/wechat/v3/refund-notify", h, &body).await;
            assert_eq!(status, 401, "{what} (refund notify)");
        }
        // Larger than any notify: refused unread, with 413.
        let huge = "x".repeat(70 * 1024);
        let (status, answer) = post_notify(&app, "/wechat/v3/notify", &cases[0].1, &huge).await;
        assert_eq!((status, answer["code"].as_str()), (413, Some("FAIL")));
        // Not JSON at all, and a v2 XML notify on a v3 checkout: refused too.
        let (status, _) = post_notify(&app, "/wechat/v3/notify", &cases[0].1, "<xml/>").await;
        assert_eq!(status, 401);
        let v2 = app.http.post(app.url("/wechat/notify")).body("<xml><return_code>SUCCESS</return_code></xml>").send().await.unwrap();
        assert!(v2.text().await.unwrap().contains("FAIL"));

        assert_eq!(order_row(&app.db_handle(), &no).state.as_str(), "PAYING");
        assert!(log_of(&app, &no).is_empty(), "refusals are not on the order's log");
        let refused = refused(&app);
        assert!(refused.len() >= cases.len() * 2, "{refused:?}");
        assert!(refused.iter().all(|r| ["bad_signature", "too_large"].contains(&r.verdict.as_str())), "{refused:?}");
        app
    })
    .await;
}

/// Notifies that are WeChat's in every way but one: a stale signature, a tampered ciphertext (signed
/// as sent), an amount that is not the order's. The first two are refused and logged apart; the
/// third is genuine, so it is acknowledged and raised for staff, and the order stays unpaid.
#[tokio::test]
async fn stale_tampered_or_wrong_amount_v3_notifies_never_pay_the_order() {
    on_every_backend_with(v3, |app, _| async move {
        let db = app.db_handle();
        // Refusals are answered with their status (and logged apart, within the per-client limit
        // that the retries of the first case soon reach, so the answers are what is checked).
        for (no_suffix, faults, status) in [
            ("STALE", json!({ "v3_notify_clock_skew_seconds": -600 }), 401),
            (
                "TAMPER",
                json!({ "v3_tampered_ciphertext": true, "v3_notify_clock_skew_seconds": 0, "drop_notify_rate": 0.0 }),
                400,
            ),
        ] {
            let (no, prepay) = app.paying_order(&format!("V3-{no_suffix}"), 600).await;
            app.control("faults", faults).await;
            assert!(app.shopper(&prepay, "ok").await.status().is_success());
            let mut answered = Vec::new();
            for _ in 0..400 {
                let attempts: Value = app.get_json("/simulator/control/notifies").await;
                answered = attempts
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|a| a["out_trade_no"] == no.as_str() && !a["http_status"].is_null())
                    .map(|a| (a["http_status"].as_u64().unwrap(), a["accepted"].as_bool().unwrap()))
                    .collect();
                if !answered.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            assert!(
                !answered.is_empty() && answered.iter().all(|a| *a == (status, false)),
                "{no_suffix}: {answered:?}"
            );
            assert_eq!(order_row(&db, &no).state.as_str(), "PAYING", "{no_suffix}");
            app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        }
        // (The control API changes only the faults it is given.)
        app.control("faults", json!({ "v3_tampered_ciphertext": false, "drop_notify_rate": 0.0 })).await;
        let (no, prepay) = app.paying_order("V3-AMOUNT", 600).await;
        app.control("faults", json!({ "notify_amount_delta": -1 })).await;
        assert!(app.shopper(&prepay, "ok").await.status().is_success());
        common::app::eventually("the wrong-amount notify", || !log_of(&app, &no).is_empty()).await;
        assert_eq!(log_of(&app, &no)[0].verdict, "amount_mismatch");
        assert_eq!(order_row(&db, &no).state.as_str(), "PAYING");
        let raised = wechat_checkout::db::exceptions::for_order(&mut db.conn().unwrap(), &no).unwrap();
        assert!(raised.iter().any(|e| e.kind == "amount_mismatch"), "{raised:?}");
        app
    })
    .await;
}

#[tokio::test]
async fn a_v3_refund_is_settled_by_its_refund_notify() {
    on_every_backend_with(v3, |app, _| async move {
        let no = app.paid_order("V3-REFUND-1", 2500).await;
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let out_refund_no = console_refund(&app, &admin, &no, "10.00").await;
        let refund = refunds::find(&mut app.db_handle().conn().unwrap(), &out_refund_no).unwrap().unwrap();
        assert_eq!(refund.state, RefundState::Processing);
        app.control(&format!("refunds/{out_refund_no}/settle"), json!({ "status": "SUCCESS" })).await;
        let db = app.db_handle();
        common::app::eventually("the v3 refund notify", || {
            refunds::find(&mut db.conn().unwrap(), &out_refund_no).unwrap().unwrap().state == RefundState::Success
        })
        .await;
        let order = order_row(&db, &no);
        assert_eq!(order.refunded.get(), 1000);
        let log = notify_log::page(&mut db.conn().unwrap(), None, Some("refund"), None, 100).unwrap();
        let row = log.iter().find(|r| r.out_trade_no.as_deref() == Some(&no)).expect("the refund notify is logged");
        assert_eq!(row.verdict, "refund_success");
        assert!(row.raw_body.contains("\"ciphertext\""), "the envelope as received");
        assert!(row.reason.contains(&out_refund_no));
        app
    })
    .await;
}

/// Backdates an order's prepay by six minutes, for us and for the simulator's clock.
async fn six_minutes_later(app: &TestApp, no: &str) {
    use diesel::prelude::*;
    use wechat_checkout::db::schema::orders as t;
    let earlier = (chrono::Utc::now() - chrono::Duration::minutes(6)).naive_utc();
    diesel::update(t::table.filter(t::out_trade_no.eq(no)))
        .set(t::prepay_created_at.eq(Some(earlier)))
        .execute(&mut app.db_handle().conn().unwrap())
        .unwrap();
    app.control("clock", json!({ "advance_seconds": 360 })).await;
}

#[tokio::test]
async fn v3_orders_query_and_close_and_a_paid_one_is_not_closed() {
    on_every_backend_with(v3, |app, _| async move {
        let (no, _) = app.paying_order("V3-CLOSE-1", 300).await;
        // The status page asks WeChat (a signed v3 query) and finds it unpaid.
        assert_eq!(app.get_json(&format!("/pay/{no}/status")).await["state"], "PAYING");
        six_minutes_later(&app, &no).await;
        let close = |no: String| {
            let app = &app;
            async move {
                let res = app
                    .http
                    .post(app.url(&format!("/api/v1/orders/{no}/close")))
                    .bearer_auth(common::app::API_TOKEN)
                    .send()
                    .await
                    .unwrap();
                (res.status().as_u16(), res.json::<Value>().await.unwrap())
            }
        };
        let (status, closed) = close(no.clone()).await;
        assert_eq!((status, closed["state"].as_str()), (200, Some("CLOSED")), "{closed}");
        assert_eq!(app.sim_order(&no).await["state"], "CLOSED");

        // Paid at WeChat while its notify is lost: close meets ORDER_PAID and the paid path runs.
        let (paid, prepay) = app.paying_order("V3-CLOSE-2", 700).await;
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        assert!(app.shopper(&prepay, "ok").await.status().is_success());
        six_minutes_later(&app, &paid).await;
        let (status, order) = close(paid.clone()).await;
        assert_eq!((status, order["state"].as_str()), (200, Some("PAID")), "{order}");
        assert_eq!(order_row(&app.db_handle(), &paid).state.as_str(), "PAID");
        app
    })
    .await;
}
