//! The OpenAPI document is the contract: every mounted `/api` route is in it and it describes no
//! route that is not mounted; every example in it fits its own schema; and every answer the real
//! server gives in a run through the API (successes and errors) has a status the document lists
//! for that operation and a body that fits the schema it names, with no member it does not declare.

mod common;

use std::collections::BTreeSet;

use common::app::{API_TOKEN, TestApp, TestDb, free_port, test_figment};
use serde_json::{Value, json};

async fn document(app: &TestApp) -> Value {
    let res = app.http.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_document_describes_exactly_the_mounted_api_routes() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite(&dir);
    let rocket = wechat_checkout::app::build_rocket_from(test_figment(free_port(), &db.url())).unwrap();
    // The document does not list itself.
    let mounted: BTreeSet<String> = rocket
        .routes()
        .filter(|r| r.uri.path().starts_with("/api/") && r.uri.path() != "/api/v1/openapi.json")
        .map(|r| format!("{} {}", r.method, r.uri.path().replace('<', "{").replace('>', "}")))
        .collect();
    let doc: Value = serde_json::from_str(wechat_checkout::web::api::openapi::document()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let described: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| format!("{} {path}", m.to_uppercase())))
        .collect();
    let undocumented: Vec<_> = mounted.difference(&described).collect();
    let unmounted: Vec<_> = described.difference(&mounted).collect();
    assert!(undocumented.is_empty(), "mounted but not in the document: {undocumented:?}");
    assert!(unmounted.is_empty(), "in the document but not mounted: {unmounted:?}");
    assert!(mounted.len() >= 7, "{mounted:?}");
}

#[tokio::test]
async fn every_example_fits_its_schema() {
    let doc: Value = serde_json::from_str(wechat_checkout::web::api::openapi::document()).unwrap();
    let mut checked = 0;
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        if let Some(example) = schema.get("example") {
            let problems = fits(&doc, schema, example, name);
            assert!(problems.is_empty(), "the example of {name}: {problems:?}");
            checked += 1;
        }
    }
    // Request bodies carry examples of their own.
    for (_, item) in doc["paths"].as_object().unwrap() {
        for (_, op) in item.as_object().unwrap() {
            let Some(schema) = op["requestBody"]["content"]["application/json"].get("schema") else { continue };
            let schema = resolve(&doc, schema);
            if let Some(example) = schema.get("example") {
                let problems = fits(&doc, schema, example, "request");
                assert!(problems.is_empty(), "a request example: {problems:?}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} examples");
}

/// A call through the API and what the document says of its answer.
struct Contract<'a> {
    app: &'a TestApp,
    doc: Value,
    seen: BTreeSet<String>,
}

impl Contract<'_> {
    /// Calls `method path` (the document's `template` for it) and checks the answer; returns its body.
    async fn call(&mut self, method: &str, path: &str, template: &str, body: Option<Value>) -> (u16, Value) {
        let url = self.app.url(path);
        let req = match method {
            "get" => self.app.http.get(url),
            _ => self.app.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let res = req.bearer_auth(API_TOKEN).send().await.unwrap();
        let status = res.status().as_u16();
        let answer: Value = res.json().await.unwrap();
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not in the document");
        let response = &op["responses"][status.to_string()];
        assert!(response.is_object(), "{method} {path} answered {status}, which the document does not list: {answer}");
        let schema = &response["content"]["application/json"]["schema"];
        let problems = fits(&self.doc, schema, &answer, &format!("{method} {path} {status}"));
        assert!(problems.is_empty(), "{method} {path} {status} does not fit the document: {problems:?}\n{answer}");
        self.seen.insert(format!("{method} {template} {status}"));
        (status, answer)
    }
}

#[tokio::test]
async fn real_answers_fit_the_document() {
    let app = TestApp::sqlite().await;
    let doc = document(&app).await;
    let mut c = Contract { app: &app, doc, seen: BTreeSet::new() };
    let order = json!({ "amount_fen": 1000, "description": "演示商店-测试商品", "merchant_order_id": "CT-1" });
    let (_, created) = c.call("post", "/api/v1/orders", "/api/v1/orders", Some(order.clone())).await;
    c.call("post", "/api/v1/orders", "/api/v1/orders", Some(order)).await;
    let other = json!({ "amount_fen": 1001, "description": "演示商店-测试商品", "merchant_order_id": "CT-1" });
    c.call("post", "/api/v1/orders", "/api/v1/orders", Some(other)).await;
    c.call("post", "/api/v1/orders", "/api/v1/orders", Some(json!({ "amount_fen": 0 }))).await;
    let no = created["out_trade_no"].as_str().unwrap().to_owned();
    let one = "/api/v1/orders/{out_trade_no}";
    c.call("get", &format!("/api/v1/orders/{no}"), one, None).await;
    c.call("get", "/api/v1/orders/WC404", one, None).await;
    c.call("get", "/api/v1/orders?limit=1", "/api/v1/orders", None).await;
    c.call("get", "/api/v1/orders?limit=0", "/api/v1/orders", None).await;
    let close = "/api/v1/orders/{out_trade_no}/close";
    c.call("post", &format!("/api/v1/orders/{no}/close"), close, None).await;
    c.call("post", "/api/v1/orders/WC404/close", close, None).await;
    let (paying, _) = app.paying_order("CT-2", 100).await;
    c.call("post", &format!("/api/v1/orders/{paying}/close"), close, None).await;

    let paid = app.paid_order("CT-3", 1000).await;
    let refunds = "/api/v1/orders/{out_trade_no}/refunds";
    let path = format!("/api/v1/orders/{paid}/refunds");
    let refund = json!({ "amount_fen": 300, "reason": "退货", "out_refund_no": "CT-R-1" });
    c.call("post", &path, refunds, Some(refund.clone())).await;
    c.call("post", &path, refunds, Some(refund)).await;
    c.call("post", &path, refunds, Some(json!({ "amount_fen": 5000, "reason": "退货" }))).await;
    c.call("post", &path, refunds, Some(json!({ "amount_fen": 1 }))).await;
    c.call("post", "/api/v1/orders/WC404/refunds", refunds, Some(json!({ "amount_fen": 1, "reason": "x" }))).await;
    c.call("get", &path, refunds, None).await;
    c.call("get", "/api/v1/orders/WC404/refunds", refunds, None).await;
    c.call("get", "/api/v1/refunds/CT-R-1", "/api/v1/refunds/{out_refund_no}", None).await;
    c.call("get", "/api/v1/refunds/NOPE", "/api/v1/refunds/{out_refund_no}", None).await;

    // Paying from the merchant's own front end: a Mini Program's shopper signs in with a wx.login
    // code (once), then gets the five parameters; the Official Account's six for an order paying.
    let session = "/api/v1/wechat/mini-program/session";
    let code = app.control("mini-program/login", json!({})).await["code"].clone();
    let (_, shopper) = c.call("post", session, session, Some(json!({ "code": code }))).await;
    c.call("post", session, session, Some(json!({ "code": code }))).await;
    let pay = "/api/v1/orders/{out_trade_no}/payment";
    let fresh = json!({ "amount_fen": 100, "description": "演示商店-测试商品", "merchant_order_id": "CT-4" });
    let (_, fresh) = c.call("post", "/api/v1/orders", "/api/v1/orders", Some(fresh)).await;
    let path = format!("/api/v1/orders/{}/payment", fresh["out_trade_no"].as_str().unwrap());
    let mini = json!({ "openid": shopper["openid"], "app": "mini_program" });
    c.call("post", &path, pay, Some(mini.clone())).await;
    c.call("post", &path, pay, Some(json!({ "openid": "oSomeoneElse", "app": "mini_program" }))).await;
    c.call("post", "/api/v1/orders/WC404/payment", pay, Some(mini)).await;
    let openid = common::app::order_row(&app.db_handle(), &paying).openid.unwrap();
    let official = json!({ "openid": openid, "app": "official_account" });
    c.call("post", &format!("/api/v1/orders/{paying}/payment"), pay, Some(official)).await;
    // Each operation was seen succeeding and failing.
    for op in [
        "post /api/v1/orders 201",
        "get /api/v1/orders 200",
        "post /api/v1/orders/{out_trade_no}/close 409",
        "post /api/v1/wechat/mini-program/session 200",
        "post /api/v1/wechat/mini-program/session 422",
        "post /api/v1/orders/{out_trade_no}/payment 200",
        "post /api/v1/orders/{out_trade_no}/payment 409",
        "post /api/v1/orders/{out_trade_no}/payment 404",
    ] {
        assert!(c.seen.contains(op), "{op} not exercised: {:?}", c.seen);
    }
    assert!(c.seen.len() >= 18, "{:?}", c.seen);
    app.stop().await;
}

#[tokio::test]
async fn the_reference_page_is_served_whole_by_the_app() {
    let app = TestApp::sqlite().await;
    let res = app.http.get(app.url("/docs/api")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let title = format!("<code>{} {path}</code>", method.to_uppercase());
            assert!(html.contains(&title), "the page lacks {title}");
        }
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        assert!(html.contains(&format!("id=\"schema-{name}\"")), "the page lacks schema {name}");
    }
    // Every asset it loads is the app's own.
    for attr in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attr) {
            let url = &html[at + attr.len()..];
            assert!(
                url.starts_with('/') || url.starts_with('#'),
                "an asset from elsewhere: {}",
                &url[..40.min(url.len())]
            );
        }
    }
    app.stop().await;
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => resolve(doc, &doc["components"]["schemas"][name]),
        None => schema,
    }
}

/// Where `value` does not fit `schema` (a subset of JSON Schema: `$ref`, `type`, `enum`,
/// `properties`/`required` with no undeclared member, `items`, `oneOf`/`anyOf`/`allOf`).
fn fits(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    let mut problems = Vec::new();
    if let Some(options) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        if !options.iter().any(|o| fits(doc, o, value, at).is_empty()) {
            problems.push(format!("{at}: {value} fits none of {options:?}"));
        }
        return problems;
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        problems.extend(fits(doc, part, value, at));
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {values:?}"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        problems.push(format!("{at}: {value} is not {types:?}"));
        return problems;
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object()) {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(required) {
                problems.push(format!("{at}: `{required}` is missing"));
            }
        }
        for (key, member) in object {
            match properties.get(key) {
                Some(s) => problems.extend(fits(doc, s, member, &format!("{at}.{key}"))),
                None => problems.push(format!("{at}: `{key}` is not in the schema")),
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            problems.extend(fits(doc, schema, item, &format!("{at}[{i}]")));
        }
    }
    problems
}
