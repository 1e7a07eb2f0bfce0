//! "Back to the shop": an order's `return_url`, over real HTTP on every database. It is validated
//! (form, length, `RETURN_URL_HOSTS`) with every refusal naming `return_url` and creating nothing,
//! stored and shown in the order's JSON, part of the idempotency comparison, and offered on the
//! shopper's final pages with `out_trade_no` and `merchant_order_id` appended: the paid page sends
//! the shopper back by itself after a countdown, the closed and failed pages only offer the link.

mod common;

use std::time::{Duration, Instant};

use common::app::{API_TOKEN, PATIENCE, TestApp, on_every_backend, on_every_backend_with, prepay_id};
use serde_json::{Value, json};

fn order(id: &str, return_url: Value) -> Value {
    json!({ "amount_fen": 100, "description": "演示商店-测试商品", "merchant_order_id": id, "return_url": return_url })
}

/// Creates an order with `return_url`, asserting it was created; its out_trade_no.
async fn created(app: &TestApp, id: &str, return_url: &str) -> String {
    let (status, body) = app.post_order(&order(id, json!(return_url))).await;
    assert_eq!(status, 201, "{return_url}: {body}");
    assert_eq!(body["return_url"], return_url);
    body["out_trade_no"].as_str().unwrap().to_owned()
}

async fn refused(app: &TestApp, id: &str, return_url: Value) -> Value {
    let (status, body) = app.post_order(&order(id, return_url.clone())).await;
    assert_eq!(status, 422, "{return_url}: {body}");
    assert_eq!(body["error"]["field"], "return_url", "{return_url}: {body}");
    body
}

/// The shopper's page for an order (the OAuth round trip included): its status and HTML.
async fn page(app: &TestApp, no: &str) -> (u16, String) {
    let res = app.follow(&app.url(&format!("/pay/{no}"))).await;
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self';"), "the page keeps the policy: {csp}");
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The `<a id="back" …>` tag of a page, if any, and its `href` as the browser reads it.
fn back_link(html: &str) -> Option<(String, String)> {
    let start = html.find(r#"<a id="back""#)?;
    let tag = &html[start..start + html[start..].find('>').unwrap() + 1];
    let href = tag.split(r#"href=""#).nth(1).unwrap().split('"').next().unwrap();
    Some((tag.to_owned(), unescape(href)))
}

/// An attribute value as the browser reads it (the entities askama writes).
fn unescape(value: &str) -> String {
    let entities = [("&#38;", "&"), ("&amp;", "&"), ("&#34;", "\""), ("&quot;", "\""), ("&#39;", "'"), ("&#60;", "<")];
    entities.iter().fold(value.to_owned(), |v, (entity, c)| v.replace(entity, c))
}

/// Polls the shopper's status endpoint (which asks WeChat while the order is paying) until the
/// order is in `state`.
async fn settle(app: &TestApp, no: &str, state: &str) {
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if app.get_json(&format!("/pay/{no}/status")).await["state"] == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{no} did not become {state}");
}

/// An order with `return_url` that the shopper then pays (`ok`) or fails to pay (`fail`).
async fn through_checkout(app: &TestApp, id: &str, return_url: &str, outcome: &str, state: &str) -> String {
    let no = created(app, id, return_url).await;
    let prepay = prepay_id(&app.jsapi(&no).await);
    assert_eq!(app.shopper(&prepay, outcome).await.status(), 200);
    settle(app, &no, state).await;
    no
}

#[tokio::test]
async fn return_url_is_validated_stored_shown_and_part_of_idempotency() {
    on_every_backend(|app| async move {
        let long = format!("https://shop.example/{}", "p".repeat(492));
        assert_eq!(long.len(), 513);
        for bad in [
            json!("shop.example/done"),
            json!("/done"),
            json!("ftp://shop.example/done"),
            json!("javascript:alert(1)"),
            json!("data:text/html,hi"),
            json!("https://"),
            json!("https://user:pw@shop.example/done"),
            json!("https://user@shop.example/done"),
            json!("https://shop.example/done#top"),
            json!(" https://shop.example/done"),
            json!("https://shop.example/do ne"),
            json!("https://shop.example/done\t"),
            json!("https://shop.example/\u{7}"),
            json!("https://shop.example/done?out_trade_no=WC1"),
            json!("https://shop.example/done?a=1&merchant_order_id=X"),
            json!(long),
            json!(42),
            json!(["https://shop.example/done"]),
        ] {
            refused(&app, "RU-V1", bad).await;
        }
        // Nothing was created by any of them: RU-V1 is still free.
        let url = "https://shop.example/done?from=wechat";
        let no = created(&app, "RU-V1", url).await;
        assert_eq!(app.order(&no).await["return_url"], url);
        let listed: Value = app
            .http
            .get(app.url("/api/v1/orders?merchant_order_id=RU-V1"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed["data"][0]["return_url"], url, "{listed}");

        // Any host when RETURN_URL_HOSTS is unset, and up to 512 bytes exactly.
        let longest = format!("http://127.0.0.1:9000/{}", "p".repeat(490));
        assert_eq!(longest.len(), 512);
        for (i, ok) in ["http://127.0.0.1:9000/back", "https://SHOP.example", longest.as_str()].into_iter().enumerate()
        {
            created(&app, &format!("RU-OK-{i}"), ok).await;
        }

        // Idempotency compares it: the same request is the same order; another URL, or none, a 409.
        let (status, again) = app.post_order(&order("RU-V1", json!(url))).await;
        assert_eq!((status, again["out_trade_no"].as_str()), (200, Some(no.as_str())), "{again}");
        let (status, other) = app.post_order(&order("RU-V1", json!("https://shop.example/other"))).await;
        assert_eq!(status, 409, "{other}");
        let (status, _) = app.post_order(&order("RU-V1", Value::Null)).await;
        assert_eq!(status, 409);

        // Absent, null and empty all mean none.
        let plain = json!({ "amount_fen": 100, "description": "演示商店-测试商品", "merchant_order_id": "RU-V2" });
        let (status, body) = app.post_order(&plain).await;
        assert_eq!((status, &body["return_url"]), (201, &Value::Null), "{body}");
        for none in [Value::Null, json!("")] {
            let (status, body) = app.post_order(&order("RU-V2", none)).await;
            assert_eq!(status, 200, "{body}");
        }
        let (status, _) = app.post_order(&order("RU-V2", json!(url))).await;
        assert_eq!(status, 409);
        app
    })
    .await;
}

#[tokio::test]
async fn return_url_hosts_allows_its_names_and_the_subdomains_of_star_dot_names_only() {
    let hosts = |f: rocket::figment::Figment, _: &std::path::Path| {
        f.merge(("return_url_hosts", "shop.example, *.mall.example"))
    };
    on_every_backend_with(hosts, |app, _| async move {
        for (i, ok) in [
            "https://shop.example/done",
            "https://SHOP.Example:8443/done?x=1",
            "http://a.mall.example/",
            "https://b.a.mall.example/back",
        ]
        .into_iter()
        .enumerate()
        {
            created(&app, &format!("RH-OK-{i}"), ok).await;
        }
        for (i, bad) in [
            "https://mall.example/",
            "https://evilmall.example/",
            "https://other.example/done",
            "https://shop.example.evil.example/",
            "https://www.shop.example/",
            "http://127.0.0.1:9000/",
        ]
        .into_iter()
        .enumerate()
        {
            let body = refused(&app, &format!("RH-NO-{i}"), json!(bad)).await;
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("RETURN_URL_HOSTS"), "{bad}: {message}");
            // Nothing was created: the id is still free.
            let (status, _) = app.post_order(&order(&format!("RH-NO-{i}"), Value::Null)).await;
            assert_eq!(status, 201, "{bad}");
        }
        app
    })
    .await;
}

#[tokio::test]
async fn the_paid_page_sends_the_shopper_back_with_the_order_appended() {
    on_every_backend(|app| async move {
        let url = "https://shop.example/done?from=wx&q=a%20b";
        let no = created(&app, "RU-1|a@b*", url).await;

        // While paying, the way back is in the page but hidden: it is offered once a payment fails.
        let (status, html) = page(&app, &no).await;
        assert_eq!(status, 200);
        let (tag, _) = back_link(&html).expect("the pay page holds the link");
        assert!(tag.contains(" hidden"), "{tag}");
        assert!(!html.contains("js/return.js"), "no countdown on the pay page");

        let prepay = prepay_id(&app.jsapi(&no).await);
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        settle(&app, &no, "PAID").await;

        let (status, html) = page(&app, &no).await;
        assert_eq!(status, 200);
        assert!(html.contains("支付成功") && html.contains("返回商户"), "{html}");
        let (tag, href) = back_link(&html).expect("the paid page links back");
        // The existing query is kept as written; ours is form-encoded after it.
        let expected =
            format!("https://shop.example/done?from=wx&q=a%20b&out_trade_no={no}&merchant_order_id=RU-1%7Ca%40b*");
        assert_eq!(href, expected);
        assert!(tag.contains(r#"data-auto-return="3""#) && !tag.contains("hidden"), "{tag}");
        assert!(html.contains(r#"id="countdown""#) && html.contains("秒后自动返回商户"), "{html}");
        // The countdown is a script of our own origin (the policy allows no inline script).
        let script = html.split(r#"<script src=""#).nth(1).unwrap().split('"').next().unwrap().to_owned();
        assert!(script.starts_with("/static/js/return.js?v="), "{script}");
        assert!(!html.contains("<script>"), "no inline script");
        let js = app.http.get(app.url(&script)).send().await.unwrap();
        assert_eq!(js.status(), 200);
        assert!(js.text().await.unwrap().contains("location.replace(link.href)"));

        // An order without one: no link, no countdown.
        let plain = app.paid_order("RU-PLAIN", 100).await;
        let (_, html) = page(&app, &plain).await;
        assert!(html.contains("支付成功") && back_link(&html).is_none() && !html.contains("return.js"), "{html}");
        app
    })
    .await;
}

#[tokio::test]
async fn closed_and_failed_orders_offer_the_way_back_without_taking_it() {
    on_every_backend(|app| async move {
        let url = "http://127.0.0.1:9/shop/";
        let no = created(&app, "RU-CLOSED", url).await;
        let res = app.http.post(app.url(&format!("/api/v1/orders/{no}/close"))).bearer_auth(API_TOKEN).send().await;
        assert_eq!(res.unwrap().status(), 200);
        let (status, html) = page(&app, &no).await;
        assert_eq!(status, 200);
        assert!(html.contains("订单已关闭"), "{html}");
        let (tag, href) = back_link(&html).expect("the closed page links back");
        assert_eq!(href, format!("{url}?out_trade_no={no}&merchant_order_id=RU-CLOSED"));
        assert!(!tag.contains("data-auto-return") && !tag.contains("hidden"), "{tag}");
        assert!(!html.contains("return.js") && !html.contains("countdown"), "no automatic return: {html}");

        // WeChat refuses the payment: the order is PAYERROR, the shopper may retry or go back.
        let failed = through_checkout(&app, "RU-FAILED", url, "fail", "PAYERROR").await;
        let (status, html) = page(&app, &failed).await;
        assert_eq!(status, 200);
        assert!(html.contains("立即支付") && html.contains("上次支付未成功"), "{html}");
        let (tag, href) = back_link(&html).expect("the failed order's page links back");
        assert_eq!(href, format!("{url}?out_trade_no={failed}&merchant_order_id=RU-FAILED"));
        assert!(!tag.contains("hidden"), "offered from the start: {tag}");
        assert!(!html.contains("return.js"), "no automatic return: {html}");
        app
    })
    .await;
}

/// `RETURN_URL_HOSTS` is read from the environment and checked at start-up, naming itself.
#[tokio::test]
async fn a_malformed_return_url_hosts_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-checkout"))
        .arg("check-config")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", dir.path().join("shop.sqlite"))
        .env("RETURN_URL_HOSTS", "shop.example, https://mall.example")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "{all}");
    assert!(all.contains(r#"RETURN_URL_HOSTS: "https://mall.example" is not a host name"#), "{all}");
}
