//! The merchant API beyond creation, over real HTTP on both databases: the order list (filters,
//! cursor), close (WeChat's 5-minute rule), refunds (the console's rules, idempotent by
//! out_refund_no), Idempotency-Key (replay, reuse, concurrent twins), token scopes, the one error
//! shape, and the audit rows API writes leave.

mod common;

use common::app::{API_TOKEN, TestApp, on_every_backend};
use serde_json::{Value, json};
use wechat_checkout::db::{audit, refunds};

struct Call<'a> {
    app: &'a TestApp,
    token: &'a str,
}

impl Call<'_> {
    async fn get(&self, path: &str) -> (u16, Value) {
        let res = self.app.http.get(self.app.url(path)).bearer_auth(self.token).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    async fn post(&self, path: &str, key: Option<&str>, body: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .app
            .http
            .post(self.app.url(path))
            .bearer_auth(self.token)
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        (status, res.json().await.unwrap(), headers)
    }
}

fn api(app: &TestApp) -> Call<'_> {
    Call { app, token: API_TOKEN }
}

fn new_order(id: &str, fen: i64) -> String {
    json!({ "amount_fen": fen, "description": "演示商店-测试商品", "merchant_order_id": id }).to_string()
}

fn actors(app: &TestApp, no: &str) -> Vec<(String, String)> {
    let rows = audit::for_order(&mut app.db_handle().conn().unwrap(), no).unwrap();
    rows.into_iter().map(|r| (r.actor, r.action)).collect()
}

#[tokio::test]
async fn the_order_list_pages_newest_first_by_cursor_and_filters() {
    on_every_backend(|app| async move {
        let call = api(&app);
        let paid = app.paid_order("L-PAID", 300).await;
        let mut created = vec![paid.clone()];
        for (i, fen) in [100, 200, 400, 500, 600].into_iter().enumerate() {
            let (status, o, _) = call.post("/api/v1/orders", None, &new_order(&format!("L-{i}"), fen)).await;
            assert_eq!(status, 201, "{o}");
            created.push(o["out_trade_no"].as_str().unwrap().to_owned());
        }
        created.reverse();

        // Page by page, two at a time: every order once, newest first.
        let (mut seen, mut path) = (Vec::new(), "/api/v1/orders?limit=2".to_owned());
        loop {
            let (status, page) = call.get(&path).await;
            assert_eq!(status, 200, "{page}");
            assert_eq!(page["simulated"], true);
            let rows = page["data"].as_array().unwrap();
            assert!(rows.len() <= 2);
            seen.extend(rows.iter().map(|o| o["out_trade_no"].as_str().unwrap().to_owned()));
            assert!(rows.iter().all(|o| o["checkout_url"].is_string()), "full orders: {page}");
            if page["has_more"] == false {
                assert!(page["next_cursor"].is_null());
                break;
            }
            path = format!("/api/v1/orders?limit=2&cursor={}", page["next_cursor"].as_str().unwrap());
        }
        assert_eq!(seen, created);

        let numbers = |page: Value| -> Vec<String> {
            page["data"].as_array().unwrap().iter().map(|o| o["out_trade_no"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(numbers(call.get("/api/v1/orders?state=PAID").await.1), vec![paid.clone()]);
        assert_eq!(numbers(call.get("/api/v1/orders?merchant_order_id=L-PAID").await.1), vec![paid.clone()]);
        assert!(numbers(call.get("/api/v1/orders?merchant_order_id=NO-SUCH").await.1).is_empty());
        let (_, mid) = call.get("/api/v1/orders?amount_min_fen=200&amount_max_fen=400").await;
        assert_eq!(mid["data"].as_array().unwrap().len(), 3, "{mid}");
        let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339().replace('+', "%2B");
        assert_eq!(numbers(call.get(&format!("/api/v1/orders?paid_from={hour_ago}")).await.1), vec![paid.clone()]);
        let (_, created_range) = call.get(&format!("/api/v1/orders?created_from={hour_ago}&limit=100")).await;
        assert_eq!(created_range["data"].as_array().unwrap().len(), 6);
        let (_, old) = call.get("/api/v1/orders?created_before=2020-01-01T00:00:00Z").await;
        assert_eq!(old["data"], json!([]));
        assert_eq!(old["has_more"], false);

        for (query, field) in
            [("state=paid", "state"), ("limit=500", "limit"), ("cursor=xyz", "cursor"), ("sort=asc", "sort")]
        {
            let (status, err) = call.get(&format!("/api/v1/orders?{query}")).await;
            assert_eq!(status, 422, "{query}: {err}");
            assert_eq!(err["error"]["code"], "invalid");
            assert_eq!(err["error"]["field"], field, "{query}: {err}");
        }
        app
    })
    .await;
}

#[tokio::test]
async fn close_answers_the_order_or_says_when_wechat_allows_it() {
    on_every_backend(|app| async move {
        let call = api(&app);
        // Never reached WeChat: closed here at once, and again is the same answer.
        let (_, fresh, _) = call.post("/api/v1/orders", None, &new_order("C-LOCAL", 100)).await;
        let no = fresh["out_trade_no"].as_str().unwrap();
        for _ in 0..2 {
            let (status, closed, _) = call.post(&format!("/api/v1/orders/{no}/close"), None, "").await;
            assert_eq!(status, 200, "{closed}");
            assert_eq!(closed["state"], "CLOSED");
        }
        assert!(actors(&app, no).contains(&("api:API_TOKEN".to_owned(), "close".to_owned())), "{:?}", actors(&app, no));

        // A prepay younger than 5 minutes: WeChat would refuse, so we say when it will not.
        let (paying, _) = app.paying_order("C-EARLY", 100).await;
        let (status, err, headers) = call.post(&format!("/api/v1/orders/{paying}/close"), None, "").await;
        assert_eq!(status, 409, "{err}");
        assert_eq!(err["error"]["code"], "close_too_early");
        let wait = err["error"]["retry_after_seconds"].as_u64().unwrap();
        assert!((250..=300).contains(&wait), "{err}");
        assert_eq!(headers["retry-after"].to_str().unwrap(), wait.to_string());
        assert!(err["error"]["closable_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(app.order(&paying).await["state"], "PAYING", "nothing changed");

        // A paid order is answered as it is.
        let paid = app.paid_order("C-PAID", 100).await;
        let (status, order, _) = call.post(&format!("/api/v1/orders/{paid}/close"), None, "").await;
        assert_eq!((status, order["state"].as_str()), (200, Some("PAID")), "{order}");

        let (status, err, _) = call.post("/api/v1/orders/WC404/close", None, "").await;
        assert_eq!((status, err["error"]["code"].as_str()), (404, Some("not_found")), "{err}");
        app
    })
    .await;
}

#[tokio::test]
async fn refunds_follow_the_console_rules_and_are_idempotent_by_number() {
    on_every_backend(|app| async move {
        let call = api(&app);
        let no = app.paid_order("R-PAID", 1000).await;
        let path = format!("/api/v1/orders/{no}/refunds");
        let body = json!({ "amount_fen": 300, "reason": "退货", "out_refund_no": "R-API-1" }).to_string();
        let (status, refund, _) = call.post(&path, None, &body).await;
        assert_eq!(status, 201, "{refund}");
        assert_eq!(refund["out_refund_no"], "R-API-1");
        assert_eq!(refund["state"], "PROCESSING");
        assert_eq!(refund["requested_by"], "api:API_TOKEN");
        // The same number again sends nothing and answers the same refund.
        let (status, again, _) = call.post(&path, None, &body).await;
        assert_eq!((status, &again["out_refund_no"]), (200, &json!("R-API-1")), "{again}");
        let other = json!({ "amount_fen": 301, "reason": "退货", "out_refund_no": "R-API-1" }).to_string();
        let (status, err, _) = call.post(&path, None, &other).await;
        assert_eq!((status, err["error"]["code"].as_str()), (409, Some("conflict")), "{err}");
        // More than is left (700): refused before WeChat is asked.
        let too_much = json!({ "amount_fen": 701, "reason": "退货" }).to_string();
        let (status, err, _) = call.post(&path, None, &too_much).await;
        assert_eq!((status, err["error"]["code"].as_str()), (409, Some("conflict")), "{err}");
        for (bad, field) in [
            (json!({ "amount_fen": 0, "reason": "x" }), "amount_fen"),
            (json!({ "amount_fen": 1, "reason": "" }), "reason"),
            (json!({ "amount_fen": 1 }), "reason"),
            (json!({ "amount_fen": 1, "reason": "x", "out_refund_no": "has space" }), "out_refund_no"),
            (json!({ "amount_fen": 1, "reason": "x", "currency": "CNY" }), "currency"),
        ] {
            let (status, err, _) = call.post(&path, None, &bad.to_string()).await;
            assert_eq!(status, 422, "{bad}: {err}");
            assert_eq!(err["error"]["field"], field, "{bad}: {err}");
        }
        let (unpaid, _) = app.paying_order("R-UNPAID", 100).await;
        let body = json!({ "amount_fen": 1, "reason": "x" }).to_string();
        let (status, err, _) = call.post(&format!("/api/v1/orders/{unpaid}/refunds"), None, &body).await;
        assert_eq!((status, err["error"]["code"].as_str()), (409, Some("conflict")), "{err}");

        let (status, list) = call.get(&path).await;
        assert_eq!(status, 200);
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
        let (status, one) = call.get("/api/v1/refunds/R-API-1").await;
        assert_eq!((status, &one["out_trade_no"]), (200, &json!(no)));
        assert_eq!(call.get("/api/v1/refunds/R-NOPE").await.0, 404);
        assert_eq!(call.get("/api/v1/orders/WC404/refunds").await.0, 404);
        assert!(actors(&app, &no).contains(&("api:API_TOKEN".to_owned(), "refund".to_owned())));
        app
    })
    .await;
}

#[tokio::test]
async fn an_idempotency_key_replays_refuses_reuse_and_lets_one_twin_through() {
    on_every_backend(|app| async move {
        let call = api(&app);
        let body = json!({ "amount_fen": 100, "description": "商品", "merchant_order_id": "I-1" }).to_string();
        let (status, first, headers) = call.post("/api/v1/orders", Some("key-1"), &body).await;
        assert_eq!(status, 201, "{first}");
        assert!(headers.get("idempotent-replayed").is_none());
        // The same parameters in another order: the stored answer, 201 again.
        let reordered = r#"{"merchant_order_id":"I-1","description":"商品","amount_fen":100}"#;
        let (status, replay, headers) = call.post("/api/v1/orders", Some("key-1"), reordered).await;
        assert_eq!((status, &replay), (201, &first));
        assert_eq!(headers["idempotent-replayed"], "true");
        // The same key for something else: 422 naming the key, and nothing created.
        let other = json!({ "amount_fen": 100, "description": "商品", "merchant_order_id": "I-2" }).to_string();
        let (status, err, _) = call.post("/api/v1/orders", Some("key-1"), &other).await;
        assert_eq!(status, 422, "{err}");
        assert_eq!(err["error"]["code"], "idempotency_key_reused");
        assert_eq!(err["error"]["field"], "Idempotency-Key");
        assert_eq!(call.get("/api/v1/orders?merchant_order_id=I-2").await.1["data"], json!([]));
        let (status, err, _) = call.post("/api/v1/orders", Some("bad key"), &other).await;
        assert_eq!((status, err["error"]["field"].as_str()), (422, Some("Idempotency-Key")), "{err}");

        // Eight identical refund requests at once under one key: one refund.
        let no = app.paid_order("I-PAID", 1000).await;
        let path = format!("/api/v1/orders/{no}/refunds");
        let body = json!({ "amount_fen": 250, "reason": "重复提交" }).to_string();
        let answers = futures::future::join_all((0..8).map(|_| call.post(&path, Some("refund-key-1"), &body))).await;
        let mut numbers = Vec::new();
        for (status, answer, _) in &answers {
            match status {
                201 | 202 => numbers.push(answer["out_refund_no"].as_str().unwrap().to_owned()),
                409 => assert_eq!(answer["error"]["code"], "idempotency_key_in_use", "{answer}"),
                other => panic!("{other}: {answer}"),
            }
        }
        numbers.dedup();
        assert_eq!(numbers.len(), 1, "{answers:?}");
        // And eight at once with one out_refund_no and no key: one refund too.
        let body = json!({ "amount_fen": 250, "reason": "重复提交", "out_refund_no": "I-RF-2" }).to_string();
        let answers = futures::future::join_all((0..8).map(|_| call.post(&path, None, &body))).await;
        assert!(
            answers.iter().all(|(s, a, _)| [200, 201, 202].contains(s) && a["out_refund_no"] == "I-RF-2"),
            "{answers:?}"
        );
        let rows = refunds::for_order(&mut app.db_handle().conn().unwrap(), &no).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(app.order(&no).await["state"], "PAID");
        let reserved = wechat_checkout::db::orders::find(&mut app.db_handle().conn().unwrap(), &no).unwrap().unwrap();
        assert_eq!(reserved.refund_reserved.get(), 500);
        app
    })
    .await;
}

#[tokio::test]
async fn each_scope_does_what_it_names_and_writes_are_audited_by_token_name() {
    on_every_backend(|app| async move {
        let (read, write, refund) = (
            app.issue_token("reader", "read").await,
            app.issue_token("shop", "write").await,
            app.issue_token("finance", "refund").await,
        );
        let paid = app.paid_order("S-PAID", 500).await;
        let refund_path = format!("/api/v1/orders/{paid}/refunds");
        let refund_body = json!({ "amount_fen": 100, "reason": "退货" }).to_string();

        let reader = Call { app: &app, token: &read };
        assert_eq!(reader.get(&format!("/api/v1/orders/{paid}")).await.0, 200);
        assert_eq!(reader.get("/api/v1/orders").await.0, 200);
        assert_eq!(reader.get(&refund_path).await.0, 200);
        for (path, body, needed) in [
            ("/api/v1/orders".to_owned(), new_order("S-1", 100), "write"),
            (format!("/api/v1/orders/{paid}/close"), String::new(), "write"),
            (refund_path.clone(), refund_body.clone(), "refund"),
        ] {
            let (status, err, _) = reader.post(&path, None, &body).await;
            assert_eq!(status, 403, "{path}: {err}");
            assert_eq!(err["error"]["code"], "insufficient_scope");
            assert_eq!(err["error"]["required_scope"], needed);
            assert_eq!(err["error"]["token_scope"], "read");
            assert!(err["error"]["message"].as_str().unwrap().contains(&format!("`{needed}`")), "{err}");
        }

        let shop = Call { app: &app, token: &write };
        let (status, created, _) = shop.post("/api/v1/orders", None, &new_order("S-2", 100)).await;
        assert_eq!(status, 201, "{created}");
        let no = created["out_trade_no"].as_str().unwrap();
        assert_eq!(actors(&app, no), vec![("api:shop".to_owned(), "order_created".to_owned())]);
        assert_eq!(shop.post(&format!("/api/v1/orders/{no}/close"), None, "").await.0, 200);
        let (status, err, _) = shop.post(&refund_path, None, &refund_body).await;
        assert_eq!((status, err["error"]["required_scope"].as_str()), (403, Some("refund")), "{err}");

        let finance = Call { app: &app, token: &refund };
        let (status, done, _) = finance.post(&refund_path, None, &refund_body).await;
        assert_eq!(status, 201, "{done}");
        assert_eq!(done["requested_by"], "api:finance");
        assert!(actors(&app, &paid).contains(&("api:finance".to_owned(), "refund".to_owned())));

        // Keys belong to their token: the same key under another token is a new request.
        let (s1, _, _) = shop.post("/api/v1/orders", Some("shared"), &new_order("S-3", 100)).await;
        let (s2, _, _) = finance.post("/api/v1/orders", Some("shared"), &new_order("S-4", 100)).await;
        assert_eq!((s1, s2), (201, 201));
        app
    })
    .await;
}

#[tokio::test]
async fn every_error_has_the_one_shape() {
    let app = TestApp::sqlite().await;
    let res = app.http.get(app.url("/api/v1/no-such-thing")).bearer_auth(API_TOKEN).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "not_found", "{err}");
    assert_eq!(err["simulated"], true);
    let res = app.http.get(app.url("/api/v1/orders")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "unauthorized");
    let big = "x".repeat(70 * 1024);
    let (status, err, _) = api(&app).post("/api/v1/orders", None, &big).await;
    assert_eq!((status, err["error"]["code"].as_str()), (413, Some("payload_too_large")), "{err}");
    app.stop().await;
}

#[test]
fn the_error_table_documents_every_code_the_api_answers_with() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let table: Vec<(String, u16)> = doc
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((code.to_owned(), cells.get(2)?.parse().ok()?))
        })
        .collect();
    let codes: Vec<(String, u16)> =
        wechat_checkout::web::api::CODES.iter().map(|(c, s)| ((*c).to_owned(), *s)).collect();
    for code in &codes {
        assert!(table.contains(code), "docs/api.md does not list {code:?}");
    }
    for row in &table {
        assert!(codes.contains(row), "docs/api.md lists {row:?}, which the API never answers");
    }
}
