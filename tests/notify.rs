//! `POST /wechat/notify` over real HTTP: 50 concurrent identical notifies make one transition
//! and 50 logged SUCCESS replies; every bad notify changes nothing, says why, and is logged apart
//! from the order it names, truncated, at most so many per client a minute (the rest counted),
//! and never ahead of a genuine notify; no body makes the handler panic. On SQLite, and on
//! PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use common::admin::{get, sign_in};
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, on_every_backend, on_every_backend_with, order_row};
use common::{demo_merchant, notify_fields};
use wechat_checkout::db::{events, exceptions, notify_log};
use wechat_checkout::wxpay::notify::{SUCCESS_REPLY, fail_reply};
use wechat_checkout::wxpay::{ApiKey, Fields, Merchant, SignType};

fn signed(mut f: Fields, m: &Merchant) -> String {
    f.insert("sign", m.sign(&f));
    f.to_xml()
}

async fn post(app: &TestApp, body: impl Into<reqwest::Body>) -> (u16, String) {
    let res =
        app.http.post(app.url("/wechat/notify")).header("Content-Type", "text/xml").body(body).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The app configured for HMAC-SHA256, as a merchant who chose it.
fn hmac_configured(f: rocket::figment::Figment, _: &std::path::Path) -> rocket::figment::Figment {
    f.merge(("wechat_sign_type", "HMAC-SHA256"))
}

/// A notify for `no` signed with a key that is not ours: refused as a bad signature.
fn forged_for(no: &str, transaction_id: &str, attach: &str) -> String {
    let mut f = notify_fields(no, 1990, transaction_id);
    f.insert("attach", attach);
    let mut other = demo_merchant(SignType::Md5);
    other.key = ApiKey::new("0123456789abcdef0123456789abcdef").unwrap();
    signed(f, &other)
}

/// The refused deliveries the app stored (they name no order).
fn stored_refused(app: &TestApp) -> Vec<wechat_checkout::domain::records::NotifyRecord> {
    let all = notify_log::page(&mut app.db_handle().conn().unwrap(), None, None, None, 10_000).unwrap();
    all.into_iter().filter(|r| r.verdict == "bad_signature").collect()
}

#[tokio::test]
async fn fifty_concurrent_identical_notifies_make_one_transition() {
    on_every_backend_with(hmac_configured, |app, _| async move {
        let (no, _) = app.paying_order("N-CONC-1", 1990).await;
        // HMAC-signed, without sign_type (as WeChat sends it): the configured algorithm applies.
        let body =
            signed(notify_fields(&no, 1990, "4200000000202611270000000001"), &demo_merchant(SignType::HmacSha256));
        // Fifty requests in flight at once, not one after another.
        let replies = futures::future::join_all((0..50).map(|_| post(&app, body.clone()))).await;
        for (status, reply) in &replies {
            assert_eq!(*status, 200);
            assert_eq!(reply, SUCCESS_REPLY);
        }
        assert_eq!(app.order(&no).await["state"], "PAID");
        let mut conn = app.db_handle().conn().unwrap();
        let log = notify_log::for_order(&mut conn, &no).unwrap();
        assert_eq!(log.len(), 50);
        assert_eq!(log.iter().filter(|r| r.verdict == "paid").count(), 1);
        assert_eq!(log.iter().filter(|r| r.verdict == "duplicate").count(), 49);
        let timeline = events::for_order(&mut conn, &no).unwrap();
        assert_eq!(timeline.iter().filter(|e| e.kind == "payment_confirmed").count(), 1);
        app
    })
    .await;
}

/// The sign-type downgrade: with HMAC-SHA256 configured, a notify signed with MD5 (a valid MD5
/// of its fields with our key), with or without a sign_type saying so, is a bad signature and
/// changes nothing; the same notify signed with HMAC-SHA256 then pays the order.
#[tokio::test]
async fn an_md5_notify_is_refused_when_hmac_is_configured() {
    on_every_backend_with(hmac_configured, |app, _| async move {
        let (no, _) = app.paying_order("N-DOWN-1", 1990).await;
        let db = app.db_handle();
        let before = order_row(&db, &no);
        let timeline = events::for_order(&mut db.conn().unwrap(), &no).unwrap().len();
        let fields = notify_fields(&no, 1990, "4200000000202611270000000011");
        let mut declared = fields.clone();
        declared.insert("sign_type", "MD5");
        for body in
            [signed(fields.clone(), &demo_merchant(SignType::Md5)), signed(declared, &demo_merchant(SignType::Md5))]
        {
            let (status, reply) = post(&app, body).await;
            assert_eq!(status, 200);
            assert!(reply.contains("<return_code>FAIL</return_code>") && reply.contains("签名错误"), "{reply}");
        }
        assert_eq!(order_row(&db, &no), before, "the order is unchanged");
        assert_eq!(events::for_order(&mut db.conn().unwrap(), &no).unwrap().len(), timeline);

        let (_, reply) = post(&app, signed(fields, &demo_merchant(SignType::HmacSha256))).await;
        assert_eq!(reply, SUCCESS_REPLY);
        assert_eq!(order_row(&db, &no).state.as_str(), "PAID");
        app
    })
    .await;
}

#[tokio::test]
async fn bad_notifies_change_nothing_and_say_why() {
    on_every_backend(|app| async move {
        let (no, _) = app.paying_order("N-BAD-1", 1990).await;
        let good = notify_fields(&no, 1990, "4200000000202611270000000002");

        // A forged signature.
        let mut forged = good.clone();
        forged.insert("sign", "9A0A8659F005D6984697E2CA0A9CF3B7");
        let (status, reply) = post(&app, forged.to_xml()).await;
        assert_eq!(status, 200);
        assert!(reply.contains("FAIL") && reply.contains("签名错误"), "{reply}");

        // Signed with another key.
        let mut other = demo_merchant(SignType::Md5);
        other.key = ApiKey::new("0123456789abcdef0123456789abcdef").unwrap();
        let (_, reply) = post(&app, signed(good.clone(), &other)).await;
        assert!(reply.contains("FAIL"), "{reply}");

        // A foreign merchant, correctly signed with our key.
        let mut foreign = good.clone();
        foreign.insert("mch_id", "99999999");
        let (_, reply) = post(&app, signed(foreign, &demo_merchant(SignType::Md5))).await;
        assert!(reply.contains("FAIL") && reply.contains("商户号"), "{reply}");

        // Malformed and hostile XML, an empty body, an oversized body, non-UTF-8.
        for body in [
            b"<xml><return_code>SUCCESS".to_vec(),
            b"<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><a>&x;</a></xml>".to_vec(),
            Vec::new(),
            vec![b'<'; 100_000],
            b"<xml><return_code>\xff\xfe</return_code></xml>".to_vec(),
            "{\"json\": true}".as_bytes().to_vec(),
        ] {
            let (status, reply) = post(&app, body).await;
            assert_eq!(status, 200);
            assert!(reply.starts_with("<xml><return_code>FAIL</return_code>"), "{reply}");
        }
        assert_eq!(app.order(&no).await["state"], "PAYING", "nothing above changed the order");

        // A genuine notify with the wrong amount: no payment, an exception, SUCCESS (retrying cannot help).
        let (_, reply) =
            post(&app, signed(notify_fields(&no, 1, "4200000000202611270000000003"), &demo_merchant(SignType::Md5)))
                .await;
        assert_eq!(reply, SUCCESS_REPLY);
        assert_eq!(app.order(&no).await["state"], "PAYING");

        // A genuine notify for an order we do not have.
        let (_, reply) = post(
            &app,
            signed(notify_fields("WC_UNKNOWN_1", 100, "4200000000202611270000000004"), &demo_merchant(SignType::Md5)),
        )
        .await;
        assert_eq!(reply, SUCCESS_REPLY);

        let mut conn = app.db_handle().conn().unwrap();
        // The order's own list holds only what WeChat verifiably said about it; the refused
        // deliveries are in the notify log, naming no order.
        let log = notify_log::for_order(&mut conn, &no).unwrap();
        let verdicts: Vec<&str> = log.iter().map(|r| r.verdict.as_str()).collect();
        assert_eq!(verdicts, ["amount_mismatch"]);
        let all = notify_log::page(&mut conn, None, Some("payment"), None, 100).unwrap();
        let refused: Vec<&str> = all.iter().filter(|r| r.out_trade_no.is_none()).map(|r| r.verdict.as_str()).collect();
        assert!(refused.contains(&"bad_signature") && refused.contains(&"foreign_merchant"), "{refused:?}");
        let raised = exceptions::for_order(&mut conn, &no).unwrap();
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].kind, "amount_mismatch");
        assert!(notify_log::count(&mut conn).unwrap() >= 11, "every delivery is logged");
        app
    })
    .await;
}

#[tokio::test]
async fn a_payment_after_close_is_recorded_and_flagged() {
    on_every_backend(|app| async move {
        let (no, _) = app.paying_order("N-LATE-1", 300).await;
        // Close it locally the way the expirer will: through the shared transition.
        let database = app.db_handle();
        let (closed_no, outbox) = (no.clone(), app.outbox.clone());
        database
            .write(move |c| {
                use wechat_checkout::payments::apply::{Change, apply_change};
                let source = wechat_checkout::domain::TimelineSource::Close;
                apply_change(c, &closed_no, Change::Closed, source, serde_json::json!({}), &outbox)
            })
            .await
            .unwrap();
        assert_eq!(app.order(&no).await["state"], "CLOSED");
        let (_, reply) =
            post(&app, signed(notify_fields(&no, 300, "4200000000202611270000000005"), &demo_merchant(SignType::Md5)))
                .await;
        assert_eq!(reply, SUCCESS_REPLY);
        let order = app.order(&no).await;
        assert_eq!(order["state"], "PAID");
        assert_eq!(order["paid_after_close"], true);
        let mut conn = database.conn().unwrap();
        assert_eq!(exceptions::for_order(&mut conn, &no).unwrap()[0].kind, "paid_after_close");
        app
    })
    .await;
}

#[tokio::test]
async fn no_body_makes_the_handler_fail_to_answer() {
    use rand::{RngExt, SeedableRng};
    let app = TestApp::sqlite().await;
    let (no, _) = app.paying_order("N-FUZZ-1", 100).await;
    let valid =
        signed(notify_fields(&no, 100, "4200000000202611270000000009"), &demo_merchant(SignType::Md5)).into_bytes();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    for i in 0..400 {
        let body: Vec<u8> = match i % 4 {
            0 => (0..rng.random_range(0..300)).map(|_| rng.random()).collect(),
            1 => {
                // Valid notify with a few bytes flipped, inserted or removed.
                let mut b = valid.clone();
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..b.len());
                    match rng.random_range(0..3) {
                        0 => b[at] = rng.random(),
                        1 => b.insert(at, *b"<>&;/![]x\0".get(rng.random_range(0..10)).unwrap()),
                        _ => {
                            b.remove(at);
                        }
                    }
                }
                b
            }
            2 => valid[..rng.random_range(0..valid.len())].to_vec(),
            _ => {
                let mut b = b"<xml>".to_vec();
                for _ in 0..rng.random_range(0..40) {
                    b.extend_from_slice(
                        ["<a>", "</a>", "<![CDATA[", "]]>", "&amp;", "&#x4E2D;", "<!DOCTYPE", "<?x?>", "中"]
                            [rng.random_range(0..9)]
                        .as_bytes(),
                    );
                }
                b
            }
        };
        let (status, reply) = post(&app, body).await;
        assert_eq!(status, 200);
        assert!(reply.starts_with("<xml><return_code>"), "{reply}");
    }
    // The genuine notify still works afterwards: nothing got stuck.
    let (_, reply) = post(&app, valid).await;
    assert_eq!(reply, SUCCESS_REPLY);
    assert_eq!(app.order(&no).await["state"], "PAID");
    app.stop().await;
}

/// Refused deliveries kept per client IP per minute (`payments::refused::PER_IP_PER_MINUTE`).
const LIMIT: usize = 20;
/// The most of a refused body that is kept.
const KEPT_AT_MOST: usize = 4096;

/// The app's count of refused deliveries it dropped instead of storing, from `/healthz`.
async fn dropped(app: &TestApp) -> u64 {
    let health = app.get_json("/healthz").await;
    health["refused_notifies"]["dropped"].as_u64().unwrap_or_else(|| panic!("no drop counter in {health}"))
}

#[tokio::test]
async fn a_refused_notify_naming_a_real_order_stays_off_its_timeline() {
    on_every_backend(|app| async move {
        let (no, _) = app.paying_order("N-FORGE-1", 1990).await;
        let (status, reply) = post(&app, forged_for(&no, "4200000000202611270000000077", "FORGED-MARK-1")).await;
        assert_eq!((status, reply), (200, fail_reply("签名错误")), "the reply WeChat gets is unchanged");

        let mut conn = app.db_handle().conn().unwrap();
        assert!(notify_log::for_order(&mut conn, &no).unwrap().is_empty(), "a forged delivery is not the order's");
        let stored = stored_refused(&app);
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].out_trade_no.as_deref(), stored[0].transaction_id.as_deref()), (None, None));
        assert!(stored[0].raw_body.contains("FORGED-MARK-1"));

        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let (status, html) = get(&app, &admin, &format!("/admin/orders/{no}")).await;
        assert_eq!(status, 200);
        assert!(!html.contains("FORGED-MARK-1"), "the order page shows no forged delivery");
        let (_, html) = get(&app, &admin, "/admin/notifies").await;
        assert!(html.contains("FORGED-MARK-1"), "the notify log still shows the refused body");

        // A genuine notify still lands on the order's timeline.
        let genuine = signed(notify_fields(&no, 1990, "4200000000202611270000000078"), &demo_merchant(SignType::Md5));
        assert_eq!(post(&app, genuine).await.1, SUCCESS_REPLY);
        let log = notify_log::for_order(&mut conn, &no).unwrap();
        assert_eq!(log.iter().map(|r| r.verdict.as_str()).collect::<Vec<_>>(), ["paid"]);
        app
    })
    .await;
}

#[tokio::test]
async fn a_large_refused_body_is_stored_truncated() {
    on_every_backend(|app| async move {
        let body = forged_for("WC_NOT_OURS_1", "4200000000202611270000000079", &"x".repeat(60 * 1024));
        assert!(body.len() > 60 * 1024);
        let (_, reply) = post(&app, body.clone()).await;
        assert_eq!(reply, fail_reply("签名错误"));
        let stored = stored_refused(&app);
        assert_eq!(stored.len(), 1);
        let kept = &stored[0].raw_body;
        assert!(kept.len() <= KEPT_AT_MOST, "{} bytes kept", kept.len());
        assert!(!kept.is_empty() && body.starts_with(kept.as_str()), "the start of the body is kept");
        assert!(
            stored[0].reason.contains(&body.len().to_string()),
            "the original length is noted: {}",
            stored[0].reason
        );
        app
    })
    .await;
}

#[tokio::test]
async fn a_flood_of_refused_notifies_from_one_ip_is_capped_and_counted() {
    on_every_backend(|app| async move {
        assert_eq!(LIMIT, wechat_checkout::payments::refused::PER_IP_PER_MINUTE as usize);
        assert_eq!(KEPT_AT_MOST, wechat_checkout::payments::refused::KEPT_BODY_BYTES);
        let sent = 3 * LIMIT;
        let started = std::time::Instant::now();
        let bodies: Vec<String> =
            (0..sent).map(|i| forged_for("WC_FLOOD_1", "4200000000202611270000000080", &format!("F{i}"))).collect();
        let replies = futures::future::join_all(bodies.into_iter().map(|b| post(&app, b))).await;
        // Every sender gets today's answer, stored or not.
        assert!(replies.iter().all(|(s, r)| *s == 200 && *r == fail_reply("签名错误")));
        let stored = stored_refused(&app).len();
        // The window is a minute from the first delivery: a flood that took longer may span more.
        let windows = started.elapsed().as_secs() as usize / 60 + 1;
        assert!(stored >= LIMIT && stored <= LIMIT * windows, "{stored} of {sent} stored");
        assert_eq!(dropped(&app).await, (sent - stored) as u64, "every refused delivery not stored is counted");
        app
    })
    .await;
}

#[tokio::test]
async fn a_genuine_notify_is_applied_while_a_refused_flood_is_in_flight() {
    on_every_backend(|app| async move {
        let (no, _) = app.paying_order("N-FLOOD-2", 1990).await;
        let genuine = signed(notify_fields(&no, 1990, "4200000000202611270000000081"), &demo_merchant(SignType::Md5));
        let flood = futures::future::join_all(
            (0..300).map(|i| post(&app, forged_for(&no, "4200000000202611270000000082", &format!("F{i}")))),
        );
        let (flood, (status, reply)) = tokio::join!(flood, post(&app, genuine));
        assert_eq!((status, reply.as_str()), (200, SUCCESS_REPLY));
        assert!(flood.iter().all(|(s, r)| *s == 200 && *r == fail_reply("签名错误")));
        assert_eq!(app.order(&no).await["state"], "PAID");
        let log = notify_log::for_order(&mut app.db_handle().conn().unwrap(), &no).unwrap();
        assert_eq!(log.iter().map(|r| r.verdict.as_str()).collect::<Vec<_>>(), ["paid"]);
        app
    })
    .await;
}
