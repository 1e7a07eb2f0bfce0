//! Alerts over real HTTP (`ALERT_WEBHOOK_URL`): a real app raises exceptions from signed notifies,
//! a webhook is given up on a failing merchant endpoint, reconciliation runs are stored, and the
//! `alerts` job of one or two instances posts them to a local raw-HTTP receiver, in the 企业微信
//! robot format and in JSON. Each source is posted once, at most `ALERT_MAX_PER_HOUR` a rolling
//! hour with a summary for the rest, and a failing receiver is retried, every attempt counted.
//! Time passes by moving the stored times back, never by waiting. On SQLite, and on PostgreSQL
//! when TEST_DATABASE_URL is set.

mod common;

use chrono::{Duration, NaiveDateTime};
use common::app::{TestApp, TestDb, eventually, on_every_database};
use common::merchant_endpoint::{Receiver, answering, receiver};
use common::{demo_merchant, notify_fields};
use diesel::prelude::*;
use rocket::figment::Figment;
use serde_json::{Value, json};
use wechat_checkout::db::alerts::Alert;
use wechat_checkout::db::schema::alerts as alerts_t;
use wechat_checkout::db::{self, Db, exceptions, reconciliation, webhooks};
use wechat_checkout::domain::ExceptionKind;
use wechat_checkout::domain::reconciliation::{RunFigures, RunState};
use wechat_checkout::domain::webhook::WebhookState;
use wechat_checkout::jobs::{self, JobContext, JobReport};
use wechat_checkout::wxpay::SignType;

const WECOM_OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;

/// Alerts to `url` in `format`, at most `max` an hour. The app's own jobs stay off: the test
/// runs each pass itself.
fn alert_settings(url: String, format: &'static str, max: u32) -> impl Fn(Figment) -> Figment + Clone {
    move |f: Figment| {
        f.merge(("alert_webhook_url", url.clone())).merge(("alert_format", format)).merge(("alert_max_per_hour", max))
    }
}

/// One pass of the alerts job of `ctx`.
async fn pass(ctx: &JobContext) -> JobReport {
    jobs::run_once(ctx, "alerts").await.expect("an alerts pass")
}

fn stored(app: &TestApp) -> Vec<Alert> {
    db::alerts::all(&mut app.db_handle().conn().unwrap(), 1000).unwrap()
}

/// Moves the given stored time of every alert back by `by`: the clock going forward.
fn age(app: &TestApp, by: Duration) {
    let mut c = app.db_handle().conn().unwrap();
    for a in stored(app) {
        let row = alerts_t::table.filter(alerts_t::id.eq(a.id));
        diesel::update(row)
            .set((
                alerts_t::sent_at.eq(a.sent_at.map(|t| t - by)),
                alerts_t::next_attempt_at.eq(a.next_attempt_at.map(|t| t - by)),
            ))
            .execute(&mut c)
            .unwrap();
    }
}

/// Raises an exception the way a use case does (for sources whose path is not under test).
fn raise(database: &Db, kind: ExceptionKind, no: &str, fen: i64) {
    let exception = exceptions::NewException {
        kind,
        dedupe_key: format!("{kind}:{no}"),
        out_trade_no: Some(no.to_owned()),
        detail: json!({ "expected_fen": fen, "reported_fen": 1, "transaction_id": format!("4200{no}") }),
    };
    assert!(database.write_blocking(|c| exceptions::raise(c, &exception)).unwrap());
}

async fn notify(app: &TestApp, no: &str, fen: i64, transaction_id: &str) {
    let merchant = demo_merchant(SignType::Md5);
    let mut fields = notify_fields(no, fen, transaction_id);
    fields.insert("sign", merchant.sign(&fields));
    let request = app.http.post(app.url("/wechat/notify")).header("Content-Type", "text/xml");
    let res = request.body(fields.to_xml()).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

fn bodies(r: &Receiver) -> Vec<Value> {
    r.received().iter().map(|r| r.json()).collect()
}

fn now() -> NaiveDateTime {
    db::now()
}

// ---- The scenarios ------------------------------------------------------------------------

#[tokio::test]
async fn exceptions_are_told_once_to_a_wecom_robot_by_two_instances() {
    on_every_database("wecom", |db, dir| async move {
        let robot = answering("200 OK", "", WECOM_OK).await;
        let tweak = alert_settings(robot.url("/cgi-bin/webhook/send?key=robot-secret"), "wecom", 30);
        let app = TestApp::start(db, dir, tweak.clone()).await;
        let (a, b) = (app.job_context("alerts-a", tweak.clone(), |g| g), app.job_context("alerts-b", tweak, |g| g));
        let off = app.job_context("no-alerts", |f| f, |g| g);
        assert!(pass(&off).await.note.contains("alerts are off"));
        pass(&a).await; // the first pass with alerts on starts the cursor: nothing older is told

        // An amount mismatch and a payment after close, both from signed notifies.
        let (mismatch, _) = app.paying_order("AL-MISMATCH", 1990).await;
        notify(&app, &mismatch, 1, "4200000000202612020000000001").await;
        let (late, _) = app.paying_order("AL-LATE", 300).await;
        let (closing, outbox) = (late.clone(), app.outbox.clone());
        app.db_handle()
            .write(move |c| {
                use wechat_checkout::payments::apply::{Change, apply_change};
                let source = wechat_checkout::domain::TimelineSource::Close;
                apply_change(c, &closing, Change::Closed, source, json!({}), &outbox)
            })
            .await
            .unwrap();
        notify(&app, &late, 300, "4200000000202612020000000002").await;

        // Two instances pass at once, then again: each exception is posted once.
        let (ra, rb) = tokio::join!(pass(&a), pass(&b));
        assert_eq!(ra.handled + rb.handled, 2, "{ra} / {rb}");
        pass(&a).await;
        pass(&b).await;
        let posts = bodies(&robot);
        assert_eq!(posts.len(), 2, "{posts:#?}");
        assert!(robot.received().iter().all(|r| r.path == "/cgi-bin/webhook/send?key=robot-secret"));
        let content = |no: &str| -> String {
            let post = posts.iter().find(|p| p["markdown"]["content"].as_str().unwrap().contains(no)).unwrap();
            assert_eq!(post["msgtype"], "markdown");
            post["markdown"]["content"].as_str().unwrap().to_owned()
        };
        let text = content(&mismatch);
        assert!(text.starts_with(&format!("**【支付异常】金额不符：{mismatch}**")), "{text}");
        assert!(text.contains("订单金额：19.90 元") && text.contains("微信报告金额：0.01 元"), "{text}");
        assert!(text.contains(&format!("[在后台查看]({}/admin/orders/{mismatch})", app.base_url)), "{text}");
        let text = content(&late);
        assert!(text.contains("关单后支付") && text.contains("支付金额：3.00 元"), "{text}");
        let rows = stored(&app);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.state == "SENT" && r.attempts == 1 && r.sent_at.is_some()), "{rows:#?}");
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_differing_or_failed_reconciliation_and_a_given_up_webhook_are_posted_as_json() {
    on_every_database("json", |db, dir| async move {
        let alerts = receiver(0, std::time::Duration::ZERO).await;
        let merchant = answering("500 Internal Server Error", "", "down").await;
        let alerting = alert_settings(alerts.url("/alerts"), "json", 30);
        let hooks = merchant.url("/hooks");
        let tweak = move |f: Figment| {
            alerting(f)
                .merge(("webhook_secret", "whsec-test-0123456789abcdefghij"))
                .merge(("webhook_url", hooks.clone()))
                .merge(("webhook_schedule", "10ms"))
                .merge(("webhook_allow_private", "on"))
        };
        let app = TestApp::start(db, dir, tweak.clone()).await;
        let ctx = app.job_context("alerts-a", tweak, |g| g);
        pass(&ctx).await;
        let database = app.db_handle();

        // The merchant endpoint fails both attempts of the schedule: the event is given up.
        let no = app.paid_order("AL-HOOK", 1990).await;
        let event = webhooks::for_order(&mut database.conn().unwrap(), &no).unwrap()[0].id;
        for _ in 0..100 {
            jobs::run_once(&ctx, "webhooks").await.unwrap();
            let state = webhooks::find(&mut database.conn().unwrap(), event).unwrap().unwrap().state;
            if state == WebhookState::Failed {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }

        // A run that found two differences, and one whose download failed.
        let t = now();
        database
            .write_blocking(|c| -> db::DbResult<()> {
                reconciliation::ensure_run(c, "2026-12-01")?;
                reconciliation::claim_run(c, "2026-12-01", "t", t, t + Duration::minutes(1), true)?;
                for key in ["WC-DIFF-1", "WC-DIFF-2"] {
                    reconciliation::record_finding(
                        c,
                        &reconciliation::NewFinding {
                            bill_date: "2026-12-01".into(),
                            kind: "amount_differs",
                            item_key: key.into(),
                            out_trade_no: Some(key.into()),
                            detail: "{}".into(),
                            created_at: t,
                        },
                    )?;
                }
                let figures = RunFigures {
                    bill_paid_count: 3,
                    bill_paid_fen: 5970,
                    local_paid_count: 3,
                    local_paid_fen: 5971,
                    matched: 1,
                    findings: 2,
                    ..RunFigures::default()
                };
                reconciliation::finish_run(c, "2026-12-01", "t", RunState::Done, &figures, t)?;
                reconciliation::ensure_run(c, "2026-12-02")?;
                reconciliation::claim_run(c, "2026-12-02", "t", t, t + Duration::minutes(1), true)?;
                let next = t + Duration::minutes(30);
                reconciliation::defer_run(
                    c,
                    "2026-12-02",
                    "t",
                    RunState::Failed,
                    next,
                    Some("download: timed out"),
                    t,
                )?;
                Ok(())
            })
            .unwrap();

        let report = pass(&ctx).await;
        assert_eq!((report.handled, report.failed), (3, 0), "{report}");
        pass(&ctx).await;
        let posts = bodies(&alerts);
        assert_eq!(posts.len(), 3, "{posts:#?}");
        let by_kind =
            |kind: &str| posts.iter().find(|p| p["kind"] == kind).unwrap_or_else(|| panic!("{kind}: {posts:#?}"));

        let differs = by_kind("reconciliation.differs");
        assert_eq!(differs["key"], "reconciliation:2026-12-01:differs:2");
        assert_eq!(differs["title"], "【对账差异】2026-12-01：2 处差异");
        let text = differs["text"].as_str().unwrap();
        assert!(text.contains("微信账单收款：3 笔，59.70 元") && text.contains("本地收款：3 笔，59.71 元"), "{text}");
        assert!(text.contains("WC-DIFF-1") && text.contains("WC-DIFF-2"), "{text}");
        assert_eq!(differs["links"]["console"], format!("{}/admin/reconciliation/2026-12-01", app.base_url));
        assert!(differs["occurred_at"].as_str().unwrap().ends_with("+08:00"));

        let failed = by_kind("reconciliation.failed");
        assert_eq!(failed["key"], "reconciliation:2026-12-02:failed");
        assert!(failed["text"].as_str().unwrap().contains("download: timed out"), "{failed}");

        let hook = by_kind("webhook.failed");
        assert!(hook["key"].as_str().unwrap().starts_with(&format!("webhook:{event}:")), "{hook}");
        assert_eq!(hook["title"], format!("【商户通知失败】{no}"));
        let text = hook["text"].as_str().unwrap();
        assert!(text.contains("已尝试：2 次") && text.contains("HTTP 500"), "{text}");
        assert!(!text.contains(&merchant.base_url), "the merchant's URL is not told: {text}");
        assert_eq!(hook["links"]["console"], format!("{}/admin/webhooks?order={no}", app.base_url));
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn over_the_hourly_limit_the_rest_is_held_and_summed_up() {
    on_every_database("limit", |db, dir| async move {
        let alerts = receiver(0, std::time::Duration::ZERO).await;
        let tweak = alert_settings(alerts.url("/alerts"), "json", 3);
        let app = TestApp::start(db, dir, tweak.clone()).await;
        let (a, b) = (app.job_context("alerts-a", tweak.clone(), |g| g), app.job_context("alerts-b", tweak, |g| g));
        pass(&a).await;
        let database = app.db_handle();
        for i in 1..=5 {
            raise(&database, ExceptionKind::AmountMismatch, &format!("WC-LIMIT-{i}"), 100 * i);
        }
        // Five due and room for three: two alone, the last post a summary of the other three.
        let (ra, rb) = tokio::join!(pass(&a), pass(&b));
        assert_eq!(ra.handled + rb.handled, 3, "{ra} / {rb}");
        let posts = bodies(&alerts);
        assert_eq!(posts.len(), 3, "{posts:#?}");
        let summary = posts.iter().find(|p| p["kind"] == "summary").expect("a summary");
        assert_eq!(summary["title"], "另有 3 条告警（超过每小时上限，合并为一条）");
        for i in 3..=5 {
            assert!(summary["text"].as_str().unwrap().contains(&format!("WC-LIMIT-{i}")), "{summary}");
        }

        // The hour is full: new alerts wait, whoever passes.
        for i in 6..=9 {
            raise(&database, ExceptionKind::PaidAfterClose, &format!("WC-LIMIT-{i}"), 100 * i);
        }
        pass(&a).await;
        pass(&b).await;
        assert_eq!(bodies(&alerts).len(), 3);
        let rows = stored(&app);
        assert_eq!(rows.iter().filter(|r| r.state == "PENDING").count(), 4, "{rows:#?}");
        assert_eq!(rows.iter().filter(|r| r.state == "SUMMARIZED").count(), 3);

        // An hour later: two alone and a summary of the other two; then nothing is left.
        age(&app, Duration::minutes(61));
        pass(&b).await;
        pass(&a).await;
        let posts = bodies(&alerts);
        assert_eq!(posts.len(), 6, "{posts:#?}");
        let summaries: Vec<&Value> = posts[3..].iter().filter(|p| p["kind"] == "summary").collect();
        assert_eq!(summaries.len(), 1, "{posts:#?}");
        assert_eq!(summaries[0]["title"], "另有 2 条告警（超过每小时上限，合并为一条）");
        let rows = stored(&app);
        assert!(rows.iter().all(|r| r.state == "SENT" || r.state == "SUMMARIZED"), "{rows:#?}");
        let summarized: Vec<&Alert> = rows.iter().filter(|r| r.state == "SUMMARIZED").collect();
        assert_eq!(summarized.len(), 5);
        assert!(summarized.iter().all(|r| r.summarized_by.as_deref().is_some_and(|k| k.starts_with("summary:"))));
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_failing_receiver_is_retried_every_attempt_counted_then_given_up() {
    on_every_database("retry", |db, dir| async move {
        let alerts = receiver(3, std::time::Duration::ZERO).await;
        let tweak = alert_settings(alerts.url("/alerts?token=do-not-log"), "json", 30);
        let app = TestApp::start(db, dir, tweak.clone()).await;
        let ctx = app.job_context("alerts-a", tweak, |g| g);
        pass(&ctx).await;
        let database = app.db_handle();
        raise(&database, ExceptionKind::RefundChange, "WC-RETRY-1", 500);

        let report = pass(&ctx).await;
        assert_eq!((report.handled, report.failed), (1, 1), "{report}");
        let row = &stored(&app)[0];
        assert_eq!((row.state.as_str(), row.attempts), ("PENDING", 1));
        assert_eq!(row.last_error.as_deref(), Some("HTTP 500: boom"));
        assert!(row.next_attempt_at.unwrap() > now() + Duration::seconds(20), "backed off: {row:?}");
        pass(&ctx).await;
        assert_eq!(alerts.received().len(), 1, "not due again before its back-off");

        age(&app, Duration::seconds(31));
        pass(&ctx).await;
        assert_eq!(stored(&app)[0].attempts, 2);
        // The last attempt of the schedule: one more failure gives the alert up.
        let last = wechat_checkout::payments::alerts::RETRY.len() as i32;
        let mut c = database.conn().unwrap();
        diesel::update(alerts_t::table)
            .set((alerts_t::attempts.eq(last), alerts_t::next_attempt_at.eq(Some(now()))))
            .execute(&mut c)
            .unwrap();
        pass(&ctx).await;
        let row = &stored(&app)[0];
        assert_eq!((row.state.as_str(), row.attempts), ("FAILED", last + 1), "{row:?}");

        // The receiver is back: the next alert is sent at once.
        raise(&database, ExceptionKind::UnknownOrder, "WC-RETRY-2", 700);
        let report = pass(&ctx).await;
        assert_eq!((report.handled, report.failed), (1, 0), "{report}");
        let rows = stored(&app);
        assert_eq!((rows[1].state.as_str(), rows[1].attempts), ("SENT", 1), "{rows:#?}");
        eventually("four posts", || alerts.received().len() == 4).await;
        app.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_rate_limited_robot_answer_is_a_failed_attempt() {
    let robot = answering("200 OK", "", r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let tweak = alert_settings(robot.url("/send?key=k"), "wecom", 30);
    let app = TestApp::start(TestDb::sqlite(&dir), Some(dir), tweak.clone()).await;
    let ctx = app.job_context("alerts-a", tweak, |g| g);
    pass(&ctx).await;
    raise(&app.db_handle(), ExceptionKind::AmountMismatch, "WC-45009", 100);
    assert_eq!(pass(&ctx).await.failed, 1);
    let row = &stored(&app)[0];
    assert_eq!(row.state, "PENDING");
    assert_eq!(row.last_error.as_deref(), Some("errcode 45009: api freq out of limit"));
    app.stop().await;
}
