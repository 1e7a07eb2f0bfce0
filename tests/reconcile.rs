//! Acceptance tests of the daily reconciliation against WeChat's T+1 bill (issue 5), over real
//! parts: the app on a local port with its simulator over HTTP, a SQLite file and (when
//! TEST_DATABASE_URL is set) PostgreSQL. Planted differences of one Beijing day (a lost notify,
//! a payment WeChat never had, an amount difference, another system's payment and refund, a
//! refund WeChat never had) are found exactly once, the lost payment is applied through
//! orderquery, and a second run adds nothing; refunds are matched by number, amount and status;
//! a lost payment billed with another amount is not applied; a failed download is retried
//! later; "No Bill Exist" is an empty day that still checks our payments; "Bill Creating" waits
//! and the scheduler finishes the date later; the command line reconciles a date and refuses a
//! bad one; the console pages show runs and findings.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveDateTime, Utc};
use common::admin::{STAFF_PASSWORD, console_refund, create_staff, get, sign_in};
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, eventually, on_every_backend_and_version_with, order_row};
use diesel::prelude::*;
use serde_json::{Value, json};
use wechat_checkout::db::reconciliation;
use wechat_checkout::db::refunds::{self, NewRefund};
use wechat_checkout::db::schema::{
    audit_log as audit_t, exceptions as exceptions_t, orders as orders_t, reconciliation_runs as runs_t,
    refunds as refunds_t,
};
use wechat_checkout::db::{Db, events, exceptions, notify_log, orders};
use wechat_checkout::domain::RefundState;
use wechat_checkout::domain::reconciliation::ReconciliationRun;
use wechat_checkout::domain::reconciliation::RunFigures;
use wechat_checkout::domain::reconciliation::RunState;
use wechat_checkout::jobs::JobContext;
use wechat_checkout::payments::reconcile::{self, APPLIED_VIA_ORDERQUERY, RunOptions, RunOutcome, RunResult};
use wechat_checkout::staff::Role;
use wechat_checkout::wxpay::bill::BillReader;
use wechat_checkout::wxpay::refund::Refund;
use wechat_checkout::wxpay::time::{beijing, beijing_day_start};
use wechat_checkout::wxpay::types::OrderRef;
use wechat_checkout::wxpay::unified_order::UnifiedOrder;
use wechat_checkout::wxpay::{Fen, HttpPayGateway, PayGateway, SignType};

/// Runs `scenario` on SQLite, then on PostgreSQL when available, each on a fresh app (jobs off:
/// no poller may rescue a lost payment before the reconciliation sees it) whose bills are kept in
/// the directory the scenario is given.
async fn on_every_backend<F, Fut>(scenario: F)
where
    F: Fn(TestApp, PathBuf) -> Fut,
    Fut: Future<Output = TestApp>,
{
    on_every_backend_and_version_with(|f, bills| f.merge(("bill_dir", bills.to_string_lossy().into_owned())), scenario)
        .await;
}

/// The jobs of another instance on the app's database, keeping its bills in `bills` (as the app
/// does).
fn job_context(app: &TestApp, bills: &Path, name: &str) -> JobContext {
    let bills = bills.to_string_lossy().into_owned();
    app.job_context(name, |f| f.merge(("bill_dir", bills)), |gateway| gateway)
}

/// "Another system" on the same merchant account, calling the simulator directly.
fn other_system(app: &TestApp) -> HttpPayGateway {
    HttpPayGateway::new(common::demo_merchant(SignType::Md5), common::fast_gateway_config(&app.url("/simulator")))
        .unwrap()
}

/// The simulator's clock.
async fn sim_now(app: &TestApp) -> chrono::DateTime<Utc> {
    let clock = app.get_json("/simulator/control/clock").await;
    chrono::DateTime::parse_from_rfc3339(clock["now"].as_str().unwrap()).unwrap().with_timezone(&Utc)
}

/// Moves the simulator's clock to `hh:mm` Beijing on the day after `day` (it only goes forward).
async fn sim_clock_to_next_day(app: &TestApp, day: NaiveDate, hour: i64, minute: i64) {
    let target = beijing_day_start(day.succ_opt().unwrap()) + chrono::Duration::minutes(hour * 60 + minute);
    let ahead = (target - sim_now(app).await).num_seconds();
    assert!(ahead > 0, "the simulator's clock is already past {target}");
    app.control("clock", json!({ "advance_seconds": ahead })).await;
}

fn beijing_today() -> NaiveDate {
    Utc::now().with_timezone(&beijing()).date_naive()
}

/// The Beijing day a scenario plants its payments on: today. Our refunds are dated by our clock
/// and WeChat's by the simulator's, which agree only until the simulator's clock is moved on, so
/// everything is planted before that; a run that would straddle midnight first waits for it to pass.
async fn planting_day() -> NaiveDate {
    let waited = Instant::now();
    loop {
        let local = Utc::now().with_timezone(&beijing());
        if local.time() < chrono::NaiveTime::from_hms_opt(23, 57, 0).unwrap() {
            return local.date_naive();
        }
        assert!(waited.elapsed() < Duration::from_secs(240), "Beijing midnight never came");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn timeline(db: &Db, no: &str) -> Vec<wechat_checkout::domain::records::TimelineEntry> {
    events::for_order(&mut db.conn().unwrap(), no).unwrap()
}

fn run_row(db: &Db, date: NaiveDate) -> ReconciliationRun {
    reconciliation::find_run(&mut db.conn().unwrap(), &reconcile::date_key(date)).unwrap().expect("a run row")
}

fn findings(db: &Db, date: NaiveDate) -> Vec<wechat_checkout::domain::reconciliation::FindingRecord> {
    reconciliation::findings_of(&mut db.conn().unwrap(), &reconcile::date_key(date), None, 1000).unwrap()
}

fn kinds_and_keys(db: &Db, date: NaiveDate) -> BTreeSet<(String, String)> {
    findings(db, date).into_iter().map(|f| (f.kind, f.item_key)).collect()
}

/// The exceptions raised by the reconciliation of `date` (its dedupe keys start with the date).
fn reconcile_exceptions(db: &Db, date: NaiveDate) -> Vec<wechat_checkout::domain::records::ExceptionRecord> {
    let mut conn = db.conn().unwrap();
    let ids: Vec<i64> = exceptions_t::table
        .filter(exceptions_t::dedupe_key.like(format!("reconcile:{}:%", reconcile::date_key(date))))
        .order(exceptions_t::id.asc())
        .select(exceptions_t::id)
        .load(&mut conn)
        .unwrap();
    ids.into_iter().map(|id| exceptions::find(&mut conn, id).unwrap().expect("the exception")).collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// An order recorded here as PAID at `paid_at` that WeChat never saw (a logic bug, or a payment
/// written on the wrong day): planted straight into the database.
fn plant_local_payment(db: &Db, no: &str, fen: i64, paid_at: NaiveDateTime) {
    let mut conn = db.conn().unwrap();
    let now = wechat_checkout::db::now();
    orders::insert(
        &mut conn,
        &orders::NewOrder {
            out_trade_no: no.to_owned(),
            merchant_order_id: format!("M-{no}"),
            amount_fen: fen,
            description: "演示商店-测试商品".into(),
            attach: None,
            state: "PAID".into(),
            sign_type: "MD5".into(),
            created_at: now,
            updated_at: now,
            expires_at: now + chrono::Duration::hours(2),
            webhook_url: None,
            return_url: None,
        },
    )
    .unwrap();
    diesel::update(orders_t::table.filter(orders_t::out_trade_no.eq(no)))
        .set((
            orders_t::paid_fen.eq(Some(fen)),
            orders_t::paid_at.eq(Some(paid_at)),
            orders_t::transaction_id.eq(Some(format!("4200{no}"))),
        ))
        .execute(&mut conn)
        .unwrap();
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", wechat_checkout::wxpay::nonce::random_alphanumeric(10))
}

fn finished(outcome: RunOutcome) -> RunResult {
    match outcome {
        RunOutcome::Finished(r) => r,
        other => panic!("the run did not finish: {other:?}"),
    }
}

/// The `<tr>` of one run in the runs list.
fn list_row(html: &str, date: NaiveDate) -> &str {
    let at = html.find(&format!("data-date=\"{}\"", reconcile::date_key(date))).expect("the run is listed");
    let end = html[at..].find("</tr>").unwrap();
    &html[at..at + end]
}

/// The `<tr>` of one finding on the run page.
fn finding_row<'a>(html: &'a str, kind: &str, key: &str) -> &'a str {
    let at = html
        .find(&format!("data-kind=\"{kind}\" data-key=\"{key}\""))
        .unwrap_or_else(|| panic!("the page shows the {kind} finding of {key}"));
    let end = html[at..].find("</tr>").unwrap();
    &html[at..at + end]
}

#[tokio::test]
async fn planted_differences_are_found_once_and_the_lost_payment_is_applied() {
    on_every_backend(|app, bills| async move {
        let db = app.db_handle();
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let day = planting_day().await;

        // Two payments that match, one with a partial refund that matches too.
        let m1 = app.paid_order("RC-MATCH-1", 1200).await;
        let m2 = app.paid_order("RC-MATCH-2", 3400).await;
        let refund_ok = console_refund(&app, &admin, &m2, "5.00").await;
        app.control(&format!("refunds/{refund_ok}/settle"), json!({ "status": "SUCCESS" })).await;
        eventually("the refund notify", || refund_state(&db, &refund_ok) == RefundState::Success).await;

        // (c) WeChat billed 19.90 for an order we recorded as paid 20.00.
        let amount = app.paid_order("RC-AMOUNT", 2000).await;
        app.control(&format!("orders/{amount}/bill-amount"), json!({ "total_fee": 1990 })).await;

        // (a) Paid, but the notify is lost: the order stays PAYING here.
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        let (lost, prepay) = app.paying_order("RC-LOST", 4500).await;
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        // Another system on the same merchant account takes a payment we know nothing of…
        let other = other_system(&app);
        let foreign = unique("EXT");
        let order = UnifiedOrder::jsapi(
            "另一系统的商品",
            &foreign,
            Fen::new(700),
            "203.0.113.9",
            app.url("/wechat/notify"),
            "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        );
        let prepay = other.unified_order(&order).await.unwrap().prepay_id;
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        // …and refunds 2.00 of one of our orders behind our back.
        let foreign_refund = unique("RFX");
        let refund = Refund {
            order: OrderRef::OutTradeNo(m1.clone()),
            out_refund_no: foreign_refund.clone(),
            total_fee: Fen::new(1200),
            refund_fee: Fen::new(200),
            refund_desc: None,
            refund_account: None,
            notify_url: None,
        };
        other.refund(&refund).await.unwrap();
        app.control("faults", json!({ "drop_notify_rate": 0.0 })).await;

        // (b) PAID here today, unknown to WeChat; and a refund we think succeeded that WeChat
        // never had.
        let ghost = unique("GHOST");
        plant_local_payment(&db, &ghost, 880, wechat_checkout::db::now());
        let ghost_refund = unique("RFG");
        insert_refund(&db, &ghost_refund, &m1, 300, RefundState::Success);
        assert_eq!(order_row(&db, &lost).state.as_str(), "PAYING");
        assert_eq!(beijing_today(), day, "everything was planted on one Beijing day");

        // The next morning at WeChat, after the bill is ready.
        sim_clock_to_next_day(&app, day, 10, 30).await;
        let ctx = job_context(&app, &bills, "reconciler-a");
        let first = finished(ctx.payments.reconcile_date(day, RunOptions::now()).await.unwrap());

        let expected = set(&[
            ("paid_not_local", &lost),
            ("missing_local", &foreign),
            ("missing_at_wechat", &ghost),
            ("amount_differs", &amount),
            ("refund_missing_local", &foreign_refund),
            ("refund_missing_at_wechat", &ghost_refund),
        ]);
        assert_eq!(kinds_and_keys(&db, day), expected, "exactly the planted differences");
        assert_eq!(first.state, RunState::Done);
        let bill_figures = RunFigures {
            bill_rows: 7,
            bill_paid_count: 5,
            bill_paid_fen: 1200 + 3400 + 1990 + 4500 + 700,
            bill_refund_count: 2,
            bill_refund_fen: 500 + 200,
            ..RunFigures::default()
        };
        assert_eq!(
            first.figures,
            RunFigures {
                local_paid_count: 4,
                local_paid_fen: 1200 + 3400 + 2000 + 880,
                matched: 3,
                findings: 6,
                ..bill_figures
            }
        );
        assert_eq!((first.differences, first.new_findings, first.applied, first.query_errors), (6, 6, 1, 0));

        // (a) was confirmed by orderquery and applied through the shared transition.
        let paid = order_row(&db, &lost);
        assert_eq!(paid.state.as_str(), "PAID");
        assert_eq!(paid.paid.map(|f| f.get()), Some(4500));
        let sim = app.sim_order(&lost).await;
        assert_eq!(paid.transaction_id.as_deref(), sim["transaction_id"].as_str());
        let confirmed = timeline(&db, &lost).into_iter().find(|e| e.kind == "payment_confirmed");
        assert_eq!(confirmed.map(|e| e.source).as_deref(), Some("query"), "confirmed by orderquery");
        assert!(notify_log::for_order(&mut db.conn().unwrap(), &lost).unwrap().is_empty(), "no notify arrived");
        for f in findings(&db, day) {
            let resolution = (f.kind == "paid_not_local").then_some(APPLIED_VIA_ORDERQUERY);
            assert_eq!(f.resolution.as_deref(), resolution, "{} {}", f.kind, f.item_key);
        }

        // Every difference waits in the console as an exception.
        let raised = reconcile_exceptions(&db, day);
        let raised_kinds: BTreeSet<&str> = raised.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            raised_kinds,
            BTreeSet::from([
                "reconcile_paid_not_local",
                "unknown_order",
                "reconcile_missing_at_wechat",
                "amount_mismatch",
                "unknown_refund",
                "reconcile_refund_missing_at_wechat",
            ])
        );
        assert_eq!(raised.len(), 6);
        assert!(raised.iter().all(|e| e.resolved_at.is_none()));
        let (_, page) = get(&app, &admin, "/admin/exceptions").await;
        for e in &raised {
            assert!(page.contains(&format!("data-id=\"{}\" data-kind=\"{}\"", e.id, e.kind)), "{} listed", e.kind);
        }

        // The run row keeps the figures; the bill is kept as evidence, complete.
        let row = run_row(&db, day);
        assert_eq!((row.state, row.attempts, row.figures), (RunState::Done, 1, first.figures));
        assert_eq!((row.lease_owner, row.lease_until, row.next_attempt_at, row.error), (None, None, None, None));
        let kept = reconcile::bill_path(&bills, day, true);
        assert_eq!(first.bill_file.as_deref(), Some(kept.as_path()));
        let mut reader = BillReader::open(std::fs::File::open(&kept).unwrap(), true).unwrap();
        let rows: Vec<_> = reader.by_ref().map(Result::unwrap).collect();
        reader.finish().unwrap();
        let trade_nos: BTreeSet<&str> = rows.iter().map(|r| r.out_trade_no.as_str()).collect();
        assert_eq!(trade_nos, BTreeSet::from([m1.as_str(), m2.as_str(), amount.as_str(), lost.as_str(), &foreign]));
        assert_eq!(rows.len(), 7);
        let files: Vec<_> = std::fs::read_dir(&bills).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files, [kept.file_name().unwrap()], "no partial download left behind");

        // Run again from the console by an operator: nothing new is recorded.
        create_staff(&app, "operator", Role::Operator);
        let op = sign_in(&app, "operator", STAFF_PASSWORD).await;
        let date = reconcile::date_key(day);
        let res = common::admin::post_form(
            &app,
            &op,
            "/admin/reconciliation",
            "/admin/reconciliation",
            &[("date", date.as_str())],
        )
        .await;
        assert_eq!(res.status(), 303);
        let to = res.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(to, format!("/admin/reconciliation/{date}"));
        let (status, page) = get(&app, &op, &to).await;
        assert_eq!(status, 200);
        assert!(page.contains("差异 5 条（本次新增 0 条），查单补记支付 0 笔"), "the flash tells the outcome: {page}");
        assert_eq!(kinds_and_keys(&db, day), expected, "no finding is recorded twice");
        assert_eq!(reconcile_exceptions(&db, day).len(), 6, "no exception is raised twice");
        let second = run_row(&db, day);
        assert_eq!((second.state, second.attempts), (RunState::Done, 2));
        assert_eq!(
            second.figures,
            RunFigures { local_paid_count: 5, local_paid_fen: 11_980, matched: 4, findings: 6, ..bill_figures },
            "the applied payment now matches"
        );

        let audited: Vec<(String, Option<String>)> = audit_t::table
            .filter(audit_t::action.eq("reconciliation_run"))
            .select((audit_t::actor, audit_t::target))
            .load(&mut db.conn().unwrap())
            .unwrap();
        assert_eq!(audited, [("operator".to_owned(), Some(format!("reconciliation:{date}")))], "the run is audited");

        // The console shows the run with its figures, and its findings.
        let (status, list) = get(&app, &op, "/admin/reconciliation").await;
        assert_eq!(status, 200);
        let listed = list_row(&list, day);
        for shown in [
            "data-state=\"DONE\"",
            "<td class=\"num\">7</td>",
            "¥117.90<br><small class=\"muted\">5 笔",
            "¥7.00<br><small class=\"muted\">2 笔",
            "¥119.80<br><small class=\"muted\">5 笔",
            "<td class=\"num\">4</td>",
            "<span class=\"badge bad\">6</span>",
        ] {
            assert!(listed.contains(shown), "{shown:?} in {listed}");
        }
        assert!(page.contains("id=\"bill-rows\">7<") && page.contains("id=\"matched\">4<"), "{page}");
        assert!(page.contains("id=\"findings-count\">6<"), "{page}");
        assert_eq!(page.matches("<tr class=\"finding\"").count(), 6);
        for (kind, key) in &expected {
            finding_row(&page, kind, key);
        }
        assert!(finding_row(&page, "paid_not_local", &lost).contains(APPLIED_VIA_ORDERQUERY));
        assert!(finding_row(&page, "amount_differs", &amount).contains("¥19.90"));
        // A viewer reads both pages but is offered no run.
        create_staff(&app, "viewer", Role::Viewer);
        let viewer = sign_in(&app, "viewer", STAFF_PASSWORD).await;
        for path in ["/admin/reconciliation".to_owned(), format!("/admin/reconciliation/{date}")] {
            let (status, html) = get(&app, &viewer, &path).await;
            assert_eq!(status, 200, "{path}");
            assert!(html.contains(&date) && !html.contains("id=\"run-now\""), "{path}");
        }
        let (status, html) = get(&app, &viewer, "/admin/reconciliation/2000-01-01").await;
        assert!(status == 200 && html.contains("id=\"no-run\"") && html.contains("id=\"no-findings\""), "{html}");
        let (status, html) = get(&app, &viewer, "/admin/reconciliation/WC20260101").await;
        assert!(status == 200 && html.contains("id=\"invalid-date\""), "{html}");
        app
    })
    .await;
}

#[tokio::test]
async fn no_bill_exist_is_an_empty_day_whose_local_payments_are_still_checked() {
    on_every_backend(|app, bills| async move {
        let db = app.db_handle();
        let today = beijing_today();
        let (quiet, busy_here) = (today - chrono::Duration::days(3), today - chrono::Duration::days(2));
        // WeChat has a payment today, on neither day.
        app.paid_order("NB-TODAY", 1000).await;
        let ghost = unique("GHOST");
        let noon = beijing_day_start(busy_here) + chrono::Duration::hours(12);
        plant_local_payment(&db, &ghost, 1234, noon.naive_utc());
        let ctx = job_context(&app, &bills, "reconciler-nb");

        // WeChat fails outright first: the date is retried later, with nothing recorded.
        app.control("faults", json!({ "system_error_rate": 1.0 })).await;
        let asked = Utc::now();
        let outcome = ctx.payments.reconcile_date(quiet, RunOptions::now()).await.unwrap();
        let RunOutcome::Failed { error, next_attempt_at, .. } = outcome else { panic!("{outcome:?}") };
        assert!(error.starts_with("downloadbill: "), "{error}");
        let wait = next_attempt_at - asked;
        assert!(wait > chrono::Duration::minutes(29) && wait < chrono::Duration::minutes(31), "{wait}");
        let row = run_row(&db, quiet);
        assert_eq!((row.state, row.attempts, row.error), (RunState::Failed, 1, Some(error)));
        app.control("faults", json!({ "system_error_rate": 0.0 })).await;

        let empty = finished(ctx.payments.reconcile_date(quiet, RunOptions::now()).await.unwrap());
        assert_eq!(empty.state, RunState::NoBill);
        assert_eq!(empty.figures, RunFigures::default());
        assert_eq!((empty.differences, empty.new_findings, empty.bill_file), (0, 0, None));
        let row = run_row(&db, quiet);
        assert_eq!(
            (row.state, row.attempts, row.figures, row.next_attempt_at, row.error),
            (RunState::NoBill, 2, RunFigures::default(), None, None)
        );

        let checked = finished(ctx.payments.reconcile_date(busy_here, RunOptions::now()).await.unwrap());
        assert_eq!(checked.state, RunState::NoBill);
        assert_eq!(
            checked.figures,
            RunFigures { local_paid_count: 1, local_paid_fen: 1234, findings: 1, ..RunFigures::default() }
        );
        assert_eq!((checked.differences, checked.new_findings), (1, 1));
        assert_eq!(kinds_and_keys(&db, busy_here), set(&[("missing_at_wechat", &ghost)]));
        assert_eq!(reconcile_exceptions(&db, busy_here).len(), 1);
        assert_eq!(run_row(&db, busy_here).state, RunState::NoBill);
        assert!(!bills.exists() || std::fs::read_dir(&bills).unwrap().next().is_none(), "no bill, no file");

        let again = finished(ctx.payments.reconcile_date(busy_here, RunOptions::now()).await.unwrap());
        assert_eq!((again.differences, again.new_findings), (1, 0));
        assert_eq!(reconcile_exceptions(&db, busy_here).len(), 1);
        app
    })
    .await;
}

#[tokio::test]
async fn bill_creating_waits_and_the_scheduler_finishes_the_date_later() {
    on_every_backend(|app, bills| async move {
        let db = app.db_handle();
        let day = planting_day().await;
        let paid = app.paid_order("BC-PAID", 1500).await;
        let ctx = job_context(&app, &bills, "reconciler-bc");

        // 09:00 the next morning: WeChat is still generating the bill.
        sim_clock_to_next_day(&app, day, 9, 0).await;
        let asked = Utc::now();
        let outcome = ctx.payments.reconcile_date(day, RunOptions::now()).await.unwrap();
        let RunOutcome::Waiting { bill_date, next_attempt_at } = outcome else { panic!("{outcome:?}") };
        assert_eq!(bill_date, day);
        let wait = next_attempt_at - asked;
        assert!(wait > chrono::Duration::minutes(29) && wait < chrono::Duration::minutes(31), "{wait}");
        let row = run_row(&db, day);
        assert_eq!((row.state, row.attempts), (RunState::Waiting, 1));
        assert_eq!(row.next_attempt_at.map(|t| t.and_utc().timestamp()), Some(next_attempt_at.timestamp()));
        assert!(row.error.as_deref().is_some_and(|e| e.contains("still being generated")), "{:?}", row.error);
        assert_eq!(row.lease_owner, None);
        assert!(findings(&db, day).is_empty() && !reconcile::bill_path(&bills, day, true).exists());
        let viewer_name = "bc-viewer";
        create_staff(&app, viewer_name, Role::Viewer);
        let viewer = sign_in(&app, viewer_name, STAFF_PASSWORD).await;
        let (_, list) = get(&app, &viewer, "/admin/reconciliation").await;
        let listed = list_row(&list, day);
        assert!(listed.contains("data-state=\"WAITING\"") && listed.contains("重试："), "{listed}");
        let (_, page) = get(&app, &viewer, &format!("/admin/reconciliation/{}", reconcile::date_key(day))).await;
        assert!(page.contains("下次重试") && page.contains("still being generated"), "{page}");
        // The scheduler leaves it alone until then.
        let early = ctx.payments.reconcile_date(day, RunOptions::due()).await.unwrap();
        assert_eq!(early, RunOutcome::NotClaimed { bill_date: day, state: Some(RunState::Waiting), lease_owner: None });

        // After 10:00, but WeChat's generation is late today (the simulator's fault).
        sim_clock_to_next_day(&app, day, 10, 30).await;
        app.control("faults", json!({ "bill_creating": true })).await;
        let outcome = ctx.payments.reconcile_date(day, RunOptions::now()).await.unwrap();
        assert!(matches!(outcome, RunOutcome::Waiting { .. }), "{outcome:?}");
        assert_eq!((run_row(&db, day).state, run_row(&db, day).attempts), (RunState::Waiting, 2));

        // The bill is ready; the retry time comes; the scheduler's pass finishes the date.
        app.control("faults", json!({ "bill_creating": false })).await;
        diesel::update(runs_t::table.filter(runs_t::bill_date.eq(reconcile::date_key(day))))
            .set(runs_t::next_attempt_at.eq(Some((Utc::now() - chrono::Duration::seconds(1)).naive_utc())))
            .execute(&mut db.conn().unwrap())
            .unwrap();
        let report = wechat_checkout::jobs::reconcile::run_due(&ctx).await.unwrap();
        assert_eq!(report.failed, 0, "{report}");
        let done = run_row(&db, day);
        assert_eq!((done.state, done.attempts, done.next_attempt_at, done.error), (RunState::Done, 3, None, None));
        assert_eq!((done.figures.bill_paid_count, done.figures.matched, done.figures.findings), (1, 1, 0));
        assert!(reconcile::bill_path(&bills, day, true).exists());
        assert!(report.note.contains(&format!("{day} DONE")), "{report}");
        assert_eq!(order_row(&db, &paid).state.as_str(), "PAID");
        app
    })
    .await;
}

/// Runs the built binary with only the settings given (none inherited from the environment).
async fn cli(args: &[&str], env: &[(&str, String)], cwd: &Path) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wechat-checkout"));
    cmd.args(args).current_dir(cwd).env("RUST_LOG", "warn");
    for key in wechat_checkout::config::ENV_KEYS {
        cmd.env_remove(key).env_remove(format!("{key}_FILE"));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(60), cmd.output()).await.expect("the command ends").unwrap()
}

#[tokio::test]
async fn the_command_line_reconciles_a_date_and_refuses_a_bad_one() {
    on_every_backend(|app, bills| async move {
        let db = app.db_handle();
        let day = planting_day().await;
        app.paid_order("CLI-PAID", 2500).await;
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        let (lost, prepay) = app.paying_order("CLI-LOST", 990).await;
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        sim_clock_to_next_day(&app, day, 10, 30).await;

        let cwd = tempfile::tempdir().unwrap();
        let env = [
            ("DATABASE_URL", app.db.url()),
            ("SIMULATOR", "on".to_owned()),
            ("PUBLIC_BASE_URL", app.base_url.clone()),
            ("BILL_DIR", bills.to_string_lossy().into_owned()),
            ("INSTANCE_ID", "cli".to_owned()),
            ("JOBS", "off".to_owned()),
        ];
        let date = reconcile::date_key(day);
        let out = cli(&["reconcile", "--date", &date], &env, cwd.path()).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        let kept = reconcile::bill_path(&bills, day, true);
        for line in [
            format!("{date} DONE: 2 bill rows, 1 matched, 1 differences (1 new), 1 applied via orderquery"),
            "  bill:      2 rows; 2 payments ¥34.90; 0 refunds ¥0.00".to_owned(),
            "  local:     1 paid orders ¥25.00".to_owned(),
            "  matched:   1".to_owned(),
            "  findings:  1 for this date (1 new in this run)".to_owned(),
            format!("  bill file: {}", kept.display()),
        ] {
            assert!(stdout.lines().any(|l| l == line), "{line:?} in:\n{stdout}");
        }
        assert!(kept.exists());
        assert_eq!(order_row(&db, &lost).state.as_str(), "PAID", "applied via orderquery");
        assert_eq!(kinds_and_keys(&db, day), set(&[("paid_not_local", &lost)]));
        assert_eq!(run_row(&db, day).state, RunState::Done);

        for bad in ["2026-02-30", "20260101", "yesterday"] {
            let out = cli(&["reconcile", "--date", bad], &env, cwd.path()).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{bad}: {out:?}");
            assert!(stderr.contains(&format!("invalid value '{bad}' for '--date <DATE>'")), "{bad}: {stderr}");
        }
        app
    })
    .await;
}

#[tokio::test]
async fn a_lost_payment_billed_with_another_amount_is_not_applied() {
    on_every_backend(|app, bills| async move {
        let db = app.db_handle();
        let day = planting_day().await;
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        let (lost, prepay) = app.paying_order("AM-LOST", 3000).await;
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        // WeChat took 29.00 for an order of 30.00 (and says so to orderquery too).
        app.control(&format!("orders/{lost}/bill-amount"), json!({ "total_fee": 2900 })).await;
        sim_clock_to_next_day(&app, day, 10, 30).await;
        let ctx = job_context(&app, &bills, "reconciler-am");

        let run = finished(ctx.payments.reconcile_date(day, RunOptions::now()).await.unwrap());
        assert_eq!((run.differences, run.applied, run.query_errors), (1, 0, 0));
        assert_eq!(order_row(&db, &lost).state.as_str(), "PAYING", "an amount mismatch is never recorded as paid");
        let found = findings(&db, day);
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!((f.kind.as_str(), f.item_key.as_str()), ("paid_not_local", lost.as_str()));
        let detail: Value = serde_json::from_str(&f.detail).unwrap();
        assert_eq!((&detail["bill_amount_fen"], &detail["order_amount_fen"]), (&json!(2900), &json!(3000)));
        // WeChat said SUCCESS: the note must not say the payment is still open there.
        assert_eq!(f.resolution.as_deref(), Some("orderquery: not applied; the order is still PAYING here"));
        let queried =
            timeline(&db, &lost).into_iter().find(|e| e.kind == "queried").expect("the query is on the timeline");
        assert!(queried.detail.contains("SUCCESS"), "{}", queried.detail);
        let raised: BTreeSet<String> =
            exceptions::for_order(&mut db.conn().unwrap(), &lost).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(raised, BTreeSet::from(["amount_mismatch".to_owned(), "reconcile_paid_not_local".to_owned()]));

        // Still a difference next time, asked about again, recorded once.
        let again = finished(ctx.payments.reconcile_date(day, RunOptions::now()).await.unwrap());
        assert_eq!((again.differences, again.new_findings, again.applied), (1, 0, 0));
        assert_eq!(timeline(&db, &lost).iter().filter(|e| e.kind == "queried").count(), 2);
        assert_eq!(exceptions::for_order(&mut db.conn().unwrap(), &lost).unwrap().len(), 2);
        app
    })
    .await;
}

#[tokio::test]
async fn refunds_are_matched_by_number_then_amount_and_status() {
    on_every_backend(|app, bills| async move {
        let db = app.db_handle();
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let day = planting_day().await;
        let mut refunded = Vec::new();
        for (i, fen) in [1000, 2000, 3000].into_iter().enumerate() {
            let no = app.paid_order(&format!("RF-{i}"), fen).await;
            let r = console_refund(&app, &admin, &no, &format!("{}.00", fen / 200)).await;
            app.control(&format!("refunds/{r}/settle"), json!({ "status": "SUCCESS" })).await;
            eventually("the refund notify", || refund_state(&db, &r) == RefundState::Success).await;
            refunded.push(r);
        }
        // A refund that never reached WeChat and failed here is no difference.
        let (open, _) = app.paying_order("RF-NEVER-PAID", 500).await;
        let failed_here = unique("RFF");
        insert_refund(&db, &failed_here, &open, 500, RefundState::Failed);
        // Planted: we recorded another amount for the second refund, and the third as failed
        // although WeChat paid it out.
        let (ok, amount, status) = (&refunded[0], &refunded[1], &refunded[2]);
        diesel::update(refunds_t::table.filter(refunds_t::out_refund_no.eq(amount)))
            .set(refunds_t::amount_fen.eq(1100))
            .execute(&mut db.conn().unwrap())
            .unwrap();
        diesel::update(refunds_t::table.filter(refunds_t::out_refund_no.eq(status)))
            .set(refunds_t::state.eq(RefundState::Failed.as_str()))
            .execute(&mut db.conn().unwrap())
            .unwrap();
        sim_clock_to_next_day(&app, day, 10, 30).await;
        let ctx = job_context(&app, &bills, "reconciler-rf");

        let run = finished(ctx.payments.reconcile_date(day, RunOptions::now()).await.unwrap());
        assert_eq!(
            kinds_and_keys(&db, day),
            set(&[("refund_amount_differs", amount), ("refund_status_differs", status)])
        );
        assert_eq!(
            run.figures,
            RunFigures {
                bill_rows: 6,
                bill_paid_count: 3,
                bill_paid_fen: 6000,
                bill_refund_count: 3,
                bill_refund_fen: 3000,
                local_paid_count: 3,
                local_paid_fen: 6000,
                matched: 4,
                findings: 2,
            }
        );
        let by_key: std::collections::HashMap<String, Value> =
            findings(&db, day).into_iter().map(|f| (f.item_key, serde_json::from_str(&f.detail).unwrap())).collect();
        assert_eq!(
            (&by_key[amount]["bill_amount_fen"], &by_key[amount]["local_amount_fen"]),
            (&json!(1000), &json!(1100))
        );
        assert_eq!(
            (&by_key[status]["bill_status"], &by_key[status]["local_state"]),
            (&json!("SUCCESS"), &json!("FAILED"))
        );
        assert!(!by_key.contains_key(ok.as_str()));
        app
    })
    .await;
}

fn refund_state(db: &Db, out_refund_no: &str) -> RefundState {
    refunds::find(&mut db.conn().unwrap(), out_refund_no).unwrap().unwrap().state
}

/// A refund recorded here only (planted straight into the database).
fn insert_refund(db: &Db, out_refund_no: &str, out_trade_no: &str, fen: i64, state: RefundState) {
    let now = wechat_checkout::db::now();
    refunds::insert(
        &mut db.conn().unwrap(),
        &NewRefund {
            out_refund_no: out_refund_no.to_owned(),
            out_trade_no: out_trade_no.to_owned(),
            amount_fen: fen,
            reason: "planted".into(),
            state: state.as_str().into(),
            requested_by: "test".into(),
            created_at: now,
            updated_at: now,
        },
    )
    .unwrap();
}
