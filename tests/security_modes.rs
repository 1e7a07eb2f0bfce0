//! Issue 10, findings 1 and 2 over the real server: simulator mode never switches on by itself
//! where the internet can reach it, says so in every answer when it is on, and the mounted
//! simulator calls back only to the app; and a client cannot choose its own IP address with
//! `X-Real-IP` unless it is a configured `TRUSTED_PROXY`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::admin::{browser, csrf_of};
use common::app::{API_TOKEN, TestApp, TestDb, on_every_backend, order_row};
use common::merchant_endpoint::receiver;
use serde_json::{Value, json};
use wechat_checkout::db::{audit, staff};
use wechat_checkout::wxpay::SignType;

const SPOOFED: &str = "203.0.113.9";

// ---- Finding 1: simulator mode --------------------------------------------------------------

/// The real binary with nothing but `extra` set: how it answers a start-up configuration.
fn start_with(extra: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_wechat-checkout"));
    command
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ROCKET_PORT", common::app::free_port().to_string())
        .env("DATABASE_URL", dir.path().join("db.sqlite"))
        .stdin(Stdio::null());
    for (k, v) in extra {
        command.env(k, v);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // A configuration that is accepted starts serving; one that is refused exits at once.
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
            return (out.status.success(), text);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    (true, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn without_credentials_off_loopback_the_app_refuses_to_start() {
    // An env file that failed to load on a public server: no credentials, no SIMULATOR.
    for (address, base) in [
        ("0.0.0.0", "https://pay.shop.example"),
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("127.0.0.1", "https://pay.shop.example"),
    ] {
        let (started, text) = start_with(&[("ROCKET_ADDRESS", address), ("PUBLIC_BASE_URL", base)]);
        assert!(!started, "{address} / {base} must not start:\n{text}");
        for named in ["SIMULATOR=on", "WECHAT_APPID", "WECHAT_MCH_ID", "WECHAT_API_KEY", "WECHAT_APP_SECRET"] {
            assert!(text.contains(named), "{address} / {base}: the message names {named}:\n{text}");
        }
    }
}

#[test]
fn simulator_on_beside_real_credentials_is_refused() {
    let (started, text) = start_with(&[
        ("SIMULATOR", "on"),
        ("WECHAT_APPID", "wx2421b1c4370ec43b"),
        ("WECHAT_MCH_ID", "10000100"),
        ("WECHAT_API_KEY", "192006250b4c09247ec02edce69f6a2d"),
        ("WECHAT_APP_SECRET", "0123456789abcdef0123456789abcdef"),
    ]);
    assert!(!started, "{text}");
    assert!(text.contains("SIMULATOR=on cannot be combined with real credentials"), "{text}");
}

#[tokio::test]
async fn simulator_mode_says_so_in_every_answer() {
    on_every_backend(|app| async move {
        let created: Value = app.create_order("SIM-1", 100).await;
        assert_eq!(created["simulated"], true, "{created}");
        assert_eq!(app.order(created["out_trade_no"].as_str().unwrap()).await["simulated"], true);
        let missing = app.http.get(app.url("/api/v1/orders/NOPE")).bearer_auth(API_TOKEN).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        assert_eq!(missing.json::<Value>().await.unwrap()["simulated"], true);
        let unauthorized = app.http.get(app.url("/api/v1/orders/NOPE")).send().await.unwrap();
        assert_eq!(unauthorized.json::<Value>().await.unwrap()["simulated"], true);
        let health: Value = app.get_json("/healthz").await;
        assert_eq!((&health["status"], &health["simulated"]), (&json!("ok"), &json!(true)), "{health}");

        let login = app.http.get(app.url("/admin/login")).send().await.unwrap().text().await.unwrap();
        assert!(login.contains("id=\"simulated-banner\""), "the sign-in page shows the simulator banner");
        let staff = common::admin::sign_in(&app, common::app::ADMIN_USER, common::app::ADMIN_PASSWORD).await;
        for page in ["/admin", "/admin/orders", "/admin/webhooks", "/admin/account/password"] {
            let (status, html) = common::admin::get(&app, &staff, page).await;
            assert_eq!(status, 200, "{page}");
            assert!(html.contains("id=\"simulated-banner\""), "{page} shows the simulator banner");
        }
        app
    })
    .await;
}

#[tokio::test]
async fn webhooks_of_a_simulated_payment_say_so() {
    let hooks = receiver(0, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let url = hooks.url("/hooks");
    let app = TestApp::start(TestDb::sqlite(&dir), Some(dir), |f| {
        f.merge(("jobs", "on"))
            .merge(("job_tick_ms", 50))
            .merge(("webhook_secret", "whsec-test-0123456789abcdefghij"))
            .merge(("webhook_url", url))
            .merge(("webhook_allow_private", "on"))
    })
    .await;
    app.paid_order("SIM-HOOK", 100).await;
    let got = hooks.wait_until("the order.paid webhook", |r| !r.is_empty()).await;
    let event = got[0].json();
    assert_eq!(event["type"], "order.paid");
    assert_eq!(event["simulated"], true, "{event}");
    assert_eq!(event["data"]["simulated"], true, "{event}");
    app.stop().await;
}

#[tokio::test]
async fn the_mounted_simulator_calls_back_only_to_the_app() {
    let app = TestApp::sqlite().await;
    let merchant = common::demo_merchant(SignType::Md5);
    for notify_url in
        ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/wechat/notify", "https://evil.example/n"]
    {
        let body = merchant
            .signed_request(vec![
                ("body", "x".into()),
                ("out_trade_no", "SSRF1".into()),
                ("total_fee", "1".into()),
                ("spbill_create_ip", "127.0.0.1".into()),
                ("notify_url", notify_url.into()),
                ("trade_type", "JSAPI".into()),
                ("openid", "oSSRF".into()),
            ])
            .to_xml();
        let reply = app.http.post(app.url("/simulator/pay/unifiedorder")).body(body).send().await.unwrap();
        let text = reply.text().await.unwrap();
        assert!(text.contains("模拟器只向本应用自己的地址发送通知"), "{notify_url}: {text}");
        assert!(!text.contains("prepay_id"), "{notify_url}: no prepay issued: {text}");
    }

    // OAuth: the shopper is redirected only back to the app, never to a foreign site.
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let authorize = |redirect: &str| {
        let mut u = url::Url::parse(&app.url("/simulator/connect/oauth2/authorize")).unwrap();
        u.query_pairs_mut()
            .append_pair("appid", wechat_checkout::simulator::DEMO_APPID)
            .append_pair("redirect_uri", redirect)
            .append_pair("response_type", "code")
            .append_pair("scope", "snsapi_base")
            .append_pair("state", "s1");
        u.to_string()
    };
    for foreign in ["https://evil.example/steal", "http://127.0.0.1:1/pay/oauth/callback"] {
        let res = no_redirects.get(authorize(foreign)).send().await.unwrap();
        assert!(!res.status().is_redirection(), "{foreign}: {:?}", res.headers().get("location"));
        assert!(res.text().await.unwrap().contains("redirect_uri 参数错误"));
    }
    let ours = no_redirects.get(authorize(&app.url("/pay/oauth/callback"))).send().await.unwrap();
    assert!(ours.status().is_redirection(), "the app's own callback is allowed");
    app.stop().await;
}

// ---- Finding 2: client IP --------------------------------------------------------------------

async fn failed_sign_in(app: &TestApp, forwarded: &str) -> u16 {
    let client = browser();
    let page = client.get(app.url("/admin/login")).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&page);
    let form = [("csrf", csrf.as_str()), ("username", "nobody-here"), ("password", "wrong password"), ("next", "")];
    let res = client
        .post(app.url("/admin/login"))
        .header("Origin", &app.base_url)
        .header("X-Real-IP", forwarded)
        .form(&form)
        .send()
        .await
        .unwrap();
    res.status().as_u16()
}

/// Opens the checkout (OAuth included) and asks for the JSAPI parameters, every request claiming
/// to come from `claimed`.
async fn checkout_claiming(app: &TestApp, no: &str, claimed: &str) {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Mozilla/5.0 (iPhone) MicroMessenger/8.0.50")
        .build()
        .unwrap();
    let mut url = app.url(&format!("/pay/{no}"));
    for _ in 0..10 {
        let res = client.get(&url).header("X-Real-IP", claimed).send().await.unwrap();
        if !res.status().is_redirection() {
            break;
        }
        let next = res.headers()["location"].to_str().unwrap().to_owned();
        url = if next.starts_with("http") { next } else { app.url(&next) };
    }
    let res = client
        .post(app.url(&format!("/pay/{no}/jsapi")))
        .header("Origin", &app.base_url)
        .header("X-Real-IP", claimed)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

fn recorded_addresses(app: &TestApp) -> Vec<Option<String>> {
    let mut conn = app.db_handle().conn().unwrap();
    audit::page(&mut conn, None, 1000).unwrap().into_iter().map(|r| r.remote_addr).collect()
}

#[tokio::test]
async fn a_client_cannot_choose_its_own_address() {
    on_every_backend(|app| async move {
        assert_eq!(failed_sign_in(&app, SPOOFED).await, 401);
        let addresses = recorded_addresses(&app);
        assert!(!addresses.is_empty());
        assert!(addresses.iter().all(|a| a.as_deref() == Some("127.0.0.1")), "{addresses:?}");

        // Rotating the header does not reset the per-IP sign-in limit: it is still one client.
        let mut statuses = Vec::new();
        for i in 0..wechat_checkout::staff::login::MAX_FAILURES_PER_IP + 1 {
            statuses.push(failed_sign_in(&app, &format!("198.51.100.{}", i + 1)).await);
        }
        assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
        let since = chrono::DateTime::from_timestamp(0, 0).unwrap().naive_utc();
        let mut conn = app.db_handle().conn().unwrap();
        assert_eq!(staff::failures_from_ip(&mut conn, "198.51.100.1", since).unwrap(), 0);

        // The shopper's address sent to WeChat (spbill_create_ip) is the peer's, too.
        let no = app.create_order("IP-1", 100).await["out_trade_no"].as_str().unwrap().to_owned();
        checkout_claiming(&app, &no, SPOOFED).await;
        assert_eq!(order_row(&app.db_handle(), &no).client_ip.as_deref(), Some("127.0.0.1"));
        app
    })
    .await;
}

#[tokio::test]
async fn a_trusted_proxy_is_believed() {
    let dir = tempfile::tempdir().unwrap();
    let app =
        TestApp::start(TestDb::sqlite(&dir), Some(dir), |f| f.merge(("trusted_proxy", "127.0.0.1/32, ::1"))).await;
    assert_eq!(failed_sign_in(&app, SPOOFED).await, 401);
    let addresses = recorded_addresses(&app);
    assert!(addresses.iter().any(|a| a.as_deref() == Some(SPOOFED)), "{addresses:?}");
    app.stop().await;
}
