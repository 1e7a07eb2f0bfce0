//! `POST /wechat/refund-notify` over real HTTP: the simulator's encrypted refund notify is
//! decrypted, applied once however often (and however concurrently) it is delivered, and logged;
//! notifies we cannot decrypt or that name another merchant get FAIL and change nothing; CHANGE
//! raises an exception and REFUNDCLOSE gives the amount back. On SQLite, and on PostgreSQL when
//! TEST_DATABASE_URL is set.

mod common;

use std::time::Duration;

use common::admin::{console_refund, get, sign_in};
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, on_every_backend};
use serde_json::json;
use wechat_checkout::db::{events, exceptions, notify_log, orders, refunds};
use wechat_checkout::domain::RefundState;
use wechat_checkout::simulator::{DEMO_API_KEY, DEMO_APPID, DEMO_MCH_ID};
use wechat_checkout::wxpay::notify::SUCCESS_REPLY;
use wechat_checkout::wxpay::refund_notify::encrypt_req_info;
use wechat_checkout::wxpay::{ApiKey, xml};

fn order_row(app: &TestApp, no: &str) -> wechat_checkout::domain::Order {
    orders::find(&mut app.db_handle().conn().unwrap(), no).unwrap().unwrap()
}

fn refund_row(app: &TestApp, out_refund_no: &str) -> wechat_checkout::domain::Refund {
    refunds::find(&mut app.db_handle().conn().unwrap(), out_refund_no).unwrap().unwrap()
}

fn refund_log(app: &TestApp) -> Vec<wechat_checkout::domain::records::NotifyRecord> {
    notify_log::page(&mut app.db_handle().conn().unwrap(), None, Some("refund"), None, 1000).unwrap()
}

/// Refunds `amount` (yuan) through the admin form; returns the out_refund_no, now PROCESSING.
async fn refund(app: &TestApp, admin: &reqwest::Client, no: &str, amount: &str) -> String {
    let out_refund_no = console_refund(app, admin, no, amount).await;
    assert_eq!(refund_row(app, &out_refund_no).state, RefundState::Processing);
    out_refund_no
}

/// Waits until at least `n` refund notifies are logged.
async fn wait_for_refund_log(app: &TestApp, n: usize) -> Vec<wechat_checkout::domain::records::NotifyRecord> {
    for _ in 0..200 {
        let log = refund_log(app);
        if log.len() >= n {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} refund notifies arrived: {:?}", refund_log(app));
}

async fn post(app: &TestApp, body: impl Into<reqwest::Body>) -> (u16, String, String) {
    let res = app
        .http
        .post(app.url("/wechat/refund-notify"))
        .header("Content-Type", "text/xml")
        .body(body)
        .send()
        .await
        .unwrap();
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    (res.status().as_u16(), content_type, res.text().await.unwrap())
}

/// A refund notify as WeChat would send it, encrypted with `key`, from `mch_id`.
fn forged(key: &str, mch_id: &str, root: &[(&str, &str)]) -> String {
    let req_info = encrypt_req_info(&xml::write_document("root", root.iter().copied()), &ApiKey::new(key).unwrap());
    xml::write_document(
        "xml",
        [
            ("return_code", "SUCCESS"),
            ("appid", DEMO_APPID),
            ("mch_id", mch_id),
            ("nonce_str", "TeqClE3i0mvn3DrK"),
            ("req_info", &req_info),
        ],
    )
}

fn root<'a>(no: &'a str, out_refund_no: &'a str, fee: &'a str, status: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("transaction_id", "4200000316201905271212345678"),
        ("out_trade_no", no),
        ("refund_id", "50000000382019052709732678859"),
        ("out_refund_no", out_refund_no),
        ("total_fee", fee),
        ("refund_fee", fee),
        ("refund_status", status),
        ("success_time", "2026-11-27 14:10:10"),
        ("refund_recv_accout", "支付用户零钱"),
    ]
}

#[tokio::test]
async fn a_refund_notify_applies_once_even_when_delivered_five_times_at_once() {
    on_every_backend(|app| async move {
        let no = app.paid_order("RN-1", 2500).await;
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let out_refund_no = refund(&app, &admin, &no, "25.00").await;
        app.control("faults", json!({ "concurrent_notifies": 5 })).await;
        app.control(&format!("refunds/{out_refund_no}/settle"), json!({ "status": "SUCCESS" })).await;

        wait_for_refund_log(&app, 5).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let log: Vec<_> = refund_log(&app).into_iter().filter(|r| r.out_trade_no.as_deref() == Some(&no)).collect();
        assert!(log.len() >= 5, "{log:?}");
        let mut verdicts: Vec<&str> = log.iter().map(|r| r.verdict.as_str()).collect();
        verdicts.sort();
        assert_eq!(verdicts.iter().filter(|v| **v == "refund_success").count(), 1, "{verdicts:?}");
        assert!(verdicts.iter().all(|v| *v == "refund_success" || *v == "duplicate"), "{verdicts:?}");
        for row in &log {
            assert_eq!(row.reply, SUCCESS_REPLY);
            assert!(row.raw_body.contains("<req_info>"), "the outer XML is kept as received");
            assert!(!row.raw_body.contains("<root>"), "never the decrypted plaintext");
            assert!(row.reason.contains(&out_refund_no) && row.reason.contains("SUCCESS"));
        }

        let order = order_row(&app, &no);
        assert_eq!((order.refunded.get(), order.refund_reserved.get()), (2500, 2500));
        let refund = refund_row(&app, &out_refund_no);
        assert_eq!(refund.state, RefundState::Success);
        assert!(refund.succeeded_at.is_some());
        let succeeded = events::for_order(&mut app.db_handle().conn().unwrap(), &no)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "refund_succeeded")
            .count();
        assert_eq!(succeeded, 1);

        // Delivered again later (WeChat's retry): logged, answered SUCCESS, no second refund.
        let again = log[0].raw_body.clone();
        let (status, content_type, reply) = post(&app, again).await;
        assert_eq!((status, content_type.as_str(), reply.as_str()), (200, "text/xml; charset=utf-8", SUCCESS_REPLY));
        assert_eq!(order_row(&app, &no).refunded.get(), 2500);

        let (_, html) = get(&app, &admin, &format!("/admin/orders/{no}")).await;
        assert!(html.contains("退款：全额退款") && html.contains("退款成功（来源：退款通知）"));
        app
    })
    .await;
}

#[tokio::test]
async fn undecryptable_or_foreign_refund_notifies_get_fail_and_change_nothing() {
    on_every_backend(|app| async move {
        let no = app.paid_order("RN-2", 1200).await;
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let out_refund_no = refund(&app, &admin, &no, "12.00").await;
        let success = root(&no, &out_refund_no, "1200", "SUCCESS");

        let wrong_key = forged("00000000000000000000000000000000", DEMO_MCH_ID, &success);
        let foreign = forged(DEMO_API_KEY, "19999999", &success);
        let return_fail = xml::write_document("xml", [("return_code", "FAIL"), ("return_msg", "系统错误")]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (wrong_key.into_bytes(), "decrypt_failed"),
            (foreign.into_bytes(), "foreign_merchant"),
            (return_fail.into_bytes(), "return_fail"),
            (b"not xml at all".to_vec(), "bad_xml"),
            (Vec::new(), "bad_xml"),
            (b"<xml><return_code>SUCCESS</return_code><req_info>!!</req_info></xml>".to_vec(), "bad_field"),
            (
                format!("<xml><return_code>SUCCESS</return_code><appid>{DEMO_APPID}</appid><mch_id>{DEMO_MCH_ID}</mch_id><req_info>!!</req_info></xml>").into_bytes(),
                "decrypt_failed",
            ),
            (vec![b'<'; 70 * 1024], "too_large"),
        ];
        for (body, verdict) in cases {
            let before = refund_log(&app).len();
            let (status, content_type, reply) = post(&app, body).await;
            assert_eq!(status, 200, "{verdict}");
            assert!(content_type.starts_with("text/xml"), "{verdict}: {content_type}");
            assert_eq!(xml::parse(reply.as_bytes()).unwrap().get("return_code"), Some("FAIL"), "{verdict}: {reply}");
            let log = refund_log(&app);
            assert_eq!(log.len(), before + 1, "{verdict}: every delivery is logged");
            assert_eq!(log[0].verdict, verdict);
        }
        assert_eq!(refund_row(&app, &out_refund_no).state, RefundState::Processing);
        let order = order_row(&app, &no);
        assert_eq!((order.refunded.get(), order.refund_reserved.get()), (0, 1200));

        // A genuine notify about a refund we never made: SUCCESS (retrying cannot help) and an
        // exception for staff, shown on the order.
        let unknown = forged(DEMO_API_KEY, DEMO_MCH_ID, &root(&no, "R-UNKNOWN-1", "100", "SUCCESS"));
        let (status, _, reply) = post(&app, unknown).await;
        assert_eq!((status, reply.as_str()), (200, SUCCESS_REPLY));
        assert_eq!(refund_log(&app)[0].verdict, "unknown_refund");
        let open = exceptions::for_order(&mut app.db_handle().conn().unwrap(), &no).unwrap();
        assert_eq!(open.iter().map(|x| x.kind.as_str()).collect::<Vec<_>>(), ["unknown_refund"]);
        // One whose amount contradicts ours: not applied, raised.
        let mismatch = forged(DEMO_API_KEY, DEMO_MCH_ID, &root(&no, &out_refund_no, "1100", "SUCCESS"));
        assert_eq!(post(&app, mismatch).await.2, SUCCESS_REPLY);
        assert_eq!(refund_log(&app)[0].verdict, "refund_mismatch");
        assert_eq!(refund_row(&app, &out_refund_no).state, RefundState::Processing);
        assert_eq!(order_row(&app, &no).refunded.get(), 0);
        app
    })
    .await;
}

#[tokio::test]
async fn change_raises_an_exception_and_refundclose_gives_the_amount_back() {
    on_every_backend(|app| async move {
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;

        let no = app.paid_order("RN-3", 900).await;
        let out_refund_no = refund(&app, &admin, &no, "9.00").await;
        app.control(&format!("refunds/{out_refund_no}/settle"), json!({ "status": "CHANGE" })).await;
        let log = wait_for_refund_log(&app, 1).await;
        assert_eq!(log[0].verdict, "refund_change");
        assert_eq!(refund_row(&app, &out_refund_no).state, RefundState::Change);
        let order = order_row(&app, &no);
        assert_eq!((order.refunded.get(), order.refund_reserved.get()), (0, 900), "the money is still owed");
        let raised = exceptions::for_order(&mut app.db_handle().conn().unwrap(), &no).unwrap();
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].kind, "refund_change");
        assert!(raised[0].resolved_at.is_none());
        let (_, html) = get(&app, &admin, &format!("/admin/orders/{no}")).await;
        assert!(html.contains("退款：退款异常") && html.contains("data-kind=\"refund_change\""));
        let (_, html) = get(&app, &admin, "/admin/exceptions").await;
        assert!(html.contains("退款异常") && html.contains(&no));

        let no = app.paid_order("RN-4", 600).await;
        let out_refund_no = refund(&app, &admin, &no, "6.00").await;
        app.control(&format!("refunds/{out_refund_no}/settle"), json!({ "status": "REFUNDCLOSE" })).await;
        let log = wait_for_refund_log(&app, 2).await;
        assert_eq!(log[0].verdict, "refund_closed");
        assert_eq!(refund_row(&app, &out_refund_no).state, RefundState::Closed);
        let order = order_row(&app, &no);
        assert_eq!((order.refunded.get(), order.refund_reserved.get()), (0, 0), "the amount may be refunded again");
        let (_, html) = get(&app, &admin, &format!("/admin/orders/{no}")).await;
        assert!(html.contains("name=\"out_refund_no\""), "the refund form is back");
        app
    })
    .await;
}

/// Refused deliveries kept per client IP per minute (`payments::refused::PER_IP_PER_MINUTE`).
const LIMIT: usize = 20;

#[tokio::test]
async fn refused_refund_notifies_are_truncated_capped_and_counted() {
    on_every_backend(|app| async move {
        // 60 KiB, under the route's limit, that cannot be decrypted: refused, the start kept.
        let mut big = forged("00000000000000000000000000000000", DEMO_MCH_ID, &root("WC1", "R1", "100", "SUCCESS"));
        big.insert_str(big.len() - "</xml>".len(), &format!("<pad>{}</pad>", "x".repeat(60 * 1024)));
        let (status, _, reply) = post(&app, big.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(xml::parse(reply.as_bytes()).unwrap().get("return_code"), Some("FAIL"), "{reply}");
        let log = refund_log(&app);
        assert_eq!(log.len(), 1);
        assert!(log[0].raw_body.len() <= 4096 && big.starts_with(&log[0].raw_body), "{} kept", log[0].raw_body.len());
        assert!(log[0].reason.contains(&big.len().to_string()), "{}", log[0].reason);

        // A flood from one client: at most the limit is kept (one is used above), the rest counted.
        assert_eq!(LIMIT, wechat_checkout::payments::refused::PER_IP_PER_MINUTE as usize);
        let sent = 3 * LIMIT;
        let started = std::time::Instant::now();
        let replies = futures::future::join_all((0..sent).map(|_| post(&app, "not xml at all"))).await;
        assert!(replies.iter().all(|(s, _, r)| *s == 200 && r.contains("XML格式错误")));
        let stored = refund_log(&app).len();
        let windows = started.elapsed().as_secs() as usize / 60 + 1;
        assert!(stored >= LIMIT && stored <= LIMIT * windows, "{stored} of {} stored", sent + 1);
        let health = app.get_json("/healthz").await;
        assert_eq!(health["refused_notifies"]["dropped"].as_u64(), Some((sent + 1 - stored) as u64), "{health}");
        app
    })
    .await;
}
