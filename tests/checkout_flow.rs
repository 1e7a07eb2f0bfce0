//! The shopper's whole payment over real HTTP against the mounted simulator: create → OAuth →
//! jsapi → simulated pay → notify → PAID; the cancel path; an unpaid order stays PAYING. Each
//! scenario runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use common::app::{PATIENCE, browser, on_every_backend_and_version, order_row, prepay_id};
use serde_json::{Value, json};
use wechat_checkout::db::events;

#[tokio::test]
async fn create_oauth_pay_notify_paid() {
    on_every_backend_and_version(|app| async move {
        let order = app.create_order("M-PAY-1", 1990).await;
        let no = order["out_trade_no"].as_str().unwrap().to_owned();
        assert_eq!(order["state"], "CREATED");
        assert_eq!(order["amount_yuan"], "19.90");
        assert_eq!(order["checkout_url"], app.url(&format!("/pay/{no}")));

        let jsapi = app.jsapi(&no).await;
        assert_eq!(jsapi["state"], "PAYING");
        let params = &jsapi["params"];
        for key in ["appId", "timeStamp", "nonceStr", "package", "signType", "paySign"] {
            assert!(params[key].is_string(), "{key} missing: {params}");
        }
        assert_eq!(params["timeStamp"].as_str().unwrap().len(), 10);
        // The page asking again reuses the same prepay.
        let again = app.jsapi(&no).await;
        assert_eq!(prepay_id(&again), prepay_id(&jsapi));

        // The simulated bridge accepts the parameters exactly as WeChat would.
        let verify = app.http.post(app.url("/simulator/bridge/verify")).json(params).send().await.unwrap();
        let verify: serde_json::Value = verify.json().await.unwrap();
        assert_eq!(verify["ok"], true, "{verify}");

        // Before the notify the order is PAYING; the browser's ok proves nothing.
        assert_eq!(app.order(&no).await["state"], "PAYING");
        let paid = app.shopper(&prepay_id(&jsapi), "ok").await;
        assert!(paid.status().is_success());
        assert!(app.wait_for_state(&no, "PAID").await, "the notify marks the order paid");
        let order = app.order(&no).await;
        assert_eq!(order["state"], "PAID");
        assert!(order["transaction_id"].as_str().unwrap().starts_with("42000"));
        assert_eq!(order["paid_fen"], 1990);

        // The final page says paid; asking for parameters now says PAID too.
        let page = app.follow(&app.url(&format!("/pay/{no}"))).await.text().await.unwrap();
        assert!(page.contains("支付成功"));
        let after = app.http.post(app.url(&format!("/pay/{no}/jsapi"))).send().await.unwrap();
        let after: serde_json::Value = after.json().await.unwrap();
        assert_eq!(after["state"], "PAID");
        app
    })
    .await;
}

#[tokio::test]
async fn cancel_then_retry_then_pay() {
    on_every_backend_and_version(|app| async move {
        let order = app.create_order("M-CANCEL-1", 1).await;
        let no = order["out_trade_no"].as_str().unwrap().to_owned();
        let jsapi = app.jsapi(&no).await;
        let cancel = app.shopper(&prepay_id(&jsapi), "cancel").await;
        assert!(cancel.status().is_success());
        // Polling after a cancel queries WeChat (NOTPAY) and the order stays PAYING.
        assert!(!app.wait_for_state(&no, "PAID").await);
        assert_eq!(app.order(&no).await["state"], "PAYING");
        // The shopper retries: same prepay, and this time pays.
        let retry = app.jsapi(&no).await;
        assert_eq!(prepay_id(&retry), prepay_id(&jsapi));
        app.shopper(&prepay_id(&retry), "ok").await;
        assert!(app.wait_for_state(&no, "PAID").await);
        app
    })
    .await;
}

#[tokio::test]
async fn an_order_never_paid_stays_paying() {
    on_every_backend_and_version(|app| async move {
        let order = app.create_order("M-IDLE-1", 500).await;
        let no = order["out_trade_no"].as_str().unwrap().to_owned();
        app.jsapi(&no).await;
        for _ in 0..3 {
            let s: serde_json::Value =
                app.http.get(app.url(&format!("/pay/{no}/status"))).send().await.unwrap().json().await.unwrap();
            assert_eq!(s["state"], "PAYING");
        }
        assert_eq!(app.order(&no).await["state"], "PAYING");
        app
    })
    .await;
}

/// Polling the status of a paying order writes nothing between WeChat queries; a payment WeChat
/// knows of (its notify lost) is picked up by a poll once a query is due, and only that writes.
#[tokio::test]
async fn status_polling_writes_nothing_until_wechat_says_paid() {
    on_every_backend_and_version(|app| async move {
        let (no, prepay) = app.paying_order("M-POLL-1", 700).await;
        let db = app.db_handle();
        let before = order_row(&db, &no);
        let timeline = events::for_order(&mut db.conn().unwrap(), &no).unwrap().len();
        let writes = app.app_db.write_count();
        for _ in 0..50 {
            assert_eq!(app.get_json(&format!("/pay/{no}/status")).await["state"], "PAYING");
        }
        assert_eq!(app.app_db.write_count() - writes, 0, "write transactions during 50 status polls");
        assert_eq!(order_row(&db, &no), before);
        assert_eq!(events::for_order(&mut db.conn().unwrap(), &no).unwrap().len(), timeline);

        // WeChat takes the payment but its notify is lost: only a query can tell.
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        assert_eq!(app.sim_order(&no).await["state"], "SUCCESS");
        let started = std::time::Instant::now();
        let mut state = Value::Null;
        while state != "PAID" && started.elapsed() < PATIENCE {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            state = app.get_json(&format!("/pay/{no}/status")).await["state"].clone();
        }
        assert_eq!(state, "PAID", "a poll after the throttle interval picks up the payment");
        assert!(app.app_db.write_count() > writes);
        let paid = order_row(&db, &no);
        assert_eq!(paid.paid.map(|f| f.get()), Some(700));
        let kinds: Vec<String> =
            events::for_order(&mut db.conn().unwrap(), &no).unwrap().into_iter().map(|e| e.kind).collect();
        assert!(kinds.iter().any(|k| k == "payment_confirmed"), "{kinds:?}");
        app
    })
    .await;
}

/// The first shopper to pay binds the order. Another shopper (another browser, so another
/// openid) opening the same link gets a page saying so, no prepay, and nothing changes. Once
/// paid, the link shows the paid page to anyone, without the first shopper's openid.
#[tokio::test]
async fn another_shopper_is_told_the_order_is_taken() {
    on_every_backend_and_version(|app| async move {
        let (no, prepay) = app.paying_order("M-TAKEN-1", 1200).await;
        let db = app.db_handle();
        let before = order_row(&db, &no);
        let first = before.openid.clone().expect("the first shopper is bound");
        let timeline = events::for_order(&mut db.conn().unwrap(), &no).unwrap().len();
        let link = app.url(&format!("/pay/{no}"));

        let other = browser();
        let page = app.follow_in(&other, &link).await;
        let status = page.status().as_u16();
        let html = page.text().await.unwrap();
        assert_eq!(status, 409, "{html}");
        assert!(html.contains("此订单已由其他微信用户发起支付"), "{html}");
        assert!(html.contains("<meta name=\"viewport\""), "a mobile page in the checkout's style");
        assert!(!html.contains("立即支付") && !html.contains(&first), "{html}");

        // Asking for the JSAPI parameters anyway: refused the same way, no prepay.
        let res =
            other.post(app.url(&format!("/pay/{no}/jsapi"))).header("Origin", &app.base_url).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 409);
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            (body["state"].as_str(), body["error"].as_str()),
            (Some("TAKEN"), Some("此订单已由其他微信用户发起支付"))
        );
        assert!(body.get("params").is_none(), "{body}");
        assert_eq!(order_row(&db, &no), before, "nothing changed");
        assert_eq!(events::for_order(&mut db.conn().unwrap(), &no).unwrap().len(), timeline);
        assert_eq!(app.sim_order(&no).await["openid"].as_str(), Some(first.as_str()));

        // The first shopper's page is untouched, and they pay.
        assert!(app.follow(&link).await.text().await.unwrap().contains("立即支付"));
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        common::app::eventually("the payment notify", || order_row(&db, &no).state.as_str() == "PAID").await;
        for shopper in [&app.http, &other] {
            let page = app.follow_in(shopper, &link).await;
            assert_eq!(page.status().as_u16(), 200);
            let html = page.text().await.unwrap();
            assert!(html.contains("支付成功") && !html.contains(&first), "{html}");
        }
        app
    })
    .await;
}
