//! Notify load for the resilience suites: orders created through the merchant API, then distinct,
//! correctly signed payment notifies (one per order, as WeChat sends them) fired at
//! `POST /wechat/notify` many at a time until stopped, with what each one was answered.
//!
//! ```ignore
//! let orders = create_orders(&base_url, "CRASH-1", 400).await;
//! let load = NotifyLoad::start(&base_url, orders);
//! // … kill the server, cut the database, send SIGTERM …
//! let outcomes = load.stop().await;
//! // every order in `outcomes.acked` must be PAID, whatever happened
//! ```
//!
//! Each order is notified at most once per load; a notify whose answer is not SUCCESS is not
//! retried by the load itself. To play WeChat's retries, start another load with the orders that
//! were not acked ([`Outcomes::not_acked`]): the same order gets the same transaction id, so a
//! retry of a payment already recorded is a duplicate (SUCCESS), never a conflicting payment.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use wechat_checkout::db::{Db, schema};
use wechat_checkout::wxpay::SignType;
use wechat_checkout::wxpay::notify::SUCCESS_REPLY;

use super::app::API_TOKEN;
use super::{demo_merchant, notify_fields};

/// Notifies in flight at once, by default.
pub const IN_FLIGHT: usize = 32;
/// How long one notify may wait for its answer before it counts as unanswered, by default.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// An order to notify: what WeChat would report for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOrder {
    pub out_trade_no: String,
    pub amount_fen: i64,
    /// Fixed per order, so that a retried notify is the same payment.
    pub transaction_id: String,
}

impl LoadOrder {
    /// The signed XML body of this order's payment notify (demo merchant, MD5, the app's default).
    pub fn notify_body(&self) -> String {
        let merchant = demo_merchant(SignType::Md5);
        let mut fields = notify_fields(&self.out_trade_no, self.amount_fen, &self.transaction_id);
        fields.insert("sign", merchant.sign(&fields));
        fields.to_xml()
    }
}

/// Creates `count` orders through `POST {base_url}/api/v1/orders` (a few requests at a time),
/// with merchant order ids `{prefix}-{i}` (so `prefix` must be new on this database) and
/// amounts that differ from order to order. Panics if the API refuses one.
pub async fn create_orders(base_url: &str, prefix: &str, count: usize) -> Vec<LoadOrder> {
    use futures::StreamExt;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    futures::stream::iter(0..count)
        .map(|i| {
            let http = http.clone();
            async move {
                let amount_fen = 100 + (i as i64 * 7) % 9_900;
                let res = http
                    .post(format!("{base_url}/api/v1/orders"))
                    .bearer_auth(API_TOKEN)
                    .json(&json!({
                        "amount_fen": amount_fen,
                        "description": "压力测试-商品",
                        "merchant_order_id": format!("{prefix}-{i}"),
                    }))
                    .send()
                    .await
                    .expect("the order API answers");
                assert_eq!(res.status(), 201, "create order {prefix}-{i}: {}", res.text().await.unwrap_or_default());
                let out_trade_no = res.json::<Value>().await.unwrap()["out_trade_no"].as_str().unwrap().to_owned();
                // 28 digits like WeChat's; random, so unique across loads and databases.
                let transaction_id = format!("4200{:04}{:020}", i % 10_000, rand::random::<u64>());
                LoadOrder { out_trade_no, amount_fen, transaction_id }
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
}

/// What each notify of a load was answered, by out_trade_no.
#[derive(Clone, Debug, Default)]
pub struct Outcomes {
    /// Answered HTTP 200 with WeChat's SUCCESS reply: the app says the payment is recorded.
    pub acked: Vec<String>,
    /// Answered, but not SUCCESS (a FAIL reply, another status, another body): WeChat retries.
    pub failed: Vec<String>,
    /// No answer: connection refused or cut, or no answer within the timeout. May or may not
    /// have been recorded.
    pub unanswered: Vec<String>,
    /// Never sent: the load was stopped first.
    pub not_sent: Vec<String>,
}

impl Outcomes {
    /// Orders whose notify was not acked (failed, unanswered or never sent): the ones WeChat
    /// would notify again.
    pub fn not_acked(&self) -> Vec<String> {
        self.failed.iter().chain(&self.unanswered).chain(&self.not_sent).cloned().collect()
    }

    /// Every notify that was sent (acked, failed or unanswered).
    pub fn sent(&self) -> usize {
        self.acked.len() + self.failed.len() + self.unanswered.len()
    }
}

/// Counts while the load runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub acked: usize,
    pub failed: usize,
    pub unanswered: usize,
    /// Orders not yet taken by a sender.
    pub waiting: usize,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<LoadOrder>>,
    stop: AtomicBool,
    acked: AtomicUsize,
    failed: AtomicUsize,
    unanswered: AtomicUsize,
}

enum Answer {
    Acked,
    Failed,
    Unanswered,
}

/// A running load; [`NotifyLoad::stop`] ends it and tells what happened.
pub struct NotifyLoad {
    shared: Arc<Shared>,
    senders: Vec<JoinHandle<Vec<(String, Answer)>>>,
}

impl NotifyLoad {
    /// Starts notifying `orders` at `base_url`, [`IN_FLIGHT`] at a time, each waiting at most
    /// [`ANSWER_TIMEOUT`]. Must be called inside a Tokio runtime.
    pub fn start(base_url: &str, orders: Vec<LoadOrder>) -> NotifyLoad {
        Self::start_with(base_url, orders, IN_FLIGHT, ANSWER_TIMEOUT)
    }

    /// [`NotifyLoad::start`] with `in_flight` senders and a per-notify `timeout`.
    pub fn start_with(base_url: &str, orders: Vec<LoadOrder>, in_flight: usize, timeout: Duration) -> NotifyLoad {
        let shared = Arc::new(Shared { queue: Mutex::new(orders.into()), ..Shared::default() });
        // The client's pool opens a connection per request in flight, as WeChat's many servers
        // would: no notify waits for another's connection.
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap();
        let url = format!("{base_url}/wechat/notify");
        let senders =
            (0..in_flight.max(1)).map(|_| tokio::spawn(sender(shared.clone(), http.clone(), url.clone()))).collect();
        NotifyLoad { shared, senders }
    }

    /// The counts so far.
    pub fn progress(&self) -> Progress {
        Progress {
            acked: self.shared.acked.load(Ordering::SeqCst),
            failed: self.shared.failed.load(Ordering::SeqCst),
            unanswered: self.shared.unanswered.load(Ordering::SeqCst),
            waiting: self.shared.queue.lock().unwrap().len(),
        }
    }

    /// Waits until at least `n` notifies were acked; false if the load ran out of orders first.
    pub async fn until_acked(&self, n: usize) -> bool {
        loop {
            let p = self.progress();
            if p.acked >= n {
                return true;
            }
            if p.waiting == 0 && self.senders.iter().all(JoinHandle::is_finished) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Lets every order be notified and answered, then returns every outcome.
    pub async fn stop_when_done(self) -> Outcomes {
        while !self.senders.iter().all(JoinHandle::is_finished) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.stop().await
    }

    /// Sends nothing more, waits for the notifies in flight to be answered (or to time out), and
    /// returns every outcome.
    pub async fn stop(self) -> Outcomes {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut outcomes = Outcomes::default();
        for sender in self.senders {
            for (no, answer) in sender.await.expect("a notify sender panicked") {
                match answer {
                    Answer::Acked => outcomes.acked.push(no),
                    Answer::Failed => outcomes.failed.push(no),
                    Answer::Unanswered => outcomes.unanswered.push(no),
                }
            }
        }
        outcomes.not_sent = self.shared.queue.lock().unwrap().drain(..).map(|o| o.out_trade_no).collect();
        outcomes
    }
}

/// One sender: takes the next order, notifies it, records the answer, until stopped or out of
/// orders.
async fn sender(shared: Arc<Shared>, http: reqwest::Client, url: String) -> Vec<(String, Answer)> {
    let mut answers = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(order) = shared.queue.lock().unwrap().pop_front() else { break };
        let reply = http.post(&url).header("Content-Type", "text/xml").body(order.notify_body()).send().await;
        let answer = match reply {
            Ok(res) => {
                let status = res.status();
                match res.text().await {
                    Ok(body) if status == 200 && body == SUCCESS_REPLY => Answer::Acked,
                    Ok(_) => Answer::Failed,
                    // The headers came but the body was cut off: no answer WeChat could read.
                    Err(_) => Answer::Unanswered,
                }
            }
            Err(_) => Answer::Unanswered,
        };
        let counter = match answer {
            Answer::Acked => &shared.acked,
            Answer::Failed => &shared.failed,
            Answer::Unanswered => &shared.unanswered,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        answers.push((order.out_trade_no, answer));
    }
    answers
}

/// What the database says of the orders of one or more loads; see [`check_recorded`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Orders PAID.
    pub paid: usize,
    /// Orders not PAID (their notify was not acked, and not recorded either).
    pub unpaid: usize,
}

/// Checks on `db` that every acked notify is recorded and that nothing of `orders` is
/// half-written, panicking with the first order at fault:
///
/// - every order in `acks` (out_trade_no → times its notify was answered SUCCESS) is PAID;
/// - every PAID order has its notify's transaction id, the paid amount of its notify and a paid
///   time, exactly one `payment_confirmed` event in its timeline, and exactly one notify_log row
///   with the verdict `paid` (the delivery that paid it);
/// - an order that is not PAID has no transaction id, no paid amount, no `payment_confirmed`
///   event and no `paid` notify_log row;
/// - each order has at least as many notify_log rows answered SUCCESS as SUCCESS answers were
///   received (a delivery cut off after its commit adds a row nobody saw, never the reverse).
///
/// Assumes the orders are paid only by these notifies (no poller settling them meanwhile).
pub fn check_recorded(db: &Db, orders: &[LoadOrder], acks: &HashMap<String, usize>) -> Recorded {
    verify_recorded(db, orders, acks).unwrap_or_else(|fault| panic!("{fault}"))
}

/// [`check_recorded`], returning the first fault instead of panicking.
pub fn verify_recorded(db: &Db, orders: &[LoadOrder], acks: &HashMap<String, usize>) -> Result<Recorded, String> {
    use diesel::prelude::*;
    use schema::{notify_log as l, order_events as e, orders as o};

    let mut conn = db.conn().expect("a connection to check the database");
    let mut recorded = Recorded::default();
    // Chunks keep each IN (…) list well under both backends' parameter limits.
    for chunk in orders.chunks(500) {
        let nos: Vec<&str> = chunk.iter().map(|o| o.out_trade_no.as_str()).collect();
        let rows: HashMap<String, (String, Option<String>, Option<i64>, bool)> = o::table
            .filter(o::out_trade_no.eq_any(&nos))
            .select((o::out_trade_no, o::state, o::transaction_id, o::paid_fen, o::paid_at.is_not_null()))
            .load::<(String, String, Option<String>, Option<i64>, bool)>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|(no, state, tx, paid, at)| (no, (state, tx, paid, at)))
            .collect();
        let mut confirmations: HashMap<String, usize> = HashMap::new();
        for no in e::table
            .filter(e::out_trade_no.eq_any(&nos))
            .filter(e::kind.eq("payment_confirmed"))
            .select(e::out_trade_no)
            .load::<String>(&mut conn)
            .unwrap()
        {
            *confirmations.entry(no).or_default() += 1;
        }
        let mut paid_rows: HashMap<String, usize> = HashMap::new();
        let mut success_rows: HashMap<String, usize> = HashMap::new();
        for (no, verdict, reply) in l::table
            .filter(l::out_trade_no.eq_any(&nos))
            .select((l::out_trade_no.assume_not_null(), l::verdict, l::reply))
            .load::<(String, String, String)>(&mut conn)
            .unwrap()
        {
            if verdict == "paid" {
                *paid_rows.entry(no.clone()).or_default() += 1;
            }
            if reply == SUCCESS_REPLY {
                *success_rows.entry(no).or_default() += 1;
            }
        }
        for order in chunk {
            let no = &order.out_trade_no;
            let (state, tx, paid, paid_at) = rows.get(no).unwrap_or_else(|| panic!("{no} is missing"));
            let confirmed = confirmations.get(no).copied().unwrap_or(0);
            let paid_logged = paid_rows.get(no).copied().unwrap_or(0);
            let acked = acks.get(no).copied().unwrap_or(0);
            let facts = format!(
                "{no}: state {state}, transaction {tx:?}, paid {paid:?}, paid_at set {paid_at}, {confirmed} \
                 payment_confirmed events, {paid_logged} `paid` log rows, acked {acked} times"
            );
            if state == "PAID" {
                recorded.paid += 1;
                ensure(tx.as_deref() == Some(order.transaction_id.as_str()), "not its notify's transaction", &facts)?;
                ensure(*paid == Some(order.amount_fen), "not its notify's amount", &facts)?;
                ensure(*paid_at, "no paid time", &facts)?;
                ensure(confirmed == 1, "not exactly one paid transition", &facts)?;
                ensure(paid_logged == 1, "not exactly one delivery that paid it", &facts)?;
            } else {
                recorded.unpaid += 1;
                ensure(acked == 0, "acked but not PAID", &facts)?;
                ensure(tx.is_none() && paid.is_none() && !paid_at, "half-written: payment facts", &facts)?;
                ensure((confirmed, paid_logged) == (0, 0), "half-written: a paid event or delivery", &facts)?;
            }
            let logged = success_rows.get(no).copied().unwrap_or(0);
            ensure(logged >= acked, &format!("only {logged} SUCCESS rows in notify_log"), &facts)?;
        }
    }
    Ok(recorded)
}

fn ensure(holds: bool, what: &str, facts: &str) -> Result<(), String> {
    if holds { Ok(()) } else { Err(format!("{what}: {facts}")) }
}

/// `PRAGMA integrity_check` of the SQLite file at `path`: `"ok"` when the file is sound.
pub fn sqlite_integrity_check(path: &str) -> String {
    use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection, sql_types::Text};

    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        integrity_check: String,
    }
    let mut conn = SqliteConnection::establish(path).expect("the SQLite file opens");
    let lines = diesel::sql_query("PRAGMA integrity_check").load::<Line>(&mut conn).expect("integrity_check runs");
    lines.into_iter().map(|l| l.integrity_check).collect::<Vec<_>>().join("\n")
}

/// `retries` and `fresh` taken in turn (then the rest of the longer), as WeChat's retries of
/// earlier notifies arrive among the notifies of new payments.
pub fn interleave(retries: Vec<LoadOrder>, fresh: Vec<LoadOrder>) -> Vec<LoadOrder> {
    let mut out = Vec::with_capacity(retries.len() + fresh.len());
    let (mut a, mut b) = (retries.into_iter(), fresh.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// Runs `rounds` on a fresh SQLite file, then on a fresh PostgreSQL database when
/// `TEST_DATABASE_URL` is set, each in a directory of its own, printing each backend's time.
pub async fn on_each_backend<F, Fut>(label: &str, rounds: F)
where
    F: Fn(super::app::TestDb, std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use super::app::TestDb;
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    rounds(TestDb::sqlite(&dir), dir.path().to_path_buf()).await;
    eprintln!("sqlite: {label} in {:?}", started.elapsed());
    match TestDb::postgres() {
        Some(db) => {
            let dir = tempfile::tempdir().unwrap();
            let started = std::time::Instant::now();
            rounds(db.clone(), dir.path().to_path_buf()).await;
            eprintln!("postgres: {label} in {:?}", started.elapsed());
            db.cleanup();
        }
        None => eprintln!("TEST_DATABASE_URL not set: PostgreSQL run skipped"),
    }
}
