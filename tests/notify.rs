//! `POST /wechat/notify` over real HTTP: 50 concurrent identical notifies make one transition
//! and 50 logged SUCCESS replies; every bad notify changes nothing, says why, and is logged; no
//! body makes the handler panic. On SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use common::app::{TestApp, on_every_backend, on_every_backend_with, order_row};
use common::demo_merchant;
use wechat_checkout::db::{events, exceptions, notify_log};
use wechat_checkout::simulator::{DEMO_APPID, DEMO_MCH_ID};
use wechat_checkout::wxpay::notify::SUCCESS_REPLY;
use wechat_checkout::wxpay::{ApiKey, Fields, Merchant, SignType};

fn notify_fields(out_trade_no: &str, total_fee: i64, transaction_id: &str) -> Fields {
    [
        ("appid", DEMO_APPID),
        ("mch_id", DEMO_MCH_ID),
        ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
        ("result_code", "SUCCESS"),
        ("return_code", "SUCCESS"),
        ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
        ("is_subscribe", "N"),
        ("trade_type", "JSAPI"),
        ("bank_type", "OTHERS"),
        ("total_fee", &total_fee.to_string()),
        ("fee_type", "CNY"),
        ("cash_fee", &total_fee.to_string()),
        ("transaction_id", transaction_id),
        ("out_trade_no", out_trade_no),
        ("time_end", "20261127101010"),
    ]
    .into_iter()
    .collect()
}

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
        let log = notify_log::for_order(&mut conn, &no).unwrap();
        let verdicts: Vec<&str> = log.iter().map(|r| r.verdict.as_str()).collect();
        assert!(
            verdicts.contains(&"bad_signature")
                && verdicts.contains(&"foreign_merchant")
                && verdicts.contains(&"amount_mismatch"),
            "{verdicts:?}"
        );
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
        let closed_no = no.clone();
        database
            .write(move |c| {
                use wechat_checkout::payments::apply::{Change, apply_change};
                let source = wechat_checkout::domain::TimelineSource::Close;
                apply_change(c, &closed_no, Change::Closed, source, serde_json::json!({}))
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
