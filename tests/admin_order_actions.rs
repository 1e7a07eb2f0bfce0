//! The order page's actions over real HTTP against the in-app simulator: re-query, close (with
//! WeChat's 5-minute rule), refunds (full, partial, over the limit, retried, double-submitted,
//! concurrent), re-processing a stored notify, resolving exceptions, roles and the audit log.
//! On SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use common::admin::*;
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, on_every_backend_and_version};
use diesel::prelude::*;
use serde_json::json;
use wechat_checkout::db::schema::orders as orders_table;
use wechat_checkout::db::{audit, exceptions, notify_log, orders, refunds};
use wechat_checkout::domain::RefundState;
use wechat_checkout::domain::{ExceptionKind, NotifyKind, NotifyVerdict};
use wechat_checkout::staff::Role;

fn order_row(app: &TestApp, no: &str) -> wechat_checkout::domain::Order {
    orders::find(&mut app.db_handle().conn().unwrap(), no).unwrap().unwrap()
}

fn refund_rows(app: &TestApp, no: &str) -> Vec<wechat_checkout::domain::Refund> {
    refunds::for_order(&mut app.db_handle().conn().unwrap(), no).unwrap()
}

/// The staff actions audited on an order (its creation through the API, audited too, left out).
fn audit_actions(app: &TestApp, no: &str) -> Vec<String> {
    let all = audit::for_order(&mut app.db_handle().conn().unwrap(), no).unwrap();
    all.into_iter().map(|a| a.action).filter(|a| a != "order_created").collect()
}

fn page_path(no: &str) -> String {
    format!("/admin/orders/{no}")
}

/// Posts a confirm-only action form and returns the flash shown on the order page afterwards.
async fn act(app: &TestApp, client: &reqwest::Client, no: &str, action: &str) -> String {
    let res = post_form(app, client, &page_path(no), &format!("/admin/orders/{no}/{action}"), &[]).await;
    assert_eq!(res.status(), 303, "{action}: {}", res.text().await.unwrap_or_default());
    flash(app, client, no).await
}

async fn flash(app: &TestApp, client: &reqwest::Client, no: &str) -> String {
    let (status, html) = get(app, client, &page_path(no)).await;
    assert_eq!(status, 200);
    let start = html.find("class=\"flash").map(|i| i + html[i..].find('>').unwrap() + 1).unwrap_or(0);
    if start == 0 {
        return String::new();
    }
    html[start..start + html[start..].find("</p>").unwrap()].to_owned()
}

async fn refund(app: &TestApp, client: &reqwest::Client, no: &str, amount: &str) -> (String, String) {
    let out_refund_no = console_refund(app, client, no, amount).await;
    (out_refund_no, flash(app, client, no).await)
}

async fn admin(app: &TestApp) -> reqwest::Client {
    sign_in(app, ADMIN_USER, ADMIN_PASSWORD).await
}

#[tokio::test]
async fn requery_applies_a_payment_whose_notify_was_lost() {
    on_every_backend_and_version(|app| async move {
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        let (no, prepay) = app.paying_order("REQ-1", 1990).await;
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(order_row(&app, &no).state.as_str(), "PAYING", "no notify arrived");

        let admin = admin(&app).await;
        let message = act(&app, &admin, &no, "requery").await;
        assert!(message.contains("微信支付返回 SUCCESS，订单已标记为已支付"), "{message}");
        let order = order_row(&app, &no);
        assert_eq!(order.state.as_str(), "PAID");
        assert!(order.transaction_id.is_some());

        let (_, html) = get(&app, &admin, &page_path(&no)).await;
        assert!(html.contains("data-state=\"PAID\""));
        assert!(html.contains("确认支付（来源：查询）"), "the timeline shows the query's transition");
        assert!(html.contains("查询订单：微信支付返回 SUCCESS"));
        assert!(html.contains("后台操作：重新查询订单（admin）"));
        // A second re-query changes nothing and says so.
        let message = act(&app, &admin, &no, "requery").await;
        assert!(message.contains("订单状态未变（已支付）"), "{message}");
        assert_eq!(audit_actions(&app, &no), ["requery", "requery"]);
        app
    })
    .await;
}

#[tokio::test]
async fn close_respects_the_five_minute_rule() {
    on_every_backend_and_version(|app| async move {
        create_staff(&app, "operator1", Role::Operator);
        let op = sign_in(&app, "operator1", STAFF_PASSWORD).await;
        let (no, _) = app.paying_order("CLOSE-1", 500).await;

        let message = act(&app, &op, &no, "close").await;
        assert!(message.contains("5 分钟") && message.contains("未调用微信支付"), "{message}");
        assert_eq!(order_row(&app, &no).state.as_str(), "PAYING");
        assert_eq!(app.sim_order(&no).await["state"], "NOTPAY");

        // Six minutes later, for us (the prepay's time) and for WeChat (its clock).
        let earlier = (chrono::Utc::now() - chrono::Duration::minutes(6)).naive_utc();
        diesel::update(orders_table::table.filter(orders_table::out_trade_no.eq(&no)))
            .set(orders_table::prepay_created_at.eq(Some(earlier)))
            .execute(&mut app.db_handle().conn().unwrap())
            .unwrap();
        app.control("clock", json!({ "advance_seconds": 360 })).await;

        let message = act(&app, &op, &no, "close").await;
        assert_eq!(message, "已在微信支付关闭订单，订单已标记为已关闭");
        assert_eq!(order_row(&app, &no).state.as_str(), "CLOSED");
        assert_eq!(app.sim_order(&no).await["state"], "CLOSED");
        let (_, html) = get(&app, &op, &page_path(&no)).await;
        assert!(html.contains("订单关闭（来源：关单）"));
        assert!(!html.contains("/close\""), "a closed order offers no close");

        // An order that never reached WeChat closes locally at once.
        let created = app.create_order("CLOSE-2", 500).await;
        let local = created["out_trade_no"].as_str().unwrap().to_owned();
        let message = act(&app, &op, &local, "close").await;
        assert_eq!(message, "订单未在微信支付下单，已在本地关闭");
        assert_eq!(order_row(&app, &local).state.as_str(), "CLOSED");

        // A paid order cannot be closed: WeChat is asked, answers ORDERPAID, and the paid path runs.
        let (paid, prepay) = app.paying_order("CLOSE-3", 700).await;
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        app.shopper(&prepay, "ok").await;
        diesel::update(orders_table::table.filter(orders_table::out_trade_no.eq(&paid)))
            .set(orders_table::prepay_created_at.eq(Some(earlier)))
            .execute(&mut app.db_handle().conn().unwrap())
            .unwrap();
        let message = act(&app, &op, &paid, "close").await;
        assert!(message.contains("已支付"), "{message}");
        assert_eq!(order_row(&app, &paid).state.as_str(), "PAID");

        assert_eq!(audit_actions(&app, &no), ["close", "close"]);
        assert_eq!(audit_actions(&app, &local), ["close"]);
        assert_eq!(audit_actions(&app, &paid), ["close"]);
        app
    })
    .await;
}

#[tokio::test]
async fn a_full_refund_reaches_success_through_requery() {
    on_every_backend_and_version(|app| async move {
        let no = app.paid_order("REF-FULL", 1990).await;
        let admin = admin(&app).await;
        // Refund notifies are lost: the re-query must find the outcome.
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        let (out_refund_no, message) = refund(&app, &admin, &no, "19.90").await;
        assert!(message.contains("微信支付已受理"), "{message}");
        assert!(out_refund_no.starts_with(&format!("R{no}-")));
        let row = &refund_rows(&app, &no)[0];
        assert_eq!((row.state, row.amount.get()), (RefundState::Processing, 1990));
        assert!(row.refund_id.is_some());
        let (_, html) = get(&app, &admin, &page_path(&no)).await;
        assert!(html.contains("退款：退款中"));
        assert!(!html.contains("name=\"out_refund_no\""), "nothing is left to refund");

        app.control(&format!("refunds/{out_refund_no}/settle"), json!({ "status": "SUCCESS" })).await;
        let message = act(&app, &admin, &no, "requery").await;
        assert!(message.contains(&format!("退款 {out_refund_no} 微信支付返回 SUCCESS")), "{message}");
        let order = order_row(&app, &no);
        assert_eq!((order.refunded.get(), order.refund_reserved.get()), (1990, 1990));
        assert_eq!(refund_rows(&app, &no)[0].state, RefundState::Success);
        let (_, html) = get(&app, &admin, &page_path(&no)).await;
        assert!(html.contains("退款：全额退款"));
        assert!(html.contains("id=\"f-refunded\" data-fen=\"1990\""));
        assert!(html.contains("退款成功（来源：查询）"));

        // The payment notify stored earlier can be re-processed: verified and logged again.
        let first = notify_log::for_order(&mut app.db_handle().conn().unwrap(), &no).unwrap()[0].clone();
        let res = post_form(
            &app,
            &admin,
            &page_path(&no),
            &format!("/admin/notifies/{}/reprocess", first.id),
            &[("back", &page_path(&no))],
        )
        .await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], page_path(&no));
        let logged = notify_log::for_order(&mut app.db_handle().conn().unwrap(), &no).unwrap();
        assert_eq!(logged.len(), 2);
        assert_eq!(logged[1].verdict, "duplicate");
        assert_eq!(logged[1].raw_body, first.raw_body);
        assert_eq!(order_row(&app, &no).refunded.get(), 1990, "re-processing changes nothing");
        assert_eq!(audit_actions(&app, &no), ["refund", "requery", "notify_reprocess"]);
        app
    })
    .await;
}

#[tokio::test]
async fn partial_refunds_never_exceed_the_payment() {
    on_every_backend_and_version(|app| async move {
        let no = app.paid_order("REF-PART", 1000).await;
        let admin = admin(&app).await;
        let (first, message) = refund(&app, &admin, &no, "3").await;
        assert!(message.contains("微信支付已受理"), "{message}");

        // More than what is left: refused here, WeChat never asked.
        let (_, message) = refund(&app, &admin, &no, "7.01").await;
        assert!(message.contains("超过可退金额 7.00 元") && message.contains("未向微信支付发起退款"), "{message}");
        assert_eq!(app.sim_order(&no).await["refunds"].as_array().unwrap().len(), 1);
        assert_eq!(refund_rows(&app, &no).len(), 1);

        // Bad input is refused with a message, never a 500.
        for (amount, reason, confirm) in
            [("abc", "x", "yes"), ("-1", "x", "yes"), ("1.001", "x", "yes"), ("1", "", "yes"), ("1", "x", "")]
        {
            let form = refund_form(&app, &admin, &no).await;
            let fields = [
                ("csrf", form.0.as_str()),
                ("out_refund_no", form.1.as_str()),
                ("amount", amount),
                ("reason", reason),
                ("confirm", confirm),
            ];
            let res = admin.post(app.url(&format!("/admin/orders/{no}/refund"))).form(&fields).send().await.unwrap();
            assert_eq!(res.status(), 303, "{amount:?} {reason:?} {confirm:?}");
            let message = flash(&app, &admin, &no).await;
            assert!(!message.is_empty() && !message.contains("已受理"), "{amount:?} {reason:?} {confirm:?}: {message}");
        }
        let long = "很".repeat(27);
        let form = refund_form(&app, &admin, &no).await;
        let fields = [
            ("csrf", form.0.as_str()),
            ("out_refund_no", &form.1),
            ("amount", "1"),
            ("reason", &long),
            ("confirm", "yes"),
        ];
        admin.post(app.url(&format!("/admin/orders/{no}/refund"))).form(&fields).send().await.unwrap();
        assert!(flash(&app, &admin, &no).await.contains("最多 80 字节"));
        assert_eq!(refund_rows(&app, &no).len(), 1);

        // The rest, within WeChat's one-minute gap: not confirmed, kept pending and reserved.
        let (second, message) = refund(&app, &admin, &no, "7.00").await;
        // v2 names the rule INVALID_REQ_TOO_MUCH; v3 answers 429 FREQUENCY_LIMITED.
        let code = if app.api_version == "v3" { "FREQUENCY_LIMITED" } else { "INVALID_REQ_TOO_MUCH" };
        assert!(message.contains(code) && message.contains("重试"), "{message}");
        let pending = refund_rows(&app, &no).into_iter().find(|r| r.out_refund_no == second).unwrap();
        assert_eq!(pending.state, RefundState::Pending);
        assert_eq!(order_row(&app, &no).refund_reserved.get(), 1000);
        let (_, html) = get(&app, &admin, &page_path(&no)).await;
        assert!(html.contains(&format!("/refunds/{second}/retry")));

        // A minute later the retry sends the same number and WeChat accepts it.
        app.control("clock", json!({ "advance_seconds": 61 })).await;
        let res =
            post_form(&app, &admin, &page_path(&no), &format!("/admin/orders/{no}/refunds/{second}/retry"), &[]).await;
        assert_eq!(res.status(), 303);
        assert!(flash(&app, &admin, &no).await.contains("微信支付已受理"));
        let sim: Vec<String> = app.sim_order(&no).await["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["out_refund_no"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sim, [first.clone(), second.clone()]);
        let order = order_row(&app, &no);
        assert_eq!((order.refund_reserved.get(), order.refunded.get()), (1000, 0));
        assert_eq!(audit_actions(&app, &no), ["refund", "refund_refused", "refund", "refund_retry"]);
        app
    })
    .await;
}

#[tokio::test]
async fn a_double_submitted_refund_form_refunds_once() {
    on_every_backend_and_version(|app| async move {
        let admin = admin(&app).await;

        // The same form twice, one after the other.
        let no = app.paid_order("REF-DOUBLE", 800).await;
        let form = refund_form(&app, &admin, &no).await;
        assert_eq!(submit_refund(&app, &admin, &no, &form, "8.00").await.status(), 303);
        assert!(flash(&app, &admin, &no).await.contains("微信支付已受理"));
        assert_eq!(submit_refund(&app, &admin, &no, &form, "8.00").await.status(), 303);
        let message = flash(&app, &admin, &no).await;
        assert!(message.contains("已提交过") && message.contains("未重复退款"), "{message}");
        assert_eq!(app.sim_order(&no).await["refunds"].as_array().unwrap().len(), 1);
        assert_eq!(refund_rows(&app, &no).len(), 1);
        assert_eq!(order_row(&app, &no).refund_reserved.get(), 800);
        assert_eq!(audit_actions(&app, &no), ["refund", "refund_resubmitted"]);

        // The same form eight times at once.
        let no = app.paid_order("REF-CONCURRENT", 900).await;
        let form = refund_form(&app, &admin, &no).await;
        let posts = (0..8).map(|_| submit_refund(&app, &admin, &no, &form, "9.00"));
        for res in futures::future::join_all(posts).await {
            assert_eq!(res.status(), 303);
        }
        let sim = app.sim_order(&no).await;
        assert_eq!(sim["refunds"].as_array().unwrap().len(), 1, "{sim}");
        assert_eq!(sim["refunds"][0]["out_refund_no"], form.1.as_str());
        let rows = refund_rows(&app, &no);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].state, RefundState::Processing);
        let order = order_row(&app, &no);
        assert_eq!((order.refund_reserved.get(), order.refunded.get()), (900, 0));
        let actions = audit_actions(&app, &no);
        assert_eq!(actions.len(), 8);
        assert_eq!(actions.iter().filter(|a| *a == "refund").count(), 1);
        app
    })
    .await;
}

#[tokio::test]
async fn roles_are_enforced_on_every_action() {
    let app = TestApp::sqlite().await;
    create_staff(&app, "viewer", Role::Viewer);
    create_staff(&app, "operator1", Role::Operator);
    let viewer = sign_in(&app, "viewer", STAFF_PASSWORD).await;
    let op = sign_in(&app, "operator1", STAFF_PASSWORD).await;
    let no = app.paid_order("ROLES-1", 300).await;
    let admin_client = admin(&app).await;
    let form = refund_form(&app, &admin_client, &no).await;

    let (status, html) = get(&app, &viewer, &page_path(&no)).await;
    assert_eq!(status, 200);
    assert!(!html.contains("/requery\"") && !html.contains("/refund\"") && !html.contains("/reprocess\""));
    let (_, html) = get(&app, &op, &page_path(&no)).await;
    assert!(html.contains("/requery\"") && !html.contains("/refund\""));

    for (client, action) in
        [(&viewer, "requery"), (&viewer, "close"), (&viewer, "refund"), (&op, "refund"), (&op, "refunds/R1/retry")]
    {
        let fields = [("out_refund_no", form.1.as_str()), ("amount", "3.00"), ("reason", "x"), ("confirm", "yes")];
        let res = post_form(&app, client, &page_path(&no), &format!("/admin/orders/{no}/{action}"), &fields).await;
        assert_eq!(res.status(), 403, "{action}");
    }
    let id = notify_log::for_order(&mut app.db_handle().conn().unwrap(), &no).unwrap()[0].id;
    let res = post_form(&app, &viewer, &page_path(&no), &format!("/admin/notifies/{id}/reprocess"), &[]).await;
    assert_eq!(res.status(), 403);
    assert!(refund_rows(&app, &no).is_empty());
    assert!(audit_actions(&app, &no).is_empty());
    // Without a CSRF token even an admin is refused.
    let res = admin_client
        .post(app.url(&format!("/admin/orders/{no}/refund")))
        .form(&[("out_refund_no", form.1.as_str()), ("amount", "3.00"), ("reason", "x"), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(refund_rows(&app, &no).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn pages_and_exceptions() {
    on_every_backend_and_version(|app| async move {
        create_staff(&app, "viewer", Role::Viewer);
        create_staff(&app, "operator1", Role::Operator);
        let viewer = sign_in(&app, "viewer", STAFF_PASSWORD).await;
        let op = sign_in(&app, "operator1", STAFF_PASSWORD).await;
        let no = app.paid_order("PAGES-1", 300).await;

        // Unknown or malformed orders are a 404 page, not an error.
        for path in ["/admin/orders/WC0000000000000000", "/admin/orders/%3Cscript%3E", "/admin/orders/a%20b"] {
            assert_eq!(get(&app, &viewer, path).await.0, 404, "{path}");
        }
        // The notify log lists the delivery, escaped, and filters by verdict and kind.
        let (status, html) = get(&app, &viewer, "/admin/notifies").await;
        assert_eq!(status, 200);
        assert!(html.contains(&format!("href=\"/admin/orders/{no}\"")));
        let escaped = if app.api_version == "v3" {
            html.contains("{&#34;") && !html.contains("{\"id\"")
        } else {
            html.contains("&#60;xml&#62;") && !html.contains("<xml>")
        };
        assert!(escaped, "raw bodies are escaped");
        assert!(!html.contains("/reprocess\""), "viewers cannot re-process");
        // Paid by the notify, or by the status poll first (then the notify is a duplicate).
        let verdict = notify_log::for_order(&mut app.db_handle().conn().unwrap(), &no).unwrap()[0].verdict.clone();
        let (_, html) = get(&app, &viewer, &format!("/admin/notifies?verdict={verdict}&kind=payment")).await;
        assert!(html.contains(&format!("data-verdict=\"{verdict}\"")) && html.contains("data-kind=\"payment\""));
        let (_, html) = get(&app, &viewer, "/admin/notifies?verdict=bad_signature").await;
        assert!(html.contains("id=\"no-notifies\""));
        for odd in ["/admin/notifies?before=abc", "/admin/notifies?verdict=%3Cx%3E&kind=1", "/admin/notifies?before=1"]
        {
            assert_eq!(get(&app, &viewer, odd).await.0, 200, "{odd}");
        }

        // Exceptions: listed open first, resolved with a note by an operator, once.
        let conn = &mut app.db_handle().conn().unwrap();
        for (i, kind) in [ExceptionKind::AmountMismatch, ExceptionKind::RefundChange].into_iter().enumerate() {
            exceptions::raise(
                conn,
                &exceptions::NewException {
                    kind,
                    dedupe_key: format!("test:{i}"),
                    out_trade_no: Some(no.clone()),
                    detail: json!({ "note": "<b>test</b>" }),
                },
            )
            .unwrap();
        }
        let open = exceptions::open(conn, 10).unwrap();
        let id = open.iter().find(|x| x.kind == "refund_change").unwrap().id;
        let (_, html) = get(&app, &viewer, "/admin/exceptions").await;
        assert!(
            html.contains("退款异常")
                && html.contains("金额不符")
                && html.contains("&#60;b&#62;test")
                && !html.contains("<b>test")
        );
        assert!(!html.contains("/resolve\""), "viewers cannot resolve");
        let (_, html) = get(&app, &viewer, "/admin/exceptions?kind=refund_change").await;
        assert!(html.contains("data-kind=\"refund_change\"") && !html.contains("data-kind=\"amount_mismatch\""));
        let (_, html) = get(&app, &viewer, &page_path(&no)).await;
        assert!(html.contains("待处理异常") && html.contains("data-kind=\"refund_change\""));

        let res =
            post_form(&app, &viewer, "/admin/exceptions", &format!("/admin/exceptions/{id}/resolve"), &[("note", "x")])
                .await;
        assert_eq!(res.status(), 403);
        let resolve = |note: &'static str| {
            let (app, op) = (&app, &op);
            async move {
                let res = post_form(
                    app,
                    op,
                    "/admin/exceptions",
                    &format!("/admin/exceptions/{id}/resolve"),
                    &[("note", note)],
                )
                .await;
                assert_eq!(res.status(), 303);
                let (_, html) = get(app, op, "/admin/exceptions?status=all").await;
                html
            }
        };
        assert!(resolve("   ").await.contains("请填写处理说明"));
        assert!(resolve("已线下转账给顾客").await.contains(&format!("异常 #{id} 已标记为已处理")));
        assert!(resolve("again").await.contains("已被他人处理"));
        let x = exceptions::find(conn, id).unwrap().unwrap();
        assert_eq!(
            (x.resolved_by.as_deref(), x.resolution_note.as_deref()),
            (Some("operator1"), Some("已线下转账给顾客"))
        );
        let (_, html) = get(&app, &viewer, "/admin/exceptions").await;
        assert!(!html.contains(&format!("data-id=\"{id}\"")), "resolved ones leave the open list");
        let (_, html) = get(&app, &viewer, "/admin/exceptions?status=resolved").await;
        assert!(html.contains(&format!("data-id=\"{id}\"")) && html.contains("已线下转账给顾客"));
        let (_, html) = get(&app, &viewer, &page_path(&no)).await;
        assert!(html.contains(&format!("异常 #{id} 已处理")));
        assert_eq!(audit_actions(&app, &no), ["exception_resolved"]);
        app
    })
    .await;
}

/// Every `data-id` of the rows of a list page, in order, and its "older" link.
fn ids_and_next(html: &str, row_class: &str) -> (Vec<i64>, Option<String>) {
    let marker = format!("<tr class=\"{row_class}");
    let ids = html
        .match_indices(&marker)
        .map(|(at, _)| {
            let rest = &html[at..];
            let id = rest.find("data-id=\"").unwrap() + "data-id=\"".len();
            rest[id..].split('"').next().unwrap().parse().unwrap()
        })
        .collect();
    let next = html.find("id=\"older\"").map(|end| {
        let start = html[..end].rfind("href=\"").unwrap() + "href=\"".len();
        html[start..].split('"').next().unwrap().replace("&amp;", "&").replace("&#38;", "&")
    });
    (ids, next)
}

#[tokio::test]
async fn lists_page_by_keyset() {
    let app = TestApp::sqlite().await;
    let viewer = admin(&app).await;
    let conn = &mut app.db_handle().conn().unwrap();
    for i in 0..120 {
        notify_log::insert(
            conn,
            &notify_log::NewNotifyLog {
                kind: if i % 2 == 0 { NotifyKind::Payment } else { NotifyKind::Refund },
                received_at: wechat_checkout::db::now(),
                remote_addr: None,
                out_trade_no: None,
                transaction_id: None,
                verdict: if i % 3 == 0 { NotifyVerdict::BadXml } else { NotifyVerdict::Duplicate },
                reason: String::new(),
                raw_body: format!("<xml>{i}</xml>"),
                reply: String::new(),
            },
        )
        .unwrap();
        exceptions::raise(
            conn,
            &exceptions::NewException {
                kind: ExceptionKind::UnknownOrder,
                dedupe_key: format!("page:{i}"),
                out_trade_no: None,
                detail: json!({}),
            },
        )
        .unwrap();
    }
    // Every third exception resolved, so "all" interleaves by id but must list open ones first.
    for x in exceptions::open(conn, 200).unwrap().into_iter().filter(|x| x.id % 3 == 0) {
        exceptions::resolve(conn, x.id, "admin", "ok", wechat_checkout::db::now()).unwrap();
    }

    let walk = |first: &'static str, class: &'static str| {
        let (app, viewer) = (&app, &viewer);
        async move {
            let (mut all, mut next, mut pages) = (Vec::new(), Some(first.to_owned()), 0);
            while let Some(path) = next {
                let (status, html) = get(app, viewer, &path).await;
                assert_eq!(status, 200, "{path}");
                let (ids, older) = ids_and_next(&html, class);
                assert!(ids.len() <= 50);
                all.extend(ids);
                next = older;
                pages += 1;
            }
            (all, pages)
        }
    };
    let (ids, pages) = walk("/admin/notifies", "notify").await;
    assert_eq!((ids.len(), pages), (120, 3));
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats");
    let (ids, _) = walk("/admin/notifies?verdict=bad_xml&kind=payment", "notify").await;
    assert_eq!(ids.len(), 20);

    let (ids, pages) = walk("/admin/exceptions?status=all", "exception").await;
    assert_eq!((ids.len(), pages), (120, 3));
    let split = ids.iter().position(|id| id % 3 == 0).unwrap();
    assert_eq!(split, 80, "the 80 open ones come first");
    assert!(ids[..split].windows(2).all(|w| w[0] > w[1]) && ids[split..].windows(2).all(|w| w[0] > w[1]));
    assert!(ids[split..].iter().all(|id| id % 3 == 0));
    let (ids, _) = walk("/admin/exceptions", "exception").await;
    assert_eq!(ids.len(), 80);
    let (ids, _) = walk("/admin/exceptions?status=resolved&kind=unknown_order", "exception").await;
    assert_eq!(ids.len(), 40);
    app.stop().await;
}
