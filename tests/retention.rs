//! The retention job on both backends: rows older than their window are purged (refused
//! notifies, used OAuth states, sign-in attempts, attempts of finished webhook deliveries), newer
//! ones and everything kept for good (verified notifies, the audit log, webhook events, attempts
//! of deliveries still under way) stay. Rows are planted through the `db` functions, then dated
//! back, and one pass of the job runs as `wechat-checkout jobs retention` would run it.

mod common;

use chrono::{Duration, NaiveDateTime};
use common::app::{TestApp, on_every_backend};
use diesel::prelude::*;
use wechat_checkout::db::notify_log::NewNotifyLog;
use wechat_checkout::db::schema::{audit_log, login_attempts, notify_log, oauth_states, webhook_attempts};
use wechat_checkout::db::webhooks::{NewAttempt, NewWebhookEvent};
use wechat_checkout::db::{self, AnyConnection, DbError, audit, job_runs, oauth_states as states, webhooks};
use wechat_checkout::domain::{Actor, AuditAction, NotifyKind, NotifyVerdict};
use wechat_checkout::jobs::retention;

/// Used OAuth states planted old: more than one chunk of the purge.
const OLD_STATES: usize = 1500;

fn notify(c: &mut AnyConnection, verdict: NotifyVerdict, at: NaiveDateTime, reason: &str) {
    let mut row = NewNotifyLog::received(NotifyKind::Payment, "<xml></xml>".into(), Some("203.0.113.9".into()));
    (row.verdict, row.received_at, row.reason) = (verdict, at, reason.into());
    db::notify_log::insert(c, &row).unwrap();
}

fn attempt(c: &mut AnyConnection, event_id: i64, at: NaiveDateTime) {
    let a = NewAttempt {
        event_id,
        attempted_at: at,
        status_code: Some(500),
        error: None,
        duration_ms: 3,
        response_snippet: Some("x"),
    };
    webhooks::record_attempt(c, &a).unwrap();
}

/// A webhook event in `state` with an attempt 91 days old and one a day old; its id.
fn event_with_attempts(c: &mut AnyConnection, key: &str, state: &str, now: NaiveDateTime) -> i64 {
    let event = NewWebhookEvent {
        dedupe_key: key,
        event_type: "order.paid",
        out_trade_no: "WC_RETENTION_1",
        url: "https://merchant.example/hooks",
        payload: "{}".into(),
        state,
        attempts: 2,
        next_attempt_at: None,
        created_at: now - Duration::days(92),
    };
    assert!(webhooks::insert_event(c, &event).unwrap());
    let id = webhooks::find_by_dedupe_key(c, key).unwrap().unwrap().id;
    attempt(c, id, now - Duration::days(91));
    attempt(c, id, now - Duration::days(1));
    id
}

fn plant(c: &mut AnyConnection, now: NaiveDateTime) -> Result<(i64, i64), DbError> {
    let ago = |days: i64| now - Duration::days(days);
    notify(c, NotifyVerdict::BadSignature, ago(31), "old refused");
    notify(c, NotifyVerdict::TooLarge, ago(29), "new refused");
    notify(c, NotifyVerdict::Paid, ago(3650), "old verified");
    notify(c, NotifyVerdict::Duplicate, now, "new verified");
    for i in 0..OLD_STATES {
        states::consume(c, &format!("old-nonce-{i}"), ago(2)).unwrap();
    }
    states::consume(c, "new-nonce", now - Duration::hours(1)).unwrap();
    for (name, at) in [("old-user", ago(91)), ("new-user", ago(89))] {
        diesel::insert_into(login_attempts::table)
            .values((
                login_attempts::username.eq(name),
                login_attempts::ip.eq("203.0.113.9"),
                login_attempts::succeeded.eq(0),
                login_attempts::attempted_at.eq(at),
            ))
            .execute(c)?;
    }
    let delivered = event_with_attempts(c, "retention:delivered", "DELIVERED", now);
    let pending = event_with_attempts(c, "retention:pending", "PENDING", now);
    let actor = Actor { username: "admin".into(), remote_addr: None };
    audit::record(c, &actor, AuditAction::OrdersExported, None, Some("old"), serde_json::json!({}))?;
    diesel::update(audit_log::table).set(audit_log::at.eq(ago(3650))).execute(c)?;
    audit::record(c, &actor, AuditAction::OrdersExported, None, Some("new"), serde_json::json!({}))?;
    Ok((delivered, pending))
}

#[tokio::test]
async fn one_pass_purges_what_is_past_its_window_and_keeps_the_rest() {
    on_every_backend(|app: TestApp| async move {
        let database = app.db_handle();
        let now = db::now();
        let (delivered, pending) = database.write_blocking(|c| plant(c, now)).unwrap();

        let ctx = app.job_context("retention-a", |f| f, |g| g);
        let report = wechat_checkout::jobs::run_once(&ctx, "retention").await.unwrap();
        assert_eq!(report.failed, 0, "{report}");
        assert_eq!(report.handled, 1 + OLD_STATES + 1 + 1, "{report}");

        let c = &mut database.conn().unwrap();
        let mut reasons: Vec<String> = notify_log::table.select(notify_log::reason).load(c).unwrap();
        reasons.sort();
        assert_eq!(reasons, ["new refused", "new verified", "old verified"]);
        let nonces: Vec<String> = oauth_states::table.select(oauth_states::nonce).load(c).unwrap();
        assert_eq!(nonces, ["new-nonce"]);
        let users: Vec<String> = login_attempts::table.select(login_attempts::username).load(c).unwrap();
        assert_eq!(users, ["new-user"]);
        let attempts_of = |c: &mut AnyConnection, id: i64| -> i64 {
            webhook_attempts::table.filter(webhook_attempts::event_id.eq(id)).count().get_result(c).unwrap()
        };
        assert_eq!(attempts_of(c, delivered), 1, "the old attempt of a finished delivery goes");
        assert_eq!(attempts_of(c, pending), 2, "a delivery under way keeps every attempt");
        assert!(webhooks::find(c, delivered).unwrap().is_some(), "the delivery itself is kept");
        let targets: Vec<Option<String>> = audit_log::table.select(audit_log::target).load(c).unwrap();
        assert_eq!(targets.len(), 2, "the audit log is kept");
        app
    })
    .await;
}

fn states_left(database: &db::Db) -> i64 {
    oauth_states::table.count().get_result(&mut database.conn().unwrap()).unwrap()
}

#[tokio::test]
async fn one_instance_at_a_time_and_once_an_hour() {
    on_every_backend(|app: TestApp| async move {
        let database = app.db_handle();
        let now = db::now();
        let plant_old_state = |nonce: &str| {
            database.write_blocking(|c| states::consume(c, nonce, now - Duration::days(2))).unwrap();
        };
        plant_old_state("old-1");
        // Another instance is in the middle of a pass: nothing is done here.
        let other = "other/retention";
        assert!(
            database
                .write_blocking(|c| job_runs::claim(c, "retention", other, now, now + Duration::minutes(1), None))
                .unwrap()
        );
        let ctx = app.job_context("retention-b", |f| f, |g| g);
        let report = wechat_checkout::jobs::run_once(&ctx, "retention").await.unwrap();
        assert_eq!((report.handled, states_left(&database)), (0, 1), "{report}");

        // Its pass finished two hours ago: the scheduled pass is due.
        assert!(
            database.write_blocking(|c| job_runs::finish(c, "retention", other, now - Duration::hours(2))).unwrap()
        );
        assert_eq!(retention::run_due(&ctx).await.unwrap().handled, 1);
        assert_eq!(states_left(&database), 0);
        // Within the hour it is not, but the command line runs a pass at once.
        plant_old_state("old-2");
        assert_eq!(retention::run_due(&ctx).await.unwrap().handled, 0);
        assert_eq!(states_left(&database), 1);
        assert_eq!(wechat_checkout::jobs::run_once(&ctx, "retention").await.unwrap().handled, 1);
        assert_eq!(states_left(&database), 0);
        app
    })
    .await;
}
