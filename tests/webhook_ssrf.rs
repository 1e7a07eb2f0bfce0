//! Webhooks go only to public addresses: an order naming an internal URL is refused with a 422
//! (every spelling of every private range), a name that turns internal after the order was taken
//! is refused when its event is delivered (the resolver's answer is checked, and only a checked
//! address is connected to), and a redirect towards an internal address is not followed; the
//! reply kept from it is bounded and shown escaped. On SQLite, and on PostgreSQL when
//! TEST_DATABASE_URL is set.

mod common;

use std::time::{Duration, Instant};

use common::admin::{get, sign_in};
use common::app::{ADMIN_PASSWORD, ADMIN_USER, API_TOKEN, TestApp, on_every_backend_with, prepay_id};
use common::merchant_endpoint::{answering, receiver};
use rocket::figment::Figment;
use serde_json::{Value, json};
use wechat_checkout::db::{orders, webhooks};
use wechat_checkout::domain::webhook::{WebhookAttempt, WebhookEvent, WebhookState};

const SECRET: &str = "whsec-ssrf-0123456789abcdefghij";

/// Signing on, jobs on with fast ticks and a fast schedule; `WEBHOOK_ALLOW_PRIVATE` as given.
fn hooks(f: Figment, allow_private: bool) -> Figment {
    let f = f
        .merge(("jobs", "on"))
        .merge(("job_tick_ms", 50))
        .merge(("webhook_secret", SECRET))
        .merge(("webhook_schedule", "100ms,200ms,400ms,1s"));
    if allow_private { f.merge(("webhook_allow_private", "on")) } else { f }
}

async fn create(app: &TestApp, id: &str, webhook_url: &str) -> (u16, Value) {
    let body = json!({ "amount_fen": 100, "description": "演示商店-测试商品", "merchant_order_id": id,
        "webhook_url": webhook_url });
    let res = app.http.post(app.url("/api/v1/orders")).bearer_auth(API_TOKEN).json(&body).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

async fn pay(app: &TestApp, no: &str) {
    let prepay = prepay_id(&app.jsapi(no).await);
    assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
    assert!(app.wait_for_state(no, "PAID").await, "{no} never became PAID");
}

/// The order's single event once it has at least `n` attempts or is no longer pending, with its
/// attempts.
async fn attempted(app: &TestApp, no: &str, n: usize) -> (WebhookEvent, Vec<WebhookAttempt>) {
    let db = app.db_handle();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = webhooks::for_order(&mut db.conn().unwrap(), no).unwrap();
        if let [event] = events.as_slice() {
            let attempts = webhooks::attempts_for(&mut db.conn().unwrap(), &[event.id]).unwrap();
            if attempts.len() >= n || event.state != WebhookState::Pending {
                return (event.clone(), attempts);
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {n} attempts on {no}: {events:#?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Every private, local or metadata destination, in the spellings the URL parser accepts.
const INTERNAL: &[&str] = &[
    "http://127.0.0.1/hooks",
    "http://10.1.2.3/hooks",
    "http://172.16.0.1/hooks",
    "http://192.168.1.1/hooks",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hooks",
    "http://[::1]/hooks",
    "http://[fd00::1]/hooks",
    "http://[::ffff:10.0.0.1]/hooks",
    "http://2130706433/hooks",
    "http://localhost/hooks",
    // More spellings and ranges: hex and octal IPv4, a trailing dot, a *.localhost name, the
    // cloud metadata names and addresses, link-local and NAT64 IPv6, "this network", multicast.
    "http://0x7f.0.0.1:8080/hooks",
    "http://0177.0.0.01/hooks",
    "http://127.1/hooks",
    "https://localhost./hooks",
    "http://shop.localhost:3000/hooks",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::1]/hooks",
    "http://[64:ff9b::a00:1]/hooks",
    "http://[::ffff:a9fe:a9fe]/hooks",
    "http://0.0.0.0/hooks",
    "http://224.0.0.1/hooks",
];

#[tokio::test]
async fn an_order_naming_an_internal_webhook_url_is_refused() {
    on_every_backend_with(
        |f, _| hooks(f, false),
        |app, _| async move {
            for (i, url) in INTERNAL.iter().enumerate() {
                let id = format!("SSRF-{i}");
                let (status, err) = create(&app, &id, url).await;
                assert_eq!(status, 422, "{url}: {err}");
                assert_eq!(err["error"]["field"], "webhook_url", "{url}: {err}");
                let found = orders::find_by_merchant_order_id(&mut app.db_handle().conn().unwrap(), &id).unwrap();
                assert!(found.is_none(), "{url}: nothing is created");
            }
            let (_, err) = create(&app, "SSRF-MSG", "http://10.0.0.1/hooks").await;
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.contains("10.0.0.1 is private"), "the reason is named: {message}");
            // A public name is still taken (this one never resolves, which is no reason to refuse).
            let (status, created) = create(&app, "SSRF-OK", "https://hooks.merchant.example/wechat").await;
            assert_eq!(status, 201, "{created}");
            app
        },
    )
    .await;
}

#[tokio::test]
async fn a_name_that_turns_internal_is_refused_at_delivery() {
    on_every_backend_with(
        |f, _| hooks(f, false),
        |app, _| async move {
            let merchant = receiver(0, Duration::ZERO).await;
            let port = merchant.base_url.rsplit(':').next().unwrap().to_owned();
            // Taken while its name does not resolve to anything internal (here: to nothing)...
            let (status, created) = create(&app, "SSRF-DNS-1", &format!("http://hooks.invalid:{port}/hooks")).await;
            assert_eq!(status, 201, "{created}");
            let no = created["out_trade_no"].as_str().unwrap().to_owned();
            // ...then the name points at this machine, as a rebinding DNS server would make it.
            let moved = diesel::sql_query(format!(
                "UPDATE orders SET webhook_url = 'http://localhost:{port}/hooks' WHERE out_trade_no = '{no}'"
            ));
            assert_eq!(diesel::RunQueryDsl::execute(moved, &mut app.db_handle().conn().unwrap()).unwrap(), 1);
            pay(&app, &no).await;

            let (event, attempts) = attempted(&app, &no, 2).await;
            assert_eq!(event.url, format!("http://localhost:{port}/hooks"));
            assert_eq!(event.state, WebhookState::Pending, "refused attempts are failed ones, retried: {attempts:?}");
            for a in &attempts {
                let error = a.error.as_deref().unwrap_or("");
                assert!(
                    error.starts_with("refused: address ") && error.contains("(localhost) is loopback"),
                    "the attempt says why: {a:?}"
                );
                assert_eq!((a.status_code, a.response_snippet.as_deref()), (None, None));
            }
            assert!(merchant.received().is_empty(), "nothing reached the local receiver: {:?}", merchant.received());
            app
        },
    )
    .await;
}

#[tokio::test]
async fn a_redirect_to_an_internal_address_is_not_followed() {
    on_every_backend_with(
        |f, _| hooks(f, true),
        |app, _| async move {
            let internal = receiver(0, Duration::ZERO).await;
            // A hostile reply: a redirect inwards, with a script and far more than is kept.
            let body = format!("<script>alert('snippet')</script>{}", "A".repeat(4096));
            let location = format!("location: {}\r\n", internal.url("/admin"));
            let outer = answering("302 Found", &location, &body).await;
            let (status, created) = create(&app, "SSRF-302", &outer.url("/hooks")).await;
            assert_eq!(status, 201, "{created}");
            let no = created["out_trade_no"].as_str().unwrap().to_owned();
            pay(&app, &no).await;

            let (_, attempts) = attempted(&app, &no, 2).await;
            for a in &attempts {
                assert_eq!((a.status_code, a.error.as_deref()), (Some(302), Some("HTTP 302")), "{a:?}");
                let snippet = a.response_snippet.as_deref().unwrap();
                assert!(snippet.starts_with("<script>") && snippet.len() <= 1024, "bounded: {} bytes", snippet.len());
            }
            assert!(outer.received().len() >= 2);
            assert!(internal.received().is_empty(), "the redirect was followed: {:?}", internal.received());

            let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
            let (status, html) = get(&app, &admin, &format!("/admin/webhooks?order={no}")).await;
            assert_eq!(status, 200);
            let escaped = ["&#60;script&#62;alert(", "&lt;script&gt;alert("];
            assert!(escaped.iter().any(|e| html.contains(e)), "shown escaped: {html}");
            assert!(!html.contains("<script>alert"), "never as markup");
            app
        },
    )
    .await;
}
