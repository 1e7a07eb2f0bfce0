//! Merchant webhooks over real HTTP: a real app pays orders through the in-app simulator and a
//! raw-TCP merchant endpoint receives the signed events. Retries after failures, the per-order
//! URL, no URL at all, refunds, the console's list and re-send, and two job instances racing
//! for the same events. On SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use std::time::{Duration, Instant};

use common::admin::*;
use common::app::{ADMIN_PASSWORD, ADMIN_USER, API_TOKEN, TestApp, on_every_database, prepay_id};
use common::merchant_endpoint::{Received, receiver};
use rocket::figment::Figment;
use serde_json::{Value, json};
use wechat_checkout::db::audit;
use wechat_checkout::db::webhooks;
use wechat_checkout::domain::webhook::WebhookState;
use wechat_checkout::jobs::{JobContext, signature};
use wechat_checkout::staff::Role;

const SECRET: &str = "whsec-test-0123456789abcdefghij";
const SCHEDULE: &str = "50ms,100ms,200ms,400ms,800ms,1s";

// ---- The app ------------------------------------------------------------------------------

/// Jobs on with fast ticks and a fast schedule, signing with [`SECRET`], and `global` as
/// `WEBHOOK_URL` when given. The receivers listen on 127.0.0.1, so private addresses are allowed.
fn webhook_settings(f: Figment, global: Option<String>) -> Figment {
    let f = f
        .merge(("jobs", "on"))
        .merge(("webhook_allow_private", "on"))
        .merge(("job_tick_ms", 50))
        .merge(("webhook_secret", SECRET))
        .merge(("webhook_schedule", SCHEDULE));
    match global {
        Some(url) => f.merge(("webhook_url", url)),
        None => f,
    }
}

fn events_of(app: &TestApp, no: &str) -> Vec<wechat_checkout::domain::webhook::WebhookEvent> {
    webhooks::for_order(&mut app.db_handle().conn().unwrap(), no).unwrap()
}

fn attempts_of(app: &TestApp, id: i64) -> Vec<wechat_checkout::domain::webhook::WebhookAttempt> {
    webhooks::attempts_for(&mut app.db_handle().conn().unwrap(), &[id]).unwrap()
}

/// Creates an order through the API, with its own webhook URL when given.
async fn create_order(app: &TestApp, id: &str, fen: i64, webhook_url: Option<&str>) -> String {
    let mut body = json!({ "amount_fen": fen, "description": "演示商店-测试商品", "merchant_order_id": id });
    if let Some(url) = webhook_url {
        body["webhook_url"] = json!(url);
    }
    let res = app.http.post(app.url("/api/v1/orders")).bearer_auth(API_TOKEN).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201, "create order: {}", res.text().await.unwrap_or_default());
    let order: Value = res.json().await.unwrap();
    assert_eq!(order["webhook_url"], json!(webhook_url));
    order["out_trade_no"].as_str().unwrap().to_owned()
}

/// Pays an order through the simulator and waits until it is PAID.
async fn pay(app: &TestApp, no: &str) {
    let prepay = prepay_id(&app.jsapi(no).await);
    assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
    assert!(app.wait_for_state(no, "PAID").await, "{no} never became PAID");
}

/// Waits until the order's events satisfy `done`.
async fn wait_for_events(
    app: &TestApp,
    no: &str,
    done: impl Fn(&[wechat_checkout::domain::webhook::WebhookEvent]) -> bool,
) -> Vec<wechat_checkout::domain::webhook::WebhookEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = events_of(app, no);
        if done(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "timed out waiting on the events of {no}: {events:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn delivered(events: &[wechat_checkout::domain::webhook::WebhookEvent], event_type: &str) -> bool {
    events.iter().any(|e| e.event_type == event_type && e.state == WebhookState::Delivered)
}

fn assert_signed(r: &Received) {
    let header = r.headers.get(&signature::HEADER.to_ascii_lowercase()).expect("a signature header");
    let now = chrono::Utc::now().timestamp();
    assert!(signature::verify(SECRET.as_bytes(), header, &r.body, now, 300), "the signature verifies: {header}");
    assert!(!signature::verify(b"another secret", header, &r.body, now, 300));
}

// ---- The scenarios ------------------------------------------------------------------------

#[tokio::test]
async fn delivery_survives_five_failures_then_succeeds() {
    on_every_database("delivery_survives_five_failures_then_succeeds", |store, dir| async move {
        let merchant = receiver(5, Duration::ZERO).await;
        let hook = merchant.url("/hooks/wechat");
        let app = TestApp::start(store, dir, |f| webhook_settings(f, Some(hook))).await;
        let no = create_order(&app, "WH-RETRY-1", 1990, None).await;
        pay(&app, &no).await;

        let got = merchant.wait_until("six attempts", |r| r.len() >= 6).await;
        let events = wait_for_events(&app, &no, |e| delivered(e, "order.paid")).await;
        assert_eq!(events.len(), 1, "one event per payment: {events:#?}");
        let event = &events[0];
        assert_eq!((event.attempts, event.dedupe_key.as_str()), (6, format!("order.paid:{no}").as_str()));
        assert!(event.delivered_at.is_some() && event.next_attempt_at.is_none() && event.lease_owner.is_none());

        // Every attempt is logged: five 500s with the reply, then the 200.
        let attempts = attempts_of(&app, event.id);
        let statuses: Vec<Option<i32>> = attempts.iter().map(|a| a.status_code).collect();
        assert_eq!(statuses, [Some(500), Some(500), Some(500), Some(500), Some(500), Some(200)]);
        for a in &attempts[..5] {
            assert_eq!((a.error.as_deref(), a.response_snippet.as_deref()), (Some("HTTP 500"), Some("boom")));
        }
        assert_eq!((attempts[5].error.as_deref(), attempts[5].response_snippet.as_deref()), (None, Some("ok")));
        // Retries wait out the schedule: 50ms, 100ms, 200ms, 400ms, 800ms.
        for (pair, ms) in attempts.windows(2).zip([50, 100, 200, 400, 800]) {
            let gap = (pair[1].attempted_at - pair[0].attempted_at).num_milliseconds();
            assert!(gap >= ms, "attempt {} came {gap} ms after the previous one, before its {ms} ms", pair[1].id);
        }

        // What arrived: the same event six times, each signed over its exact body.
        assert_eq!(got.len(), 6, "no attempt after the delivery");
        for r in &got {
            assert_eq!(r.path, "/hooks/wechat");
            assert_signed(r);
            assert_eq!(r.headers["content-type"], "application/json");
            assert_eq!(r.headers["x-wechat-checkout-event"], "order.paid");
            assert_eq!(r.headers["idempotency-key"], event.id.to_string());
            assert_eq!(r.headers["x-wechat-checkout-event-id"], event.id.to_string());
        }
        let body = got[5].json();
        assert_eq!((body["id"].as_i64(), body["type"].as_str()), (Some(event.id), Some("order.paid")));
        assert!(chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).is_ok());
        let order = app.order(&no).await;
        assert_eq!(body["data"], order, "the data is the order as the API shows it");
        assert_eq!((body["data"]["state"].as_str(), body["data"]["paid_fen"].as_i64()), (Some("PAID"), Some(1990)));
        assert!(got.iter().all(|r| r.body == got[0].body), "every attempt sends the same body");
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_per_order_url_overrides_the_global_one() {
    on_every_database("a_per_order_url_overrides_the_global_one", |store, dir| async move {
        let global = receiver(0, Duration::ZERO).await;
        let own = receiver(0, Duration::ZERO).await;
        let hook = global.url("/global");
        let app = TestApp::start(store, dir, |f| webhook_settings(f, Some(hook))).await;
        let with_own = create_order(&app, "WH-OWN-1", 100, Some(&own.url("/own?shop=7"))).await;
        let without = create_order(&app, "WH-GLOBAL-1", 200, None).await;
        pay(&app, &with_own).await;
        pay(&app, &without).await;

        let own_events = wait_for_events(&app, &with_own, |e| delivered(e, "order.paid")).await;
        let global_events = wait_for_events(&app, &without, |e| delivered(e, "order.paid")).await;
        assert_eq!(own_events[0].url, own.url("/own?shop=7"));
        assert_eq!(global_events[0].url, global.url("/global"));
        let (at_own, at_global) = (own.received(), global.received());
        assert_eq!(at_own.len(), 1, "{at_own:#?}");
        assert_eq!(at_own[0].path, "/own?shop=7");
        assert_eq!(at_own[0].json()["data"]["out_trade_no"], with_own.as_str());
        assert_eq!(at_own[0].json()["data"]["webhook_url"], own.url("/own?shop=7").as_str());
        assert_eq!(at_global.len(), 1, "the global URL hears only of the order without a URL of its own");
        assert_eq!(at_global[0].json()["data"]["out_trade_no"], without.as_str());
        at_own.iter().chain(&at_global).for_each(assert_signed);
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_order_without_any_url_gets_no_event() {
    on_every_database("an_order_without_any_url_gets_no_event", |store, dir| async move {
        let own = receiver(0, Duration::ZERO).await;
        // Signing is configured, but there is no global URL.
        let app = TestApp::start(store, dir, |f| webhook_settings(f, None)).await;
        let silent = create_order(&app, "WH-NONE-1", 100, None).await;
        let heard = create_order(&app, "WH-NONE-2", 200, Some(&own.url("/own"))).await;
        pay(&app, &silent).await;
        pay(&app, &heard).await;
        // The later payment's delivery means the scan has passed the earlier one.
        wait_for_events(&app, &heard, |e| delivered(e, "order.paid")).await;
        assert!(events_of(&app, &silent).is_empty(), "no URL, no event");
        assert_eq!(own.received().len(), 1);
        assert_eq!(own.received()[0].json()["data"]["out_trade_no"], heard.as_str());
        app.stop().await;
    })
    .await;
}

/// On WeChat Pay API v2 and v3 alike: the events are the same whatever the protocol below.
#[tokio::test]
async fn order_refunded_follows_a_successful_refund() {
    for version in ["v2", "v3"] {
        order_refunded_follows_a_successful_refund_on(version).await;
    }
}

async fn order_refunded_follows_a_successful_refund_on(version: &'static str) {
    on_every_database("order_refunded_follows_a_successful_refund", |store, dir| async move {
        let merchant = receiver(0, Duration::ZERO).await;
        let hook = merchant.url("/hooks");
        let app =
            TestApp::start(store, dir, |f| webhook_settings(f, Some(hook)).merge(("wechat_api_version", version)))
                .await;
        let no = create_order(&app, "WH-REFUND-1", 1990, None).await;
        pay(&app, &no).await;
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;

        let out_refund_no = console_refund(&app, &admin, &no, "5.00").await;
        // WeChat settles the refund; a re-query (or its notify) brings the outcome here.
        let settle = app
            .http
            .post(app.url(&format!("/simulator/control/refunds/{out_refund_no}/settle")))
            .json(&json!({ "status": "SUCCESS" }))
            .send()
            .await
            .unwrap();
        // (If the simulator settled it by itself already, the re-query finds that instead.)
        eprintln!("settle: {}", settle.status());
        let res =
            post_form(&app, &admin, &format!("/admin/orders/{no}"), &format!("/admin/orders/{no}/requery"), &[]).await;
        assert_eq!(res.status(), 303);

        let got = merchant
            .wait_until("order.refunded", |r| {
                r.iter().any(|r| r.headers["x-wechat-checkout-event"] == "order.refunded")
            })
            .await;
        let events = wait_for_events(&app, &no, |e| delivered(e, "order.refunded")).await;
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["order.paid", "order.refunded"]);
        assert_eq!(events[1].dedupe_key, format!("order.refunded:{out_refund_no}"));
        let refunded = got.iter().find(|r| r.headers["x-wechat-checkout-event"] == "order.refunded").unwrap();
        assert_signed(refunded);
        let body = refunded.json();
        assert_eq!(body["type"], "order.refunded");
        assert_eq!(body["data"]["out_trade_no"], no.as_str());
        assert_eq!(body["data"]["refund"]["out_refund_no"], out_refund_no.as_str());
        assert_eq!(body["data"]["refund"]["amount_fen"], 500);
        assert!(chrono::DateTime::parse_from_rfc3339(body["data"]["refund"]["succeeded_at"].as_str().unwrap()).is_ok());
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_console_lists_events_and_a_manual_resend_delivers_again() {
    on_every_database("the_console_lists_events_and_a_manual_resend_delivers_again", |store, dir| async move {
        let merchant = receiver(0, Duration::ZERO).await;
        let hook = merchant.url("/hooks");
        let app = TestApp::start(store, dir, |f| webhook_settings(f, Some(hook))).await;
        let no = create_order(&app, "WH-RESEND-1", 990, None).await;
        pay(&app, &no).await;
        let event = wait_for_events(&app, &no, |e| delivered(e, "order.paid")).await.remove(0);
        create_staff(&app, "vic-viewer", Role::Viewer);
        create_staff(&app, "olga-operator", Role::Operator);
        let viewer = sign_in(&app, "vic-viewer", STAFF_PASSWORD).await;
        let operator = sign_in(&app, "olga-operator", STAFF_PASSWORD).await;

        // Every role sees the events with their attempts; only operators get the re-send form.
        let (status, html) = get(&app, &viewer, "/admin/webhooks").await;
        assert_eq!(status, 200);
        assert!(html.contains(&format!("data-id=\"{}\" data-state=\"DELIVERED\"", event.id)), "{html}");
        assert!(html.contains(&no) && html.contains("class=\"attempt\""));
        assert!(!html.contains("/resend"), "viewers cannot re-send");
        let (_, failed_only) = get(&app, &viewer, "/admin/webhooks?state=FAILED").await;
        assert!(failed_only.contains("id=\"no-webhooks\""));
        let (_, by_order) = get(&app, &viewer, &format!("/admin/webhooks?order={no}")).await;
        let (_, order_page) = get(&app, &viewer, &format!("/admin/orders/{no}")).await;
        assert!(
            order_page.contains(&format!("href=\"/admin/webhooks?order={no}\"")),
            "the order links to its webhooks"
        );
        assert!(by_order.contains(&format!("data-id=\"{}\"", event.id)));
        let action = format!("/admin/webhooks/{}/resend", event.id);
        let refused = post_form(&app, &viewer, "/admin/webhooks", &action, &[("back", "/admin/webhooks")]).await;
        assert_eq!(refused.status(), 403);

        let res = post_form(&app, &operator, "/admin/webhooks", &action, &[("back", "/admin/webhooks")]).await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/admin/webhooks");
        let got = merchant.wait_until("the re-sent event", |r| r.len() >= 2).await;
        assert_eq!(got[1].event_id(), event.id);
        assert_eq!(got[1].json()["data"], got[0].json()["data"], "the same event again");
        assert_signed(&got[1]);
        let again = wait_for_events(&app, &no, |e| e[0].state == WebhookState::Delivered && e[0].attempts == 1).await;
        assert_eq!(again.len(), 1);
        assert_eq!(attempts_of(&app, event.id).len(), 2, "both deliveries are logged");

        let entries = audit::for_order(&mut app.db_handle().conn().unwrap(), &no).unwrap();
        let resend = entries.iter().find(|a| a.action == "webhook_resend").expect("the re-send is audited");
        assert_eq!(resend.actor, "olga-operator");
        assert_eq!(resend.target.as_deref(), Some(format!("webhook:{}", event.id).as_str()));
        let (_, html) = get(&app, &operator, "/admin/webhooks").await;
        assert!(html.contains("class=\"flash flash-success\""), "{html}");
        let missing = post_form(&app, &operator, "/admin/webhooks", "/admin/webhooks/999999/resend", &[]).await;
        assert_eq!(missing.status(), 404);
        app.stop().await;
    })
    .await;
}

/// A job context of its own (own pool, own lease owner) on the app's database.
fn instance(app: &TestApp, hook: &str, owner: &str) -> JobContext {
    app.job_context(owner, |f| webhook_settings(f, Some(hook.to_owned())), |gateway| gateway)
}

#[tokio::test]
async fn two_instances_deliver_each_event_exactly_once() {
    on_every_database("two_instances_deliver_each_event_exactly_once", |store, dir| async move {
        // A slow merchant widens the window in which both instances see the same due events.
        let merchant = receiver(0, Duration::from_millis(30)).await;
        let hook = merchant.url("/hooks");
        let h = hook.clone();
        // The server's own jobs stay off: only the two contexts below deliver.
        let app = TestApp::start(store, dir, |f| webhook_settings(f, Some(h)).merge(("jobs", "off"))).await;
        let mut orders = Vec::new();
        for i in 0..12 {
            let no = create_order(&app, &format!("WH-RACE-{i}"), 100 + i, None).await;
            pay(&app, &no).await;
            orders.push(no);
        }
        let (a, b) = (instance(&app, &hook, "instance-a"), instance(&app, &hook, "instance-b"));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut handled = (0, 0);
        while merchant.counts().len() < orders.len() {
            assert!(Instant::now() < deadline, "timed out; received {:?}", merchant.counts());
            let (ra, rb) = tokio::join!(
                wechat_checkout::jobs::webhooks::run_once(&a),
                wechat_checkout::jobs::webhooks::run_once(&b)
            );
            handled.0 += ra.expect("instance a's pass").handled;
            handled.1 += rb.expect("instance b's pass").handled;
        }
        eprintln!("attempts made by instance a, b: {handled:?}");
        assert_eq!(handled.0 + handled.1, orders.len(), "one attempt per event between them");
        // More passes find nothing left to do.
        for _ in 0..3 {
            let (ra, rb) = tokio::join!(
                wechat_checkout::jobs::webhooks::run_once(&a),
                wechat_checkout::jobs::webhooks::run_once(&b)
            );
            assert_eq!((ra.unwrap().handled, rb.unwrap().handled), (0, 0));
        }
        let counts = merchant.counts();
        assert!(counts.values().all(|n| *n == 1), "each event exactly once: {counts:?}");
        let mut ids = Vec::new();
        for no in &orders {
            let events = events_of(&app, no);
            assert_eq!(events.len(), 1, "one event for {no}");
            assert_eq!((events[0].state, events[0].attempts), (WebhookState::Delivered, 1));
            assert_eq!(attempts_of(&app, events[0].id).len(), 1);
            ids.push(events[0].id);
        }
        ids.sort_unstable();
        assert_eq!(counts.keys().copied().collect::<Vec<_>>(), ids);
        app.stop().await;
    })
    .await;
}
