//! The jobs that settle payments by themselves, over real HTTP against the in-app simulator with
//! short schedules: the poller recovers payments whose notify was lost and queries unpaid orders
//! on schedule; the expirer closes expired orders at WeChat and locally, but a payment made at
//! the last second ends PAID; refund sync settles refunds left PROCESSING (SUCCESS, CHANGE) and
//! finds PENDING ones WeChat did accept; two instances' jobs never work on one order at once.
//! On SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::NaiveDateTime;
use common::admin::{console_refund, sign_in};
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, eventually, on_every_backend_and_version_with, order_row};
use diesel::prelude::*;
use rocket::figment::Figment;
use serde_json::json;
use wechat_checkout::db::schema::{orders as orders_t, refunds as refunds_t};
use wechat_checkout::db::{Db, events, exceptions, notify_log, orders, refunds};
use wechat_checkout::domain::RefundState;
use wechat_checkout::jobs::{JobContext, expirer, poller};
use wechat_checkout::wxpay::download_bill::{BillDownload, DownloadBill};
use wechat_checkout::wxpay::order_query::{CloseOrder, OrderQuery, OrderQueryReply};
use wechat_checkout::wxpay::refund::{Refund, RefundQuery, RefundQueryReply, RefundReply};
use wechat_checkout::wxpay::types::OrderRef;
use wechat_checkout::wxpay::unified_order::{UnifiedOrder, UnifiedOrderReply};
use wechat_checkout::wxpay::{PayGateway, WxError};

/// The poll schedule of the poller suite: the brief's scaled steps plus a last, longer one so a
/// slow machine that pays a little late is still caught.
const FAST_SCHEDULE: &str = "100ms,200ms,400ms,2s";
/// A schedule that keeps the poller out of the way (the expirer and refund suites).
const IDLE_SCHEDULE: &str = "1h";

/// Runs `scenario` on SQLite, then on PostgreSQL when available, each on a fresh app whose jobs
/// run every 50 ms with `schedule` (`jobs` false: the jobs stay off and the test drives them).
async fn on_every_backend<F, Fut>(jobs: bool, schedule: &'static str, scenario: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = TestApp>,
{
    let tweak = move |f: Figment, bills: &Path| {
        f.merge(("jobs", if jobs { "on" } else { "off" }))
            .merge(("poll_schedule", schedule))
            .merge(("job_tick_ms", 50))
            // The reconciler runs with the other jobs; its bills stay in the test's directory.
            .merge(("bill_dir", bills.to_string_lossy().into_owned()))
    };
    on_every_backend_and_version_with(tweak, |app, _| scenario(app)).await;
}

fn schedule_of(db: &Db, no: &str) -> orders::QuerySchedule {
    orders::query_schedule(&mut db.conn().unwrap(), no).unwrap().unwrap()
}

fn timeline(db: &Db, no: &str) -> Vec<wechat_checkout::domain::records::TimelineEntry> {
    events::for_order(&mut db.conn().unwrap(), no).unwrap()
}

fn kinds(db: &Db, no: &str) -> Vec<String> {
    timeline(db, no).into_iter().map(|e| e.kind).collect()
}

fn ago(d: chrono::Duration) -> NaiveDateTime {
    (chrono::Utc::now() - d).naive_utc()
}

/// Moves an order's expiry (and, when given, its prepay time) into the past, as if it were old.
fn age_order(db: &Db, no: &str, prepay_age: Option<chrono::Duration>) {
    let mut conn = db.conn().unwrap();
    let target = orders_t::table.filter(orders_t::out_trade_no.eq(no));
    if let Some(age) = prepay_age {
        diesel::update(target).set(orders_t::prepay_created_at.eq(Some(ago(age)))).execute(&mut conn).unwrap();
    }
    diesel::update(target).set(orders_t::expires_at.eq(ago(chrono::Duration::seconds(1)))).execute(&mut conn).unwrap();
}

#[tokio::test]
async fn lost_notifies_are_recovered_by_the_poller_on_schedule() {
    on_every_backend(true, FAST_SCHEDULE, |app| async move {
        let db = app.db_handle();
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        let mut paid = Vec::new();
        for i in 0..10 {
            let (no, prepay) = app.paying_order(&format!("POLL-PAID-{i}"), 100 + i).await;
            assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
            paid.push(no);
        }
        let mut unpaid = Vec::new();
        for i in 0..3 {
            unpaid.push(app.paying_order(&format!("POLL-OPEN-{i}"), 300 + i).await.0);
        }

        let start = Instant::now();
        eventually("every paid order to become PAID", || {
            paid.iter().all(|no| order_row(&db, no).state.as_str() == "PAID")
        })
        .await;
        eprintln!("10 payments with lost notifies recovered in {:?}", start.elapsed());
        for no in &paid {
            let order = order_row(&db, no);
            let confirmed = timeline(&db, no).into_iter().find(|e| e.kind == "payment_confirmed").unwrap();
            assert_eq!(confirmed.source, "query", "{no} was paid through orderquery");
            assert!(order.transaction_id.is_some());
            assert!(notify_log::for_order(&mut db.conn().unwrap(), no).unwrap().is_empty(), "no notify arrived");
            let after = confirmed.at() - order.prepay_created_at.unwrap();
            assert!(after < chrono::Duration::seconds(15), "{no} confirmed {after} after its prepay");
            // Leaving PAYING ends the schedule in the same UPDATE.
            assert_eq!(schedule_of(&db, no).next_query_at, None);
        }

        eventually("the unpaid orders' schedules to run out", || {
            unpaid.iter().all(|no| schedule_of(&db, no).next_query_at.is_none())
        })
        .await;
        for no in &unpaid {
            let order = order_row(&db, no);
            assert_eq!(order.state.as_str(), "PAYING", "{no} was never paid");
            let plan = schedule_of(&db, no);
            let queried: Vec<_> = timeline(&db, no).into_iter().filter(|e| e.kind == "queried").collect();
            // Steps that pass while a query is running are merged into it, so a slow machine
            // may query fewer than four times, never more.
            assert!((1..=4).contains(&plan.query_attempts), "{no}: {} queries", plan.query_attempts);
            assert_eq!(queried.len(), plan.query_attempts as usize, "{no}: every query is on the timeline");
            let prepay = order.prepay_created_at.unwrap();
            assert!(
                queried[0].at() >= prepay + chrono::Duration::milliseconds(100),
                "{no}: the first query waited for the first step"
            );
            assert!(queried.iter().all(|q| q.detail.contains("NOTPAY")), "{no}: {queried:?}");
            assert_eq!(app.sim_order(no).await["state"], "NOTPAY");
        }
        // Nothing further is queried once the schedule is over.
        let before: Vec<usize> = unpaid.iter().map(|no| kinds(&db, no).len()).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after: Vec<usize> = unpaid.iter().map(|no| kinds(&db, no).len()).collect();
        assert_eq!(before, after);
        app
    })
    .await;
}

#[tokio::test]
async fn expired_orders_close_at_wechat_and_locally_but_a_last_second_payment_ends_paid() {
    on_every_backend(true, IDLE_SCHEDULE, |app| async move {
        let db = app.db_handle();
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        let (unpaid, _) = app.paying_order("EXP-OPEN", 500).await;
        let (last_second, prepay) = app.paying_order("EXP-LATE", 600).await;
        let never = app.create_order("EXP-NEVER", 700).await["out_trade_no"].as_str().unwrap().to_owned();
        let (young, _) = app.paying_order("EXP-YOUNG", 800).await;

        // The shopper pays just before the expiry; the notify is lost.
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        // Six minutes pass, for WeChat (its clock) and for us (the prepay times and expiries).
        app.control("clock", json!({ "advance_seconds": 360 })).await;
        let six_minutes = chrono::Duration::minutes(6);
        age_order(&db, &unpaid, Some(six_minutes));
        age_order(&db, &last_second, Some(six_minutes));
        age_order(&db, &never, None);
        // Expired, but its prepay is younger than WeChat's 5-minute minimum for closeorder.
        age_order(&db, &young, None);

        eventually("the expired orders to settle", || {
            [&unpaid, &last_second, &never].iter().all(|no| !order_row(&db, no).state.is_payable())
        })
        .await;

        assert_eq!(order_row(&db, &unpaid).state.as_str(), "CLOSED");
        assert_eq!(app.sim_order(&unpaid).await["state"], "CLOSED", "closed at WeChat too");
        let k = kinds(&db, &unpaid);
        assert!(k.contains(&"queried".to_owned()), "queried before closing: {k:?}");
        assert!(k.iter().position(|e| e == "queried") < k.iter().position(|e| e == "closed"));

        let late = order_row(&db, &last_second);
        assert_eq!(late.state.as_str(), "PAID", "a payment at the last second is never closed over");
        assert_eq!(app.sim_order(&last_second).await["state"], "SUCCESS");
        assert!(!kinds(&db, &last_second).contains(&"closed".to_owned()));

        assert_eq!(order_row(&db, &never).state.as_str(), "CLOSED");
        assert!(!kinds(&db, &never).contains(&"queried".to_owned()), "never reached WeChat: nothing to ask");

        // A few more passes: the young order is left alone (no query, no closeorder).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(order_row(&db, &young).state.as_str(), "PAYING");
        assert_eq!(app.sim_order(&young).await["state"], "NOTPAY");
        assert_eq!(kinds(&db, &young), ["created", "prepay_issued"], "neither queried nor closed");
        // Leases are given back.
        for no in [&unpaid, &last_second, &never] {
            let lease: Option<NaiveDateTime> = orders_t::table
                .filter(orders_t::out_trade_no.eq(no.as_str()))
                .select(orders_t::lease_until)
                .first(&mut db.conn().unwrap())
                .unwrap();
            assert_eq!(lease, None, "{no}");
        }
        app
    })
    .await;
}

/// A gateway that wraps the real client: counts orderquery and closeorder calls per order,
/// tracks how many are in flight at once per order, and can make the shopper pay right before a
/// closeorder reaches WeChat.
struct Observed {
    inner: Arc<dyn PayGateway>,
    delay: Duration,
    stats: Arc<Mutex<Stats>>,
    pay_before_close: Option<(reqwest::Client, String, String)>,
}

#[derive(Default)]
struct Stats {
    queries: HashMap<String, usize>,
    closes: HashMap<String, usize>,
    in_flight: HashMap<String, usize>,
    max_in_flight: usize,
}

impl Observed {
    fn enter(&self, no: &str, calls: fn(&mut Stats) -> &mut HashMap<String, usize>) {
        let mut s = self.stats.lock().unwrap();
        *calls(&mut s).entry(no.to_owned()).or_default() += 1;
        let n = s.in_flight.entry(no.to_owned()).or_default();
        *n += 1;
        let n = *n;
        s.max_in_flight = s.max_in_flight.max(n);
    }

    fn leave(&self, no: &str) {
        *self.stats.lock().unwrap().in_flight.get_mut(no).unwrap() -= 1;
    }
}

#[async_trait]
impl PayGateway for Observed {
    async fn unified_order(&self, req: &UnifiedOrder) -> Result<UnifiedOrderReply, WxError> {
        self.inner.unified_order(req).await
    }

    async fn order_query(&self, req: &OrderQuery) -> Result<OrderQueryReply, WxError> {
        let OrderRef::OutTradeNo(no) = &req.order else { panic!("the jobs query by out_trade_no") };
        self.enter(no, |s| &mut s.queries);
        tokio::time::sleep(self.delay).await;
        let reply = self.inner.order_query(req).await;
        self.leave(no);
        reply
    }

    async fn close_order(&self, req: &CloseOrder) -> Result<(), WxError> {
        self.enter(&req.out_trade_no, |s| &mut s.closes);
        if let Some((http, base, prepay)) = &self.pay_before_close {
            let res = http
                .post(format!("{base}/simulator/shopper/pay"))
                .json(&json!({ "prepay_id": prepay, "outcome": "ok" }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "the shopper pays at the last second");
        }
        tokio::time::sleep(self.delay).await;
        let reply = self.inner.close_order(req).await;
        self.leave(&req.out_trade_no);
        reply
    }

    async fn refund(&self, req: &Refund) -> Result<RefundReply, WxError> {
        self.inner.refund(req).await
    }

    async fn refund_query(&self, req: &RefundQuery) -> Result<RefundQueryReply, WxError> {
        self.inner.refund_query(req).await
    }

    async fn download_bill(&self, req: &DownloadBill, dest: &Path) -> Result<BillDownload, WxError> {
        self.inner.download_bill(req, dest).await
    }
}

/// Another instance's jobs on the app's database: its own `Payments` whose WeChat client is the
/// real one wrapped in [`Observed`], and its own lease name.
fn instance(app: &TestApp, name: &str, gateway: impl FnOnce(Arc<dyn PayGateway>) -> Observed) -> JobContext {
    let mut ctx = app.job_context(name, |f| f, |real| Arc::new(gateway(real)));
    let settings = Arc::make_mut(&mut ctx.settings);
    // Due at once, then hourly: every round of the lease test makes the orders due by hand.
    settings.poll_schedule =
        [0, 1, 2, 3, 4].map(|h| Duration::from_secs(h * 3600).max(Duration::from_millis(1))).to_vec();
    settings.concurrency = 4;
    ctx
}

fn make_due(db: &Db, nos: &[String]) {
    diesel::update(orders_t::table.filter(orders_t::out_trade_no.eq_any(nos)))
        .set(orders_t::next_query_at.eq(Some(ago(chrono::Duration::seconds(1)))))
        .execute(&mut db.conn().unwrap())
        .unwrap();
}

#[tokio::test]
async fn two_instances_never_work_on_one_order_at_once() {
    on_every_backend(false, IDLE_SCHEDULE, |app| async move {
        let db = app.db_handle();
        let stats = Arc::new(Mutex::new(Stats::default()));
        let observe = |delay: u64| {
            let stats = stats.clone();
            move |inner: Arc<dyn PayGateway>| Observed {
                inner,
                delay: Duration::from_millis(delay),
                stats,
                pay_before_close: None,
            }
        };
        let a = instance(&app, "instance-a", observe(30));
        let b = instance(&app, "instance-b", observe(30));
        let mut nos = Vec::new();
        for i in 0..16 {
            nos.push(app.paying_order(&format!("LEASE-{i}"), 100 + i).await.0);
        }

        let rounds = 3;
        for round in 1..=rounds {
            make_due(&db, &nos);
            let (ra, rb) = tokio::join!(poller::run_once(&a), poller::run_once(&b));
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            eprintln!("round {round}: a {ra}, b {rb}");
            assert_eq!(ra.handled + rb.handled, nos.len(), "every due order is queried by one instance");
            assert_eq!(ra.failed + rb.failed, 0);
            let s = stats.lock().unwrap();
            assert_eq!(s.max_in_flight, 1, "no order is ever queried by both at once");
            for no in &nos {
                assert_eq!(s.queries.get(no), Some(&round), "{no} queried once per round");
            }
        }
        for no in &nos {
            let plan = schedule_of(&db, no);
            assert_eq!(plan.query_attempts, rounds as i32);
            assert!(plan.next_query_at.is_some(), "the 1h step is still ahead");
        }

        // The expirer too: each expired order is queried and closed by exactly one instance.
        app.control("clock", json!({ "advance_seconds": 360 })).await;
        for no in &nos {
            age_order(&db, no, Some(chrono::Duration::minutes(6)));
        }
        let (ra, rb) = tokio::join!(expirer::run_once(&a), expirer::run_once(&b));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        eprintln!("expiry: a {ra}, b {rb}");
        assert_eq!(ra.handled + rb.handled, nos.len());
        let s = stats.lock().unwrap();
        assert_eq!(s.max_in_flight, 1);
        for no in &nos {
            assert_eq!(s.closes.get(no), Some(&1), "{no} closed once");
            assert_eq!(s.queries.get(no), Some(&(rounds + 1)), "{no} queried once before its close");
            assert_eq!(order_row(&db, no).state.as_str(), "CLOSED");
        }
        drop(s);
        app
    })
    .await;
}

#[tokio::test]
async fn a_payment_between_the_expirers_query_and_its_close_takes_the_paid_path() {
    on_every_backend(false, IDLE_SCHEDULE, |app| async move {
        let db = app.db_handle();
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;
        let (no, prepay) = app.paying_order("EXP-RACE", 990).await;
        let stats = Arc::new(Mutex::new(Stats::default()));
        let (http, base) = (app.http.clone(), app.base_url.clone());
        let ctx = instance(&app, "instance-race", |inner| Observed {
            inner,
            delay: Duration::ZERO,
            stats: stats.clone(),
            pay_before_close: Some((http, base, prepay)),
        });
        app.control("clock", json!({ "advance_seconds": 360 })).await;
        age_order(&db, &no, Some(chrono::Duration::minutes(6)));

        let report = expirer::run_once(&ctx).await.unwrap();
        assert_eq!((report.handled, report.failed), (1, 0), "{report}");
        let order = order_row(&db, &no);
        assert_eq!(order.state.as_str(), "PAID", "WeChat said ORDERPAID: the payment wins");
        assert!(order.transaction_id.is_some());
        let k = kinds(&db, &no);
        assert!(!k.contains(&"closed".to_owned()), "{k:?}");
        let close = timeline(&db, &no).into_iter().find(|e| e.kind == "close_attempted").unwrap();
        assert!(close.detail.contains("ORDERPAID"), "{}", close.detail);
        assert_eq!(app.sim_order(&no).await["state"], "SUCCESS");
        let s = stats.lock().unwrap();
        assert_eq!((s.queries.get(&no), s.closes.get(&no)), (Some(&2), Some(&1)), "query, close, confirming query");
        drop(s);
        app
    })
    .await;
}

fn refund_row(db: &Db, out_refund_no: &str) -> wechat_checkout::domain::Refund {
    refunds::find(&mut db.conn().unwrap(), out_refund_no).unwrap().unwrap()
}

fn refund_schedule(db: &Db, out_refund_no: &str) -> (i32, Option<NaiveDateTime>) {
    refunds_t::table
        .filter(refunds_t::out_refund_no.eq(out_refund_no))
        .select((refunds_t::check_attempts, refunds_t::next_check_at))
        .first(&mut db.conn().unwrap())
        .unwrap()
}

/// Brings a refund's next check forward to now (instead of waiting out the first 10 s).
fn check_now(db: &Db, out_refund_no: &str) {
    diesel::update(refunds_t::table.filter(refunds_t::out_refund_no.eq(out_refund_no)))
        .set(refunds_t::next_check_at.eq(Some(ago(chrono::Duration::seconds(1)))))
        .execute(&mut db.conn().unwrap())
        .unwrap();
}

#[tokio::test]
async fn refunds_left_processing_settle_through_refund_sync() {
    on_every_backend(true, IDLE_SCHEDULE, |app| async move {
        let db = app.db_handle();
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let ok = app.paid_order("RS-OK", 1990).await;
        let change = app.paid_order("RS-CHANGE", 2990).await;
        let open = app.paid_order("RS-OPEN", 3990).await;
        // From here on WeChat's refund notifies are lost: only refund sync can learn the outcome.
        app.control("faults", json!({ "drop_notify_rate": 1.0 })).await;

        let accepted_at = ago(chrono::Duration::zero());
        let r_ok = console_refund(&app, &admin, &ok, "19.90").await;
        let row = refund_row(&db, &r_ok);
        assert_eq!(row.state, RefundState::Processing);
        let (attempts, next) = refund_schedule(&db, &r_ok);
        assert_eq!(attempts, 0);
        let next = next.expect("an accepted refund is scheduled for a check");
        assert!(next >= accepted_at + chrono::Duration::seconds(9), "first check about 10 s after acceptance");

        app.control(&format!("refunds/{r_ok}/settle"), json!({ "status": "SUCCESS" })).await;
        check_now(&db, &r_ok);
        eventually("the refund to succeed", || refund_row(&db, &r_ok).state == RefundState::Success).await;
        let order = order_row(&db, &ok);
        assert_eq!((order.refunded.get(), order.refund_reserved.get()), (1990, 1990));
        let queried = timeline(&db, &ok).into_iter().find(|e| e.kind == "refund_queried").unwrap();
        assert_eq!(queried.source, "query");
        assert!(kinds(&db, &ok).contains(&"refund_succeeded".to_owned()));
        assert_eq!(refund_schedule(&db, &r_ok).1, None, "a settled refund is not checked again");

        // CHANGE: the money went back to the merchant; staff must handle it.
        let r_change = console_refund(&app, &admin, &change, "29.90").await;
        app.control(&format!("refunds/{r_change}/settle"), json!({ "status": "CHANGE" })).await;
        check_now(&db, &r_change);
        eventually("the refund to be marked CHANGE", || refund_row(&db, &r_change).state == RefundState::Change).await;
        let raised = exceptions::for_order(&mut db.conn().unwrap(), &change).unwrap();
        assert!(raised.iter().any(|e| e.kind == "refund_change" && e.resolved_at.is_none()), "{raised:?}");
        assert_eq!(order_row(&db, &change).refunded.get(), 0);

        // Still PROCESSING at WeChat: checked, then left alone for the next back-off step.
        let r_open = console_refund(&app, &admin, &open, "39.90").await;
        check_now(&db, &r_open);
        eventually("a check of the open refund", || {
            refund_schedule(&db, &r_open).0 == 1 || refund_row(&db, &r_open).state != RefundState::Processing
        })
        .await;
        if refund_row(&db, &r_open).state == RefundState::Processing {
            let (_, next) = refund_schedule(&db, &r_open);
            assert!(next.unwrap() >= ago(chrono::Duration::zero()) + chrono::Duration::seconds(20), "backs off 30 s");
        } else {
            eprintln!("the simulator settled {r_open} by itself before the check (slow machine)");
        }
        app
    })
    .await;
}

#[tokio::test]
async fn a_pending_refund_that_wechat_accepted_is_found_by_refund_sync() {
    on_every_backend(true, IDLE_SCHEDULE, |app| async move {
        let db = app.db_handle();
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let no = app.paid_order("RS-PENDING", 1500).await;
        // WeChat takes the refund but its replies are garbled: it stays PENDING here.
        app.control("faults", json!({ "drop_notify_rate": 1.0, "garbled_rate": 1.0 })).await;
        let r = console_refund(&app, &admin, &no, "15.00").await;
        app.control("faults", json!({ "garbled_rate": 0.0 })).await;
        let row = refund_row(&db, &r);
        assert_eq!(row.state, RefundState::Pending);
        assert!(row.last_error.is_some(), "the failed send is noted");
        let sim = app.sim_order(&no).await;
        assert_eq!(sim["refunds"].as_array().map(Vec::len), Some(1), "WeChat has it: {sim}");

        // Refund sync asks WeChat (nothing is sent again) and learns it was accepted.
        eventually("the pending refund to be found", || refund_row(&db, &r).state != RefundState::Pending).await;
        assert!(matches!(refund_row(&db, &r).state, RefundState::Processing | RefundState::Success));
        // (The simulator may have settled it by itself meanwhile; then there is nothing to force.)
        let _ = app
            .http
            .post(app.url(&format!("/simulator/control/refunds/{r}/settle")))
            .json(&json!({ "status": "SUCCESS" }))
            .send()
            .await;
        check_now(&db, &r);
        eventually("the refund to succeed", || refund_row(&db, &r).state == RefundState::Success).await;
        assert_eq!(order_row(&db, &no).refunded.get(), 1500);
        assert_eq!(app.sim_order(&no).await["refunds"].as_array().map(Vec::len), Some(1), "refunded once");
        app
    })
    .await;
}
