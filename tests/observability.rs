//! Observability (issue 12): `/metrics` after a real shopper flow shows every family with its
//! labels and counts; `METRICS_TOKEN` guards it; `X-Request-Id` is echoed when sane, replaced
//! when hostile, made when absent; with `LOG_FORMAT=json` the real binary writes only JSON lines,
//! Rocket's included, and every line of one request (its WeChat call's too) carries its id; a
//! bad `LOG_FORMAT` stops the binary with a message naming it.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::app::{API_TOKEN, TestApp};
use common::process::Instance;
use common::{fast_config, start_simulator};
use serde_json::{Value, json};

const METRICS_TOKEN: &str = "metrics-token-0123456789abcdef";

/// The sum of the samples of `name` whose labels include every `labels` pair (`None` when no
/// sample matches), read from the text format. Only counts are read (counters, buckets,
/// `_count`, the gauges of orders and exceptions): whole numbers.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
        if metric != name || !labels.iter().all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\""))) {
            continue;
        }
        let value: u64 = value.parse().unwrap_or_else(|_| panic!("a whole number in {line:?}"));
        found = Some(found.unwrap_or(0) + value);
    }
    found
}

fn positive(text: &str, name: &str, labels: &[(&str, &str)]) {
    let value = sample(text, name, labels);
    assert!(value.is_some_and(|v| v > 0), "{name} {labels:?} is {value:?} in:\n{text}");
}

async fn scrape(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(app.url("/metrics"));
    if let Some(token) = token {
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_shopper_flow_show_every_family() {
    let app = TestApp::sqlite().await;
    // Create through the API, checkout (OAuth), jsapi, the simulator pays, its notify applies.
    let no = app.paid_order("obs-metrics-1", 123).await;
    // A forged notify (refused) and a path no route serves.
    let forged = app.http.post(app.url("/wechat/notify")).body("<xml><oops").send().await.unwrap();
    assert_eq!(forged.status(), 200);
    assert_eq!(app.http.get(app.url("/no/such/page")).send().await.unwrap().status(), 404);

    let res = scrape(&app, None).await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = res.text().await.unwrap();

    // HTTP: by route template (never the raw path), method and status, with a histogram.
    let http = "wechat_checkout_http_requests_total";
    positive(&text, http, &[("route", "/api/v1/orders"), ("method", "POST"), ("status", "201")]);
    positive(&text, http, &[("route", "/pay/<out_trade_no>/jsapi"), ("method", "POST"), ("status", "200")]);
    positive(&text, http, &[("route", "unmatched"), ("method", "GET"), ("status", "404")]);
    assert!(!text.contains(&no), "an order number made it into a label:\n{text}");
    assert!(text.contains("# TYPE wechat_checkout_http_request_duration_seconds histogram"), "{text}");
    let jsapi_latency = [("route", "/pay/<out_trade_no>/jsapi"), ("le", "+Inf")];
    positive(&text, "wechat_checkout_http_request_duration_seconds_bucket", &jsapi_latency);

    // Notifies by kind and verdict: the simulator's genuine one, and the forged one.
    positive(&text, "wechat_checkout_notify_deliveries_total", &[("kind", "payment"), ("verdict", "paid")]);
    positive(&text, "wechat_checkout_notify_deliveries_total", &[("kind", "payment"), ("verdict", "bad_xml")]);

    // WeChat calls by endpoint and outcome, with their latency.
    let calls = "wechat_checkout_wechat_api_calls_total";
    positive(&text, calls, &[("endpoint", "unifiedorder"), ("outcome", "success")]);
    positive(&text, calls, &[("endpoint", "oauth_access_token"), ("outcome", "success")]);
    positive(&text, "wechat_checkout_wechat_api_duration_seconds_count", &[("endpoint", "unifiedorder")]);

    // Group commit: the notify writer's batch, and (SQLite) the order creation's group.
    positive(&text, "wechat_checkout_group_commit_batch_size_count", &[("writer", "notify")]);
    positive(&text, "wechat_checkout_group_commit_batch_size_count", &[("writer", "sqlite_writes")]);

    // The database's figures, for this app's database alone: exact.
    assert_eq!(sample(&text, "wechat_checkout_orders", &[("state", "PAID")]), Some(1), "{text}");
    assert_eq!(sample(&text, "wechat_checkout_orders", &[("state", "CREATED")]), Some(0), "{text}");
    assert_eq!(sample(&text, "wechat_checkout_open_exceptions", &[("kind", "amount_mismatch")]), Some(0));
    assert!(text.contains("# TYPE wechat_checkout_orders gauge"), "{text}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_is_required_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::app::TestDb::sqlite(&dir);
    let app = TestApp::start(db, Some(dir), |f| f.merge(("metrics_token", METRICS_TOKEN))).await;
    assert_eq!(scrape(&app, None).await.status(), 401);
    assert_eq!(scrape(&app, Some("metrics-token-0123456789abcdeX")).await.status(), 401);
    assert_eq!(scrape(&app, Some("metrics-token")).await.status(), 401);
    let basic = app.http.get(app.url("/metrics")).header("Authorization", METRICS_TOKEN).send().await.unwrap();
    assert_eq!(basic.status(), 401);
    let res = scrape(&app, Some(METRICS_TOKEN)).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("wechat_checkout_orders{"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_replaced_or_made() {
    let app = TestApp::sqlite().await;
    let id_of = |res: &reqwest::Response| res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let sane = "req-42_a.b:c";
    let res = app.http.get(app.url("/healthz")).header("X-Request-Id", sane).send().await.unwrap();
    assert_eq!(id_of(&res), sane);
    // Also on answers no route gave (a catcher's page).
    let res = app.http.get(app.url("/no/such/page")).header("X-Request-Id", sane).send().await.unwrap();
    assert_eq!((res.status().as_u16(), id_of(&res)), (404, sane.to_owned()));
    let too_long = "a".repeat(65);
    for hostile in ["a b", "x\"}{\"level\":\"ERROR\"", "<script>", too_long.as_str(), "日志"] {
        let res = app.http.get(app.url("/healthz")).header("X-Request-Id", hostile).send().await.unwrap();
        let id = id_of(&res);
        assert_ne!(id, hostile);
        assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id:?} for {hostile:?}");
    }
    let first = id_of(&app.http.get(app.url("/healthz")).send().await.unwrap());
    let second = id_of(&app.http.get(app.url("/healthz")).send().await.unwrap());
    assert!(first.len() == 16 && second.len() == 16 && first != second, "{first} {second}");
    app.stop().await;
}

/// A shopper's WeChat browser sending `request_id` with every request.
fn shopper(request_id: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("X-Request-Id", request_id.parse().unwrap());
    reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (iPhone) MicroMessenger/8.0.50(0x1800323b) NetType/WIFI")
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The JSON lines of the log whose spans hold `request_id`.
fn lines_of(lines: &[Value], request_id: &str) -> Vec<Value> {
    let ours = |line: &&Value| {
        line["spans"].as_array().is_some_and(|spans| spans.iter().any(|s| s["request_id"] == request_id))
    };
    lines.iter().filter(ours).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_into_wechat_calls() {
    let sim = start_simulator(fast_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = dir.path().join("obs.sqlite").to_string_lossy().into_owned();
    let extra = [("LOG_FORMAT", "json".to_owned())];
    let instance =
        Instance::spawn_launched("obs-json", &db_url, &sim.api_base(), &sim.api_base(), &extra, dir.path()).await;

    let no = create_order(&instance).await;
    // The checkout page with its OAuth round trip, all under one id.
    let browser = shopper("obs-checkout-1");
    let mut url = instance.url(&format!("/pay/{no}"));
    for _ in 0..10 {
        let res = browser.get(&url).send().await.unwrap();
        if !res.status().is_redirection() {
            assert_eq!(res.status(), 200);
            break;
        }
        let next = res.headers()["location"].to_str().unwrap().split('#').next().unwrap().to_owned();
        url = if next.starts_with("http") { next } else { instance.url(&next) };
    }
    let jsapi = browser
        .post(instance.url(&format!("/pay/{no}/jsapi")))
        .header("Origin", &instance.base_url)
        .header("X-Request-Id", "obs-jsapi-1")
        .send()
        .await
        .unwrap();
    assert_eq!(jsapi.status(), 200);
    assert_eq!(jsapi.headers()["x-request-id"], "obs-jsapi-1");

    let log = instance.log_text();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{log}")))
        .collect();
    // Rocket's own launch lines came through the same subscriber.
    let launched = lines.iter().any(|l| {
        l["target"].as_str().is_some_and(|t| t.starts_with("rocket"))
            && l["fields"]["message"].as_str().is_some_and(|m| m.contains("Rocket has launched from"))
    });
    assert!(launched, "no JSON launch line from Rocket:\n{log}");

    // The jsapi request: its request line, the use case's line, and its WeChat call's line.
    let jsapi_lines = lines_of(&lines, "obs-jsapi-1");
    let has = |lines: &[Value], check: &dyn Fn(&Value) -> bool| lines.iter().any(check);
    assert!(
        has(&jsapi_lines, &|l| l["fields"]["message"] == "request"
            && l["fields"]["path"] == format!("/pay/{no}/jsapi")),
        "{log}"
    );
    assert!(has(&jsapi_lines, &|l| l["fields"]["message"] == "prepay issued"), "{log}");
    assert!(has(&jsapi_lines, &|l| l["fields"]["endpoint"] == "unifiedorder"), "{log}");
    // Every unifiedorder call and every line about this prepay belongs to that request.
    for line in
        lines.iter().filter(|l| l["fields"]["endpoint"] == "unifiedorder" || l["fields"]["message"] == "prepay issued")
    {
        assert!(jsapi_lines.contains(line), "a line of the jsapi request without its id: {line}");
    }
    // The checkout's OAuth exchange logged under the checkout's id.
    let checkout_lines = lines_of(&lines, "obs-checkout-1");
    assert!(has(&checkout_lines, &|l| l["fields"]["endpoint"] == "oauth_access_token"), "{log}");
    for line in lines.iter().filter(|l| l["fields"]["endpoint"] == "oauth_access_token") {
        assert!(checkout_lines.contains(line), "the OAuth call without the checkout's id: {line}");
    }
    instance.stop();
}

async fn create_order(instance: &Instance) -> String {
    let res = reqwest::Client::new()
        .post(instance.url("/api/v1/orders"))
        .bearer_auth(API_TOKEN)
        .header("X-Request-Id", "obs-create-1")
        .json(&json!({ "amount_fen": 1, "description": "日志测试", "merchant_order_id": "obs-json-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-request-id"], "obs-create-1");
    res.json::<Value>().await.unwrap()["out_trade_no"].as_str().unwrap().to_owned()
}

#[test]
fn a_bad_log_format_stops_the_binary_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wechat-checkout"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LOG_FORMAT", "bogus")
        .env("DATABASE_URL", dir.path().join("x.sqlite"))
        .env("ROCKET_PORT", common::app::free_port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the binary kept running with LOG_FORMAT=bogus");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success());
    assert!(stderr.contains("wechat-checkout: LOG_FORMAT: "), "{stderr}");
}
