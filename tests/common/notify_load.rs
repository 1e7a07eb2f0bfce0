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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
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
