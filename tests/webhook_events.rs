//! The webhook events beyond money arriving: `order.closed`, `order.payment_failed` and
//! `refund.failed`, over real HTTP. A real app drives orders through the in-app simulator and a
//! raw-TCP merchant endpoint receives each event once, signed like `order.paid`. Duplicates (a
//! close applied twice, a failure reported by notify and by two queries, a refund notify
//! delivered three times) write one event; without a URL or a secret none is written. On SQLite,
//! and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use std::time::{Duration, Instant};

use common::admin::{console_refund, post_form, sign_in};
use common::app::{ADMIN_PASSWORD, ADMIN_USER, API_TOKEN, TestApp, on_every_database, prepay_id};
use common::merchant_endpoint::{Receiver, receiver};
use common::{demo_merchant, notify_fields};
use diesel::prelude::*;
use rocket::figment::Figment;
use serde_json::{Value, json};
use wechat_checkout::db::schema::orders as orders_table;
use wechat_checkout::db::{events, notify_log, webhooks};
use wechat_checkout::domain::TimelineSource;
use wechat_checkout::domain::webhook::{WebhookEvent, WebhookState};
use wechat_checkout::jobs::signature;
use wechat_checkout::payments::apply::{Applied, Change, apply_change};
use wechat_checkout::wxpay::SignType;
use wechat_checkout::wxpay::notify::SUCCESS_REPLY;

const SECRET: &str = "whsec-events-0123456789abcdefgh";

/// Jobs on with fast ticks and retries; `url` as `WEBHOOK_URL` and `secret` as `WEBHOOK_SECRET`
/// when given. The receivers listen on 127.0.0.1, so private addresses are allowed.
fn settings(f: Figment, url: Option<String>, secret: Option<&str>) -> Figment {
    let mut f = f
        .merge(("jobs", "on"))
        .merge(("webhook_allow_private", "on"))
        .merge(("job_tick_ms", 50))
        .merge(("webhook_schedule", "50ms,100ms,200ms,400ms"));
    if let Some(url) = url {
        f = f.merge(("webhook_url", url));
    }
    if let Some(secret) = secret {
        f = f.merge(("webhook_secret", secret));
    }
    f
}

async fn start(store: common::app::TestDb, dir: Option<tempfile::TempDir>, merchant: &Receiver) -> TestApp {
    let hook = merchant.url("/hooks");
    TestApp::start(store, dir, |f| settings(f, Some(hook), Some(SECRET))).await
}

fn events_of(app: &TestApp, no: &str) -> Vec<WebhookEvent> {
    webhooks::for_order(&mut app.db_handle().conn().unwrap(), no).unwrap()
}

/// Waits until `n` events of `event_type` of the order are delivered; returns the order's events
/// of that type.
async fn delivered(app: &TestApp, no: &str, event_type: &str, n: usize) -> Vec<WebhookEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let of_type: Vec<WebhookEvent> =
            events_of(app, no).into_iter().filter(|e| e.event_type == event_type).collect();
        if of_type.iter().filter(|e| e.state == WebhookState::Delivered).count() >= n {
            return of_type;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {n} {event_type} of {no}: {of_type:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The one request that delivered `event`: signed with the secret over its exact body, with the
/// envelope and headers of every event. Returns its body.
fn received_once(merchant: &Receiver, event: &WebhookEvent) -> Value {
    let got: Vec<_> = merchant.received().into_iter().filter(|r| r.event_id() == event.id).collect();
    assert_eq!(got.len(), 1, "delivered once: {got:#?}");
    let r = &got[0];
    let header = &r.headers[&signature::HEADER.to_ascii_lowercase()];
    let now = chrono::Utc::now().timestamp();
    assert!(signature::verify(SECRET.as_bytes(), header, &r.body, now, 300), "the signature verifies: {header}");
    assert!(!signature::verify(b"another secret", header, &r.body, now, 300));
    assert_eq!(r.headers["x-wechat-checkout-event"], event.event_type);
    assert_eq!(r.headers["idempotency-key"], event.id.to_string());
    let body = r.json();
    assert_eq!((body["id"].as_i64(), body["type"].as_str()), (Some(event.id), Some(event.event_type.as_str())));
    assert_eq!((&body["simulated"], &body["data"]["simulated"]), (&json!(true), &json!(true)), "{body}");
    assert_eq!(body["data"]["out_trade_no"], event.out_trade_no.as_str());
    body
}

async fn api_close(app: &TestApp, no: &str) -> Value {
    let url = app.url(&format!("/api/v1/orders/{no}/close"));
    let res = app.http.post(url).bearer_auth(API_TOKEN).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn api_get(app: &TestApp, path: &str) -> Value {
    let res = app.http.get(app.url(path)).bearer_auth(API_TOKEN).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// Asks WeChat about the order from its console page, as staff would.
async fn requery(app: &TestApp, admin: &reqwest::Client, no: &str) {
    let page = format!("/admin/orders/{no}");
    assert_eq!(post_form(app, admin, &page, &format!("{page}/requery"), &[]).await.status(), 303);
}

/// WeChat's notify that the payment failed, signed with the demo merchant's key.
async fn failure_notify(app: &TestApp, no: &str, fen: i64) {
    let mut fields = notify_fields(no, fen, "");
    fields.remove("transaction_id");
    fields.insert("result_code", "FAIL");
    fields.insert("err_code", "NOTENOUGH");
    fields.insert("err_code_des", "余额不足");
    fields.insert("sign", demo_merchant(SignType::Md5).sign(&fields));
    let notify = app.http.post(app.url("/wechat/notify")).header("Content-Type", "text/xml");
    let res = notify.body(fields.to_xml()).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), SUCCESS_REPLY);
}

/// Waits until `n` refund notifies are logged (duplicates included).
async fn refund_notifies(app: &TestApp, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let logged = || notify_log::page(&mut app.db_handle().conn().unwrap(), None, Some("refund"), None, 100).unwrap();
    while logged().len() < n {
        assert!(Instant::now() < deadline, "{} refund notifies logged, not {n}", logged().len());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn order_closed_is_announced_once_and_a_late_payment_still_as_paid() {
    on_every_database("order_closed_is_announced_once", |store, dir| async move {
        let merchant = receiver(0, Duration::ZERO).await;
        let app = start(store, dir, &merchant).await;

        // Never reached WeChat: the API closes it here; closing again changes nothing.
        let no = app.create_order("EV-CLOSE-1", 500).await["out_trade_no"].as_str().unwrap().to_owned();
        for _ in 0..2 {
            assert_eq!(api_close(&app, &no).await["state"], "CLOSED");
        }
        let events = delivered(&app, &no, "order.closed", 1).await;
        assert_eq!(events_of(&app, &no).len(), 1, "one event: {events:#?}");
        assert_eq!(events[0].dedupe_key, format!("order.closed:{no}"));
        let body = received_once(&merchant, &events[0]);
        assert_eq!(body["data"], app.order(&no).await, "the data is the order as the API shows it");
        assert_eq!(body["data"]["state"], "CLOSED");
        assert!(body["data"]["closed_at"].is_string());

        // Reported closed twice by WeChat (two queries saying CLOSED): one event. The shopper
        // then pays the still-open prepay at WeChat: that is announced as order.paid.
        let (no, prepay) = app.paying_order("EV-CLOSE-2", 700).await;
        let mut results = Vec::new();
        for _ in 0..2 {
            let (n, outbox) = (no.clone(), app.outbox.clone());
            let detail = json!({ "trade_state": "CLOSED" });
            let applied = app
                .db_handle()
                .write(move |c| apply_change(c, &n, Change::Closed, TimelineSource::Query, detail, &outbox))
                .await;
            results.push(applied.unwrap());
        }
        assert!(matches!(results[..], [Applied::Changed { .. }, Applied::AlreadyDone { .. }]), "{results:?}");
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        delivered(&app, &no, "order.paid", 1).await;
        let closed = delivered(&app, &no, "order.closed", 1).await;
        let types: Vec<String> = events_of(&app, &no).into_iter().map(|e| e.event_type).collect();
        assert_eq!(types, ["order.closed", "order.paid"]);
        let body = received_once(&merchant, &closed[0]);
        assert_eq!(body["data"]["state"], "CLOSED", "the data is the order as it was closed");
        let paid = app.order(&no).await;
        assert_eq!((&paid["state"], &paid["paid_after_close"]), (&json!("PAID"), &json!(true)));
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn order_payment_failed_is_announced_once_per_failure() {
    on_every_database("order_payment_failed_is_announced_once_per_failure", |store, dir| async move {
        let merchant = receiver(0, Duration::ZERO).await;
        let app = start(store, dir, &merchant).await;
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let (no, prepay) = app.paying_order("EV-FAIL-1", 900).await;

        // The bank refuses. WeChat's FAIL notify is only recorded; the query moves the order.
        assert_eq!(app.shopper(&prepay, "fail").await.status(), 200);
        failure_notify(&app, &no, 900).await;
        requery(&app, &admin, &no).await;
        assert_eq!(app.order(&no).await["state"], "PAYERROR");
        // The same failure reported again, by notify and by query: nothing new.
        failure_notify(&app, &no, 900).await;
        requery(&app, &admin, &no).await;
        let first = delivered(&app, &no, "order.payment_failed", 1).await;
        assert_eq!(events_of(&app, &no).len(), 1, "one event: {first:#?}");
        let timeline = events::for_order(&mut app.db_handle().conn().unwrap(), &no).unwrap();
        let entry = timeline.iter().find(|e| e.kind == "payment_failed").expect("the failure's timeline entry");
        assert_eq!(first[0].dedupe_key, format!("order.payment_failed:{no}:{}", entry.id));
        let body = received_once(&merchant, &first[0]);
        assert_eq!(body["data"], app.order(&no).await, "the data is the order as the API shows it");
        assert_eq!(body["data"]["state"], "PAYERROR");

        // The shopper tries again later: a new prepay (the first is too old to reuse) makes the
        // order PAYING again, and the second failure is announced on its own.
        let old = (chrono::Utc::now() - chrono::Duration::minutes(115)).naive_utc();
        diesel::update(orders_table::table.filter(orders_table::out_trade_no.eq(&no)))
            .set(orders_table::prepay_created_at.eq(Some(old)))
            .execute(&mut app.db_handle().conn().unwrap())
            .unwrap();
        let prepay = prepay_id(&app.jsapi(&no).await);
        assert_eq!(app.order(&no).await["state"], "PAYING");
        assert_eq!(app.shopper(&prepay, "fail").await.status(), 200);
        requery(&app, &admin, &no).await;
        requery(&app, &admin, &no).await;
        let both = delivered(&app, &no, "order.payment_failed", 2).await;
        assert_eq!(both.len(), 2, "{both:#?}");
        assert_ne!(both[0].dedupe_key, both[1].dedupe_key);
        assert_eq!(received_once(&merchant, &both[1])["data"]["state"], "PAYERROR");

        // Then it is paid: order.paid as always.
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        delivered(&app, &no, "order.paid", 1).await;
        assert_eq!(events_of(&app, &no).len(), 3);
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn refund_failed_is_announced_once_when_a_refund_ends_unpaid() {
    on_every_database("refund_failed_is_announced_once_when_a_refund_ends_unpaid", |store, dir| async move {
        let merchant = receiver(0, Duration::ZERO).await;
        let app = start(store, dir, &merchant).await;
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;

        // WeChat closes the refund, and its notify arrives three times: one event.
        let no = app.paid_order("EV-REFUND-1", 900).await;
        let out_refund_no = console_refund(&app, &admin, &no, "9.00").await;
        app.control("faults", json!({ "duplicate_notifies": 2 })).await;
        app.control(&format!("refunds/{out_refund_no}/settle"), json!({ "status": "REFUNDCLOSE" })).await;
        refund_notifies(&app, 3).await;
        requery(&app, &admin, &no).await;
        let events = delivered(&app, &no, "refund.failed", 1).await;
        let types: Vec<String> = events_of(&app, &no).into_iter().map(|e| e.event_type).collect();
        assert_eq!(types, ["order.paid", "refund.failed"]);
        assert_eq!(events[0].dedupe_key, format!("refund.failed:{out_refund_no}"));
        let mut body = received_once(&merchant, &events[0]);
        let mut data = body["data"].take();
        let refund = data.as_object_mut().unwrap().remove("refund").expect("a refund member");
        assert_eq!(refund, api_get(&app, &format!("/api/v1/refunds/{out_refund_no}")).await);
        assert_eq!((&refund["state"], &refund["simulated"]), (&json!("CLOSED"), &json!(true)));
        assert_eq!(data, app.order(&no).await, "besides the refund, the order as the API shows it");

        // WeChat refuses the request for good (the payment is over a year old): FAILED, one event.
        app.control("faults", json!({ "duplicate_notifies": 0 })).await;
        let no = app.paid_order("EV-REFUND-2", 600).await;
        app.control("clock", json!({ "advance_seconds": 366 * 86_400 })).await;
        let out_refund_no = console_refund(&app, &admin, &no, "6.00").await;
        requery(&app, &admin, &no).await;
        let events = delivered(&app, &no, "refund.failed", 1).await;
        assert_eq!(events_of(&app, &no).len(), 2, "order.paid and refund.failed");
        let body = received_once(&merchant, &events[0]);
        let refund = &body["data"]["refund"];
        assert_eq!(*refund, api_get(&app, &format!("/api/v1/refunds/{out_refund_no}")).await);
        assert_eq!(refund["state"], "FAILED");
        assert!(refund["last_error"].as_str().is_some_and(|e| e.contains("TRADE_OVERDUE")), "{refund}");
        app.stop().await;
    })
    .await;
}

/// A close, a failed payment and a closed refund, none of which may write an event.
async fn nothing_announced(app: &TestApp, tag: &str) {
    let admin = sign_in(app, ADMIN_USER, ADMIN_PASSWORD).await;
    let closed = app.create_order(&format!("EV-QUIET-{tag}-1"), 100).await["out_trade_no"].as_str().unwrap().to_owned();
    api_close(app, &closed).await;
    let (failed, prepay) = app.paying_order(&format!("EV-QUIET-{tag}-2"), 200).await;
    assert_eq!(app.shopper(&prepay, "fail").await.status(), 200);
    requery(app, &admin, &failed).await;
    assert_eq!(app.order(&failed).await["state"], "PAYERROR");
    let refunded = app.paid_order(&format!("EV-QUIET-{tag}-3"), 300).await;
    let out_refund_no = console_refund(app, &admin, &refunded, "3.00").await;
    app.control(&format!("refunds/{out_refund_no}/settle"), json!({ "status": "REFUNDCLOSE" })).await;
    refund_notifies(app, 1).await;
    assert_eq!(api_get(app, &format!("/api/v1/refunds/{out_refund_no}")).await["state"], "CLOSED");
    for no in [&closed, &failed, &refunded] {
        assert!(events_of(app, no).is_empty(), "{tag}: no event for {no}: {:#?}", events_of(app, no));
    }
}

#[tokio::test]
async fn without_a_url_or_a_secret_no_event_is_written() {
    on_every_database("without_a_url_or_a_secret_no_event_is_written", |store, dir| async move {
        let merchant = receiver(0, Duration::ZERO).await;
        // Signing is configured, but there is no URL.
        let app = TestApp::start(store, dir, |f| settings(f, None, Some(SECRET))).await;
        nothing_announced(&app, "NO-URL").await;
        app.stop().await;
        assert!(merchant.received().is_empty());
    })
    .await;
    on_every_database("without_a_secret", |store, dir| async move {
        let merchant = receiver(0, Duration::ZERO).await;
        // A URL, but nothing to sign with.
        let app = TestApp::start(store, dir, |f| settings(f, Some(merchant.url("/hooks")), None)).await;
        nothing_announced(&app, "NO-SECRET").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(merchant.received().is_empty(), "{:#?}", merchant.received());
        app.stop().await;
    })
    .await;
}
