//! The merchant JSON API over real HTTP: authentication, creation, idempotency by
//! merchant_order_id, validation errors that name the field, and reading an order.

mod common;

use common::app::{API_TOKEN, TestApp, TestDb};
use serde_json::{Value, json};

async fn post(app: &TestApp, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req =
        app.http.post(app.url("/api/v1/orders")).header("Content-Type", "application/json").body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn order(id: &str, fen: i64) -> String {
    json!({ "amount_fen": fen, "description": "演示商店-测试商品", "merchant_order_id": id }).to_string()
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let app = TestApp::sqlite().await;
    let (status, body) = post(&app, None, &order("A-1", 100)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = post(&app, Some("not-the-token-but-long-enough"), &order("A-1", 100)).await;
    assert_eq!(status, 401);
    let res = app.http.get(app.url("/api/v1/orders/WC1")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    app.stop().await;
}

#[tokio::test]
async fn creation_is_idempotent_by_merchant_order_id() {
    let app = TestApp::sqlite().await;
    let (status, first) = post(&app, Some(API_TOKEN), &order("A-IDEM-1", 1990)).await;
    assert_eq!(status, 201);
    assert!(first["out_trade_no"].as_str().unwrap().starts_with("WC"));
    assert_eq!(first["state"], "CREATED");
    let (status, again) = post(&app, Some(API_TOKEN), &order("A-IDEM-1", 1990)).await;
    assert_eq!(status, 200);
    assert_eq!(again["out_trade_no"], first["out_trade_no"]);
    let (status, conflict) = post(&app, Some(API_TOKEN), &order("A-IDEM-1", 1991)).await;
    assert_eq!(status, 409);
    assert_eq!(conflict["error"]["code"], "conflict");

    let no = first["out_trade_no"].as_str().unwrap();
    let fetched = app.order(no).await;
    assert_eq!(fetched["merchant_order_id"], "A-IDEM-1");
    assert_eq!(fetched["amount_fen"], 1990);
    let missing = app.http.get(app.url("/api/v1/orders/WC000")).bearer_auth(API_TOKEN).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn invalid_input_is_422_naming_the_field_and_creates_nothing() {
    let app = TestApp::sqlite().await;
    let long = "长".repeat(43);
    let cases: Vec<(String, &str)> = vec![
        (json!({"amount_fen": 0, "description": "x", "merchant_order_id": "V1"}).to_string(), "amount_fen"),
        (json!({"amount_fen": -5, "description": "x", "merchant_order_id": "V1"}).to_string(), "amount_fen"),
        (json!({"amount_fen": 10_000_001, "description": "x", "merchant_order_id": "V1"}).to_string(), "amount_fen"),
        (json!({"amount_fen": "100", "description": "x", "merchant_order_id": "V1"}).to_string(), "amount_fen"),
        (json!({"amount_fen": 1.5, "description": "x", "merchant_order_id": "V1"}).to_string(), "amount_fen"),
        (json!({"amount_fen": 100, "description": "", "merchant_order_id": "V1"}).to_string(), "description"),
        (json!({"amount_fen": 100, "description": long, "merchant_order_id": "V1"}).to_string(), "description"),
        (json!({"amount_fen": 100, "description": "a\u{7}b", "merchant_order_id": "V1"}).to_string(), "description"),
        (
            json!({"amount_fen": 100, "description": "x", "merchant_order_id": "has space"}).to_string(),
            "merchant_order_id",
        ),
        (json!({"amount_fen": 100, "description": "x", "merchant_order_id": "订单"}).to_string(), "merchant_order_id"),
        (json!({"amount_fen": 100, "description": "x"}).to_string(), "merchant_order_id"),
        (
            json!({"amount_fen": 100, "description": "x", "merchant_order_id": "V1", "currency": "USD"}).to_string(),
            "currency",
        ),
        (
            json!({"amount_fen": 100, "description": "x", "merchant_order_id": "V1", "attach": "a".repeat(128)})
                .to_string(),
            "attach",
        ),
        (
            json!({"amount_fen": 100, "description": "x", "merchant_order_id": "V1", "expires_in_seconds": 30})
                .to_string(),
            "expires_in_seconds",
        ),
        ("{not json".to_owned(), "body"),
    ];
    for (body, field) in cases {
        let (status, err) = post(&app, Some(API_TOKEN), &body).await;
        assert_eq!(status, 422, "{body}: {err}");
        assert_eq!(err["error"]["code"], "invalid", "{body}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }
    // None of them created anything: V1 is still free.
    let (status, _) = post(&app, Some(API_TOKEN), &order("V1", 100)).await;
    assert_eq!(status, 201);
    app.stop().await;
}

/// An app that signs webhooks (so orders may name a `webhook_url`).
async fn app_with_webhook_secret() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite(&dir);
    TestApp::start(db, Some(dir), |f| f.merge(("webhook_secret", "whsec-api-test-0123456789"))).await
}

fn with_hook(id: &str, url: Value) -> String {
    json!({ "amount_fen": 100, "description": "演示商店-测试商品", "merchant_order_id": id, "webhook_url": url })
        .to_string()
}

#[tokio::test]
async fn webhook_url_is_validated_stored_and_part_of_idempotency() {
    let app = app_with_webhook_secret().await;
    let long = format!("https://merchant.example/{}", "p".repeat(490));
    assert_eq!(long.len(), 515);
    for bad in [
        json!("merchant.example/hooks"),
        json!("/hooks"),
        json!("ftp://merchant.example/hooks"),
        json!("javascript:alert(1)"),
        json!("https://"),
        json!("https://user:pw@merchant.example/hooks"),
        json!("https://merchant.example/hooks#top"),
        json!(" https://merchant.example/hooks"),
        json!("https://merchant.example/ho oks"),
        json!(long),
        json!(42),
        json!(["https://merchant.example/hooks"]),
    ] {
        let body = with_hook("WH-V1", bad.clone());
        let (status, err) = post(&app, Some(API_TOKEN), &body).await;
        assert_eq!(status, 422, "{bad}: {err}");
        assert_eq!(err["error"]["field"], "webhook_url", "{bad}: {err}");
    }

    let url = "https://merchant.example/hooks/wechat?shop=7";
    let (status, created) = post(&app, Some(API_TOKEN), &with_hook("WH-V1", json!(url))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["webhook_url"], url);
    let no = created["out_trade_no"].as_str().unwrap();
    assert_eq!(app.order(no).await["webhook_url"], url);

    // Idempotency compares the URL too: the same request is the same order, another URL (or
    // none) a conflict.
    let (status, again) = post(&app, Some(API_TOKEN), &with_hook("WH-V1", json!(url))).await;
    assert_eq!((status, again["out_trade_no"].as_str()), (200, Some(no)));
    let (status, _) = post(&app, Some(API_TOKEN), &with_hook("WH-V1", json!("https://other.example/hooks"))).await;
    assert_eq!(status, 409);
    let (status, _) = post(&app, Some(API_TOKEN), &order("WH-V1", 100)).await;
    assert_eq!(status, 409);

    // Absent, null and empty all mean "no URL of its own".
    let (status, plain) = post(&app, Some(API_TOKEN), &order("WH-V2", 100)).await;
    assert_eq!((status, &plain["webhook_url"]), (201, &Value::Null));
    let (status, _) = post(&app, Some(API_TOKEN), &with_hook("WH-V2", Value::Null)).await;
    assert_eq!(status, 200);
    let (status, _) = post(&app, Some(API_TOKEN), &with_hook("WH-V2", json!(""))).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn webhook_url_is_refused_when_webhooks_cannot_be_signed() {
    let app = TestApp::sqlite().await;
    let (status, err) =
        post(&app, Some(API_TOKEN), &with_hook("WH-NOSECRET", json!("https://merchant.example/h"))).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["field"], "webhook_url");
    assert!(err["error"]["message"].as_str().unwrap().contains("WEBHOOK_SECRET"), "{err}");
    // Nothing was created, and without a URL the order is fine.
    let (status, created) = post(&app, Some(API_TOKEN), &order("WH-NOSECRET", 100)).await;
    assert_eq!((status, &created["webhook_url"]), (201, &Value::Null));
    app.stop().await;
}
