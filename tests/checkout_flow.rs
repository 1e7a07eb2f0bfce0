//! The shopper's whole payment over real HTTP against the mounted simulator: create → OAuth →
//! jsapi → simulated pay → notify → PAID; the cancel path; an unpaid order stays PAYING. Each
//! scenario runs on SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use common::app::{on_every_backend, prepay_id};

#[tokio::test]
async fn create_oauth_pay_notify_paid() {
    on_every_backend(|app| async move {
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
    on_every_backend(|app| async move {
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
    on_every_backend(|app| async move {
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
