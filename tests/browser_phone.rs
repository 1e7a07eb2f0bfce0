//! The admin console on a phone: a real browser emulating a 390 × 844 screen signs in and
//! opens every console page, seeded with the longest things real data holds (64-character
//! business numbers, 512-byte webhook URLs, raw XML and JSON without a space to break at), and
//! finds each page no wider than the screen, with every <details> closed and open, and the
//! navigation folded into a menu that opens by tap and by keyboard and then shows every link and
//! the account controls. Screenshots land in target/test-output/browser/phone-<page>.png, plus a
//! few desktop ones to compare. Skipped with a notice without Chromium, unless REQUIRE_BROWSER=1.

mod common;

use common::admin::{console_refund, create_staff, sign_in as console_sign_in};
use common::app::{ADMIN_PASSWORD, ADMIN_USER, API_TOKEN, TestApp, TestDb, prepay_id};
use common::browser::{Browser, PHONE, click_and_wait, screenshot_full_page, wait_for, widths};
use common::route_walk;
use fantoccini::{Client, Locator};
use serde_json::json;
use wechat_checkout::db::reconciliation::{self, NewFinding};
use wechat_checkout::db::{self, Db, DbError, audit, exceptions, notify_log, tokens, webhooks};
use wechat_checkout::domain::reconciliation::{RunFigures, RunState};
use wechat_checkout::domain::{Actor, AuditAction, ExceptionKind, NotifyKind, NotifyVerdict};
use wechat_checkout::staff::Role;

const WEBHOOK_SECRET: &str = "whsec-phone-0123456789abcdefghij";
/// A bill date with a finished run and findings, and one whose download keeps failing.
const RUN_DATE: &str = "2026-03-09";
const FAILED_DATE: &str = "2026-03-08";
/// What an admin's menu offers, in order (`data-nav` of each link).
const ADMIN_NAV: [&str; 9] =
    ["dashboard", "orders", "notifies", "exceptions", "reconciliation", "webhooks", "users", "tokens", "audit"];

/// A URL of the 512 bytes an order's webhook_url may have, with no place to break a line.
fn long_url(tag: &str) -> String {
    let url = format!("https://merchant-systems.example.com/hooks/wechat-checkout/{tag}?tenant=");
    let pad = 512 - url.len();
    format!("{url}{}", "x".repeat(pad))
}

/// One unbroken run of `n` characters, as a signature or a base64 blob would be.
fn blob(n: usize) -> String {
    "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0123456789".chars().cycle().take(n).collect()
}

/// An order with the longest business number and description the API takes and its own
/// 512-byte webhook URL, paid, with two refunds asked for through the console (one settled).
async fn long_order(app: &TestApp, admin: &reqwest::Client) -> String {
    let merchant_order_id = format!("ERP-2026-03-09-{}", "7".repeat(49));
    let body = json!({
        "amount_fen": 1_234_567,
        "description": "演示商店-明前龙井特级礼盒装（五十克×四罐）附赠青花瓷茶具一套及手写贺卡",
        "merchant_order_id": merchant_order_id,
        "webhook_url": long_url("orders"),
    });
    let res = app.http.post(app.url("/api/v1/orders")).bearer_auth(API_TOKEN).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201, "create the long order: {}", res.text().await.unwrap_or_default());
    let order: serde_json::Value = res.json().await.unwrap();
    let no = order["out_trade_no"].as_str().unwrap().to_owned();
    let prepay = prepay_id(&app.jsapi(&no).await);
    assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
    assert!(app.wait_for_state(&no, "PAID").await, "{no} never became PAID");
    let settled = console_refund(app, admin, &no, "1000.00").await;
    app.control(&format!("refunds/{settled}/settle"), json!({"status": "SUCCESS"})).await;
    console_refund(app, admin, &no, "0.01").await;
    no
}

/// Rows the console shows that no flow here produces, planted with the longest values they hold.
fn plant(conn: &mut db::AnyConnection, no: &str) -> Result<(), DbError> {
    let detail = json!({"out_trade_no": no, "transaction_id": "4200002026030912345678901234",
        "bill_amount_fen": 1_234_567, "local_amount_fen": 1_234_566, "note": blob(200)})
    .to_string();
    plant_notify_and_exceptions(conn, no, &detail)?;
    plant_webhooks(conn, no)?;
    plant_runs(conn, no, &detail)?;
    let actor = Actor { username: ADMIN_USER.into(), remote_addr: Some("2001:db8:85a3:8d3:1319:8a2e:370:7348".into()) };
    let target = format!("webhook:{}", blob(60));
    let detail_json = json!({"note": blob(300), "url": long_url("audit")});
    audit::record(conn, &actor, AuditAction::WebhookResend, Some(no), Some(&target), detail_json)?;
    let hash = wechat_checkout::domain::records::token_hash("phone-token-0123456789abcdefghijklmnop");
    let name = format!("ERP-{}", blob(60));
    tokens::insert(conn, &tokens::NewToken { name: &name, token_hash: &hash, created_at: db::now(), scope: "refund" })
}

/// A notify with raw XML and a signature in its reason; an open and a resolved exception.
fn plant_notify_and_exceptions(conn: &mut db::AnyConnection, no: &str, detail: &str) -> Result<(), DbError> {
    let now = db::now();
    let raw = format!(
        "<xml><appid><![CDATA[wx2421b1c4370ec43b]]></appid><attach><![CDATA[{}]]></attach><bank_type><![CDATA[CMC]]></bank_type><out_trade_no><![CDATA[{no}]]></out_trade_no><sign><![CDATA[{}]]></sign><total_fee>1234567</total_fee><transaction_id><![CDATA[4200002026030912345678901234]]></transaction_id></xml>",
        blob(127),
        blob(64)
    );
    notify_log::insert(
        conn,
        &notify_log::NewNotifyLog {
            kind: NotifyKind::Payment,
            received_at: now,
            remote_addr: Some("2001:db8:85a3:8d3:1319:8a2e:370:7348".into()),
            out_trade_no: Some(no.to_owned()),
            transaction_id: Some("4200002026030912345678901234".into()),
            verdict: NotifyVerdict::BadSignature,
            reason: format!("签名不符：期望 {} 实际 {}", blob(64), blob(64)),
            raw_body: raw,
            reply:
                "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[签名错误]]></return_msg></xml>"
                    .into(),
        },
    )?;
    let planted: serde_json::Value = serde_json::from_str(detail).unwrap();
    for (kind, key) in
        [(ExceptionKind::RefundMismatch, "phone-open"), (ExceptionKind::ConflictingPayment, "phone-resolved")]
    {
        let x = exceptions::NewException {
            kind,
            dedupe_key: key.into(),
            out_trade_no: Some(no.to_owned()),
            detail: planted.clone(),
        };
        exceptions::raise(conn, &x)?;
    }
    let resolved = exceptions::for_order(conn, no)?.into_iter().find(|x| x.kind == "conflicting_payment").unwrap();
    exceptions::resolve(conn, resolved.id, ADMIN_USER, &format!("已与微信支付核对，退款单 {}", blob(80)), now)?;
    Ok(())
}

/// Two events to 512-byte URLs with JSON bodies, each with failed attempts and an HTML reply.
fn plant_webhooks(conn: &mut db::AnyConnection, no: &str) -> Result<(), DbError> {
    let now = db::now();

    let payload = json!({"out_trade_no": no, "state": "PAID", "amount_fen": 1_234_567,
        "description": "演示商店-明前龙井特级礼盒装", "attach": blob(127), "transaction_id": "4200002026030912345678901234",
        "webhook_url": long_url("orders")})
    .to_string();
    for (key, state, status) in [("phone-failed", "FAILED", 500), ("phone-pending", "PENDING", 502)] {
        let url = long_url(key);
        let event = webhooks::NewWebhookEvent {
            dedupe_key: key,
            event_type: "order.paid",
            out_trade_no: no,
            url: &url,
            payload: payload.clone(),
            state,
            attempts: 2,
            next_attempt_at: Some(now),
            created_at: now,
        };
        webhooks::insert_event(conn, &event)?;
        let id = webhooks::find_by_dedupe_key(conn, key)?.unwrap().id;
        let snippet = format!("<html><body><h1>{status} Bad Gateway</h1><pre>{}</pre></body></html>", blob(300));
        for error in [format!("HTTP {status}: upstream {}", blob(90)), "connection reset by peer".to_owned()] {
            let attempt = webhooks::NewAttempt {
                event_id: id,
                attempted_at: now,
                status_code: Some(status),
                error: Some(&error),
                duration_ms: 10_001,
                response_snippet: Some(&snippet),
            };
            webhooks::record_attempt(conn, &attempt)?;
        }
    }
    Ok(())
}

/// A finished run with huge figures and three findings, and a run whose download fails.
fn plant_runs(conn: &mut db::AnyConnection, no: &str, detail: &str) -> Result<(), DbError> {
    let now = db::now();
    reconciliation::ensure_run(conn, RUN_DATE)?;
    let lease = now + chrono::Duration::minutes(5);
    assert!(reconciliation::claim_run(conn, RUN_DATE, "phone-test", now, lease, true)?);
    let figures = RunFigures {
        bill_rows: 123_456,
        bill_paid_count: 120_000,
        bill_paid_fen: 98_765_432_100,
        bill_refund_count: 3_456,
        bill_refund_fen: 1_234_567_890,
        local_paid_count: 119_999,
        local_paid_fen: 98_765_308_633,
        matched: 123_450,
        findings: 3,
    };
    assert!(reconciliation::finish_run(conn, RUN_DATE, "phone-test", RunState::Done, &figures, now)?);
    for (kind, key) in
        [("paid_not_local", no.to_owned()), ("amount_differs", no.to_owned()), ("refund_missing_local", blob(64))]
    {
        let finding = NewFinding {
            bill_date: RUN_DATE.into(),
            kind,
            item_key: key.clone(),
            out_trade_no: Some(no.to_owned()),
            detail: detail.to_owned(),
            created_at: now,
        };
        reconciliation::record_finding(conn, &finding)?;
        reconciliation::set_resolution(conn, RUN_DATE, kind, &key, &format!("applied via orderquery {}", blob(40)))?;
    }
    reconciliation::ensure_run(conn, FAILED_DATE)?;
    assert!(reconciliation::claim_run(conn, FAILED_DATE, "phone-test", now, lease, true)?);
    let error = format!("downloadbill: HTTP 500 from https://api.mch.weixin.qq.com/pay/downloadbill {}", blob(120));
    reconciliation::defer_run(conn, FAILED_DATE, "phone-test", RunState::Failed, lease, Some(&error), now)?;
    Ok(())
}

/// Every console page with what shows it has loaded: (screenshot name, path, CSS selector).
fn pages(no: &str) -> Vec<(&'static str, String, String)> {
    let p = |name, path: String, ready: &str| (name, path, ready.to_owned());
    vec![
        p("dashboard", "/admin".into(), "svg.chart"),
        p("orders", "/admin/orders".into(), "table.orders"),
        p(
            "orders-filtered",
            "/admin/orders?state=PAID&from=2020-01-01&to=2099-12-31&min=0.01&max=99999".into(),
            "table.orders",
        ),
        p("orders-search", format!("/admin/orders?q={no}"), &format!("table.orders a[href='/admin/orders/{no}']")),
        p("orders-invalid", "/admin/orders?min=abc&from=yesterday".into(), ".flash-error"),
        p("order", format!("/admin/orders/{no}"), "#refunds tr.refund"),
        p("notifies", "/admin/notifies".into(), "tr.notify"),
        p("exceptions", "/admin/exceptions".into(), "tr.exception"),
        p("exceptions-resolved", "/admin/exceptions?status=resolved".into(), "tr.exception.resolved"),
        p("exceptions-all", "/admin/exceptions?status=all".into(), "tr.exception"),
        p("reconciliation", "/admin/reconciliation".into(), "tr.run"),
        p("reconciliation-run", format!("/admin/reconciliation/{RUN_DATE}"), "tr.finding"),
        p("webhooks", "/admin/webhooks".into(), "tr.webhook"),
        p("users", "/admin/users".into(), "table.users"),
        p("tokens", "/admin/tokens".into(), "table.tokens"),
        p("audit", "/admin/audit".into(), "table.audit"),
        p("password", "/admin/account/password".into(), "input[name=current]"),
    ]
}

/// Whether the page fits a screen `screen` CSS pixels wide, as "name: widths" when it does not.
/// A phone zooms out to show a page wider than its screen, which widens `window.innerWidth`
/// with it: so the window must also still be the screen's width.
async fn overflow(c: &Client, what: &str, screen: u32) -> Option<String> {
    let (document, body, window) = widths(c).await;
    eprintln!("{what:<36} document {document:>4}  body {body:>4}  window {window:>4}");
    let fits = document <= window && body <= window && window <= u64::from(screen);
    (!fits).then(|| format!("{what}: document {document}, body {body}, window {window} on a {screen}px screen"))
}

async fn displayed(c: &Client, css: &str) -> bool {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// The menu is folded; opened (by keyboard when `keyboard`, else by a tap) it shows every entry
/// of an admin's navigation, the account and the logout button, and still fits the screen.
async fn open_menu(c: &Client, page: &str, keyboard: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let entry = |key: &str| format!(".nav-links a[data-nav='{key}']");
    if displayed(c, &entry("orders")).await || displayed(c, "#logout").await {
        problems.push(format!("{page}: the navigation shows before the menu is opened"));
    }
    let Ok(summary) = c.find(Locator::Css(".nav-toggle summary")).await else {
        problems.push(format!("{page}: no menu button"));
        return problems;
    };
    if keyboard {
        c.execute("document.querySelector('.nav-toggle summary').focus()", vec![]).await.unwrap();
        summary.send_keys("\u{E007}").await.unwrap(); // Enter
    } else {
        summary.click().await.unwrap();
    }
    let shown = c.find_all(Locator::Css(".nav-links a")).await.unwrap();
    if shown.len() != ADMIN_NAV.len() {
        problems.push(format!("{page}: the menu has {} entries, not {}", shown.len(), ADMIN_NAV.len()));
    }
    for css in ADMIN_NAV
        .iter()
        .map(|k| entry(k))
        .chain([".who", "a[href='/admin/account/password']", "#logout", "a.brand"].iter().map(|s| (*s).to_owned()))
    {
        if !displayed(c, &css).await {
            problems.push(format!("{page}: {css} is hidden with the menu open"));
        }
    }
    problems.extend(overflow(c, &format!("{page} (menu open)"), PHONE.0).await);
    problems
}

/// Opens a page; checks it fits with its details closed and open, screenshots both, and checks
/// the menu. Returns what is wrong.
async fn visit(c: &Client, app: &TestApp, name: &str, path: &str, ready: &str, menu: bool) -> Vec<String> {
    c.goto(&app.url(path)).await.unwrap();
    wait_for(c, ready).await;
    let mut problems: Vec<String> = overflow(c, name, PHONE.0).await.into_iter().collect();
    screenshot_full_page(c, &format!("phone-{name}")).await;
    let opened = c
        .execute(
            "const d = document.querySelectorAll('main details'); d.forEach(x => x.open = true); return d.length",
            vec![],
        )
        .await
        .unwrap();
    if opened.as_u64().unwrap_or(0) > 0 {
        problems.extend(overflow(c, &format!("{name} (details open)"), PHONE.0).await);
        screenshot_full_page(c, &format!("phone-{name}-expanded")).await;
    }
    if menu {
        problems.extend(open_menu(c, name, name == "dashboard").await);
        if name == "dashboard" {
            screenshot_full_page(c, "phone-menu").await;
        }
    }
    problems
}

#[tokio::test]
async fn every_console_page_fits_a_phone() {
    let Some(browser) = Browser::start_phone().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite(&dir);
    let app = TestApp::start(db, Some(dir), |f| {
        f.merge(("webhook_secret", WEBHOOK_SECRET)).merge(("webhook_url", long_url("global")))
    })
    .await;
    // A paid order with its notify, an open exception, an operator and a token (as the route
    // walk has them), a long operator name, and the long order with everything around it.
    route_walk::seed(&app).await;
    create_staff(&app, "finance-reconciliation.team-lead", Role::Operator);
    let admin = console_sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let no = long_order(&app, &admin).await;
    let handle: Db = app.db_handle();
    let planted = no.clone();
    handle.write(move |c| plant(c, &planted)).await.unwrap();
    let c = browser.client.clone();

    // The sign-in page, then signing in on it.
    let mut problems = visit(&c, &app, "login", "/admin/login", "#username", false).await;
    let (_, _, window) = widths(&c).await;
    assert_eq!(window, u64::from(PHONE.0), "the window is a phone's width");
    wait_for(&c, "#username").await.send_keys(ADMIN_USER).await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys(ADMIN_PASSWORD).await.unwrap();
    click_and_wait(&c, "#login").await;
    wait_for(&c, "svg.chart").await;

    for (name, path, ready) in pages(&no) {
        problems.extend(visit(&c, &app, name, &path, &ready, true).await);
    }

    // Signing out works from the phone's menu.
    c.goto(&app.url("/admin")).await.unwrap();
    wait_for(&c, ".nav-toggle summary").await.click().await.unwrap();
    click_and_wait(&c, "#logout").await;
    wait_for(&c, "#username").await;

    browser.stop().await;

    // The same console on a desktop: the menu is not folded and the pages keep their layout.
    let browser = Browser::start_desktop().await.expect("the desktop browser starts like the phone did");
    let c = browser.client.clone();
    c.goto(&app.url("/admin/login")).await.unwrap();
    wait_for(&c, "#username").await.send_keys(ADMIN_USER).await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys(ADMIN_PASSWORD).await.unwrap();
    click_and_wait(&c, "#login").await;
    for (name, path, ready) in
        pages(&no).into_iter().filter(|(n, _, _)| ["dashboard", "orders", "order", "notifies", "webhooks"].contains(n))
    {
        c.goto(&app.url(&path)).await.unwrap();
        wait_for(&c, &ready).await;
        problems.extend(overflow(&c, &format!("desktop {name}"), 1280).await);
        assert!(!displayed(&c, ".nav-toggle summary").await, "desktop {name}: no menu button");
        for key in ADMIN_NAV {
            assert!(displayed(&c, &format!(".nav-links a[data-nav='{key}']")).await, "desktop {name}: {key} shows");
        }
        assert!(displayed(&c, "#logout").await, "desktop {name}: logout shows");
        screenshot_full_page(&c, &format!("desktop-{name}")).await;
    }

    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    browser.stop().await;
    app.stop().await;
}
