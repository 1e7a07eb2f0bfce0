//! Group commit for notifies. Handlers hand verified notifies to a writer thread, which
//! applies every notify waiting at that moment in a single transaction (each in its own
//! savepoint) and answers each handler only after that transaction is durably committed.
//!
//! One fsync then covers a whole batch: under load the batches grow by themselves, at low load a
//! batch is one notify and adds no latency. Durability is never weakened: no reply says SUCCESS
//! before the commit that records it.
//!
//! SQLite takes one writer at a time, so it gets one writer thread. PostgreSQL gets two, each
//! with its own queue and its own transactions in flight at once: a batch spends most of its time
//! waiting on round trips, and PostgreSQL groups concurrent commits into one WAL flush by itself.
//! A notify goes to the writer its `out_trade_no` hashes to, so two writers of one process never
//! touch the same order; each batch takes its orders' row locks in `out_trade_no` order, so
//! writers of different processes (several instances) cannot deadlock on them either.
//!
//! Refused deliveries (anyone can send them) come on a queue of their own, small and bounded:
//! a handler never waits for room on it (a full queue drops the delivery, see
//! `payments::refused`), and the writer logs them only when no genuine notify waits, in batches
//! of their own. However many arrive, they never stand in front of a genuine notify.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::apply::{Applied, confirm_payment};
use super::apply_batch::confirm_payments;
use super::liveness::{Heartbeat, Liveness};
use super::notify::Dialect;
use super::outbox::WebhookOutbox;
use crate::db::notify_log::{self, NewNotifyLog};
use crate::db::{AnyConnection, Backend, Db, DbError};
use crate::domain::{NotifyVerdict, PaymentFacts, Rejection};

/// Upper bound on notifies per transaction, to bound latency and memory.
const MAX_BATCH: usize = 512;
/// Refused deliveries waiting at most; more are dropped by the handler.
pub const REFUSED_QUEUE: usize = 256;
/// Refused deliveries per transaction: small, so that a genuine notify arriving while one is
/// written waits little.
const REFUSED_BATCH: usize = 64;
/// How long a batch waits for a database connection: WeChat waits about 5 s for an answer, so
/// when the database is away the notify is answered FAIL (WeChat retries) before WeChat gives up.
const CONNECTION_WAIT: Duration = Duration::from_secs(2);
/// A batch busy for longer than this is stuck (`/readyz`): it waits at most [`CONNECTION_WAIT`]
/// for its connection, and even the largest batch commits in well under a second.
const STUCK_AFTER: Duration = Duration::from_secs(60);
/// Writer threads on PostgreSQL: two, so that one batch's round trips overlap the other's work.
/// More make the batches smaller, and a batch costs a handful of statements whatever its size
/// (bench/run on 2 cores: 4 writers 3,463 notifies/s, 2 writers 5,033/s, 1 writer 5,032/s with
/// a slower duplicate storm).
const POSTGRES_WRITERS: usize = 2;

/// What a job asks the writer to do besides logging the delivery.
#[derive(Debug)]
pub enum Work {
    /// A verified payment: apply it.
    ConfirmPayment { out_trade_no: String, facts: PaymentFacts, dialect: Dialect },
    /// Nothing to apply (a genuine notify of a failed payment): just log it with this verdict.
    LogOnly { verdict: NotifyVerdict, reason: String, reply: String },
}

/// The verdict given to one delivery, and the exact reply for WeChat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub verdict: NotifyVerdict,
    pub reason: String,
    pub reply: String,
}

struct Job {
    log: NewNotifyLog,
    work: Work,
    done: oneshot::Sender<Result<Verdict, String>>,
}

/// A refused delivery to log as it is (verdict, reason and reply already set).
struct Refused {
    log: NewNotifyLog,
    done: oneshot::Sender<Result<(), String>>,
}

/// The refused queue is full: the delivery is not logged.
#[derive(Debug)]
pub struct QueueFull;

/// The handle handlers use; cheap to clone.
#[derive(Clone)]
pub struct NotifyWriter {
    /// One queue per writer thread.
    tx: Arc<[mpsc::Sender<Job>]>,
    refused: mpsc::Sender<Refused>,
}

impl NotifyWriter {
    /// Starts the writer threads; payments they apply write their webhooks to `outbox`.
    pub fn start(db: Db, outbox: WebhookOutbox, liveness: &Arc<Liveness>) -> NotifyWriter {
        let writers = match db.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_WRITERS,
        };
        let (writer, all_queues) = NotifyWriter::channels(writers);
        for (i, queues) in all_queues.into_iter().enumerate() {
            let (db, outbox) = (db.clone(), outbox.clone());
            let heartbeat = liveness.register(format!("notify-writer-{i}"), STUCK_AFTER);
            thread::Builder::new()
                .name(format!("notify-writer-{i}"))
                .spawn(move || run(db, outbox, queues, heartbeat))
                .expect("a notify writer thread starts");
        }
        writer
    }

    /// Queues for `writers` threads; the first one also logs the refused deliveries.
    fn channels(writers: usize) -> (NotifyWriter, Vec<Queues>) {
        let (refused_tx, refused) = mpsc::channel(REFUSED_QUEUE);
        let mut refused = Some(refused);
        let (senders, queues): (Vec<_>, Vec<_>) = (0..writers.max(1))
            .map(|_| {
                let (tx, genuine) = mpsc::channel(8192);
                // The other writers get a queue whose sender is already gone: never ready.
                let refused = refused.take().unwrap_or_else(|| mpsc::channel(1).1);
                (tx, Queues { genuine, refused, held: None })
            })
            .unzip();
        (NotifyWriter { tx: senders.into(), refused: refused_tx }, queues)
    }

    /// Records a delivery and applies its work; resolves once committed. `log.verdict`,
    /// `log.reason` and `log.reply` are filled in by the writer.
    pub async fn submit(&self, log: NewNotifyLog, work: Work) -> Result<Verdict, String> {
        let (done, wait) = oneshot::channel();
        let tx = &self.tx[shard(order_of(&log, &work), self.tx.len())];
        tx.send(Job { log, work, done }).await.map_err(|_| "the notify writer has stopped".to_owned())?;
        wait.await.map_err(|_| "the notify writer dropped the job".to_owned())?
    }

    /// Queues a refused delivery without waiting for room; the receiver resolves once it is
    /// committed (or could not be).
    pub fn submit_refused(&self, log: NewNotifyLog) -> Result<oneshot::Receiver<Result<(), String>>, QueueFull> {
        let (done, wait) = oneshot::channel();
        self.refused.try_send(Refused { log, done }).map_err(|_| QueueFull)?;
        Ok(wait)
    }
}

/// The order a job touches, if any: it picks the writer and the job's place in a batch.
fn order_of<'a>(log: &'a NewNotifyLog, work: &'a Work) -> &'a str {
    match work {
        Work::ConfirmPayment { out_trade_no, .. } => out_trade_no,
        Work::LogOnly { .. } => log.out_trade_no.as_deref().unwrap_or(""),
    }
}

/// The writer for an order: the same order always goes to the same writer.
fn shard(out_trade_no: &str, writers: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    out_trade_no.hash(&mut hasher);
    // The remainder is below `writers`, a usize: the cast back cannot truncate.
    (hasher.finish() % writers as u64) as usize
}

/// The writer's ends of both queues.
struct Queues {
    genuine: mpsc::Receiver<Job>,
    refused: mpsc::Receiver<Refused>,
    /// A refused delivery taken off its queue while waking up, set aside because a genuine
    /// notify arrived meanwhile.
    held: Option<Refused>,
}

enum Batch {
    Genuine(Vec<Job>),
    Refused(Vec<Refused>),
}

impl Queues {
    /// The next batch to write: every genuine job waiting (up to [`MAX_BATCH`]); refused
    /// deliveries only when none is. Blocks while both queues are empty; `None` once the
    /// handles are gone.
    fn next_batch(&mut self, waiter: &tokio::runtime::Runtime) -> Option<Batch> {
        let genuine = drain(&mut self.genuine, None, MAX_BATCH);
        if !genuine.is_empty() {
            return Some(Batch::Genuine(genuine));
        }
        let refused = drain(&mut self.refused, self.held.take(), REFUSED_BATCH);
        if !refused.is_empty() {
            return Some(Batch::Refused(refused));
        }
        let (genuine, refused) = (&mut self.genuine, &mut self.refused);
        let first = waiter.block_on(async {
            tokio::select! {
                biased;
                Some(job) = genuine.recv() => Some(Ok(job)),
                Some(r) = refused.recv() => Some(Err(r)),
                else => None,
            }
        })?;
        Some(match first {
            Ok(job) => Batch::Genuine(drain(&mut self.genuine, Some(job), MAX_BATCH)),
            Err(r) => match drain(&mut self.genuine, None, MAX_BATCH) {
                genuine if genuine.is_empty() => Batch::Refused(drain(&mut self.refused, Some(r), REFUSED_BATCH)),
                genuine => {
                    self.held = Some(r);
                    Batch::Genuine(genuine)
                }
            },
        })
    }
}

/// `first` and whatever else waits on `rx` right now, at most `max` in all.
fn drain<T>(rx: &mut mpsc::Receiver<T>, first: Option<T>, max: usize) -> Vec<T> {
    let mut batch: Vec<T> = first.into_iter().collect();
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    batch
}

fn run(db: Db, outbox: WebhookOutbox, mut queues: Queues, heartbeat: Heartbeat) {
    // Only for waiting on two queues at once; the writing itself is blocking, on this thread.
    let waiter =
        tokio::runtime::Builder::new_current_thread().build().expect("the notify writer's waiting runtime starts");
    while let Some(batch) = queues.next_batch(&waiter) {
        let _busy = heartbeat.busy();
        let (writer, size) = match &batch {
            Batch::Genuine(jobs) => ("notify", jobs.len()),
            Batch::Refused(refused) => ("notify_refused", refused.len()),
        };
        // A batch is at most MAX_BATCH long: exact as an f64.
        metrics::histogram!("wechat_checkout_group_commit_batch_size", "writer" => writer).record(size as f64);
        match batch {
            Batch::Genuine(jobs) => write_batch(&db, &outbox, jobs),
            Batch::Refused(refused) => write_refused(&db, refused),
        }
    }
}

/// Logs refused deliveries in one transaction of their own.
fn write_refused(db: &Db, batch: Vec<Refused>) {
    let (logs, senders): (Vec<NewNotifyLog>, Vec<_>) = batch.into_iter().map(|r| (r.log, r.done)).unzip();
    let result = db.write_blocking_within(CONNECTION_WAIT, |conn| -> Result<(), DbError> {
        for log in &logs {
            notify_log::insert(conn, log)?;
        }
        Ok(())
    });
    if let Err(e) = &result {
        tracing::error!(error = %e, batch = senders.len(), "refused notifies could not be logged");
    }
    for done in senders {
        let _ = done.send(result.as_ref().map(|_| ()).map_err(ToString::to_string));
    }
}

fn write_batch(db: &Db, outbox: &WebhookOutbox, mut batch: Vec<Job>) {
    // Row locks in one global order (see the module note); a stable sort keeps copies of one
    // notify in their arrival order.
    batch.sort_by(|a, b| order_of(&a.log, &a.work).cmp(order_of(&b.log, &b.work)));
    let (jobs, senders): (Vec<(NewNotifyLog, Work)>, Vec<_>) =
        batch.into_iter().map(|j| ((j.log, j.work), j.done)).unzip();
    // Savepoints cost two round trips per notify and are almost never used: the batch goes
    // without them first, and only if one of its notifies fails is it applied again, each in a
    // savepoint of its own, so that one bad notify cannot fail the others.
    let result = match db.write_blocking_within(CONNECTION_WAIT, |conn| apply_batch(conn, &jobs, outbox, false)) {
        Err(e) if !matches!(e, DbError::Unavailable(_)) => {
            tracing::warn!(error = %e, batch = jobs.len(), "a notify batch failed; applying it notify by notify");
            db.write_blocking_within(CONNECTION_WAIT, |conn| apply_batch(conn, &jobs, outbox, true))
        }
        first => first,
    };
    match result {
        Ok(verdicts) => {
            for (done, verdict) in senders.into_iter().zip(verdicts) {
                let _ = done.send(Ok(verdict));
            }
        }
        Err(e) => {
            // Nothing was committed: every delivery gets FAIL so WeChat retries it.
            tracing::error!(error = %e, batch = senders.len(), "notify batch could not be committed");
            for done in senders {
                let _ = done.send(Err(e.to_string()));
            }
        }
    }
}

/// Applies every job of a batch and logs each delivery with its verdict. `in_savepoints`: each
/// payment on its own, in a savepoint, its failure a FAIL verdict; otherwise the batch's payments
/// together (`apply_batch`), and any failure fails the batch.
fn apply_batch(
    conn: &mut AnyConnection,
    jobs: &[(NewNotifyLog, Work)],
    outbox: &WebhookOutbox,
    in_savepoints: bool,
) -> Result<Vec<Verdict>, DbError> {
    let payments: Vec<(&str, &PaymentFacts)> = jobs
        .iter()
        .filter_map(|(_, work)| match work {
            Work::ConfirmPayment { out_trade_no, facts, .. } if !in_savepoints => Some((out_trade_no.as_str(), facts)),
            _ => None,
        })
        .collect();
    let mut applied = confirm_payments(conn, &payments, outbox)?.into_iter();
    let mut verdicts = Vec::with_capacity(jobs.len());
    let mut rows = Vec::with_capacity(jobs.len());
    for (log, work) in jobs {
        let verdict = match work {
            Work::ConfirmPayment { facts, .. } if !in_savepoints => {
                let applied = applied.next().ok_or_else(|| DbError::Corrupt("a payment went missing".into()))?;
                verdict_of(&applied, facts, work_dialect(work))
            }
            _ => process(conn, work, outbox),
        };
        let mut row = log.clone();
        row.verdict = verdict.verdict;
        row.reason.clone_from(&verdict.reason);
        row.reply.clone_from(&verdict.reply);
        rows.push(row);
        verdicts.push(verdict);
    }
    notify_log::insert_many(conn, &rows)?;
    Ok(verdicts)
}

/// Applies one job inside its own savepoint; an error rolls back just this job.
fn process(conn: &mut AnyConnection, work: &Work, outbox: &WebhookOutbox) -> Verdict {
    match work {
        Work::LogOnly { verdict, reason, reply } => {
            Verdict { verdict: *verdict, reason: reason.clone(), reply: reply.clone() }
        }
        Work::ConfirmPayment { out_trade_no, facts, dialect } => {
            let applied = crate::db::savepoint(conn, |c| confirm_payment(c, out_trade_no, facts, outbox));
            match applied {
                Ok(applied) => verdict_of(&applied, facts, *dialect),
                Err(e) => {
                    tracing::error!(%out_trade_no, error = %e, "notify could not be applied");
                    Verdict {
                        verdict: NotifyVerdict::Error,
                        reason: e.to_string(),
                        reply: dialect.failure("处理失败，请重试"),
                    }
                }
            }
        }
    }
}

/// The protocol a job's delivery is answered in.
fn work_dialect(work: &Work) -> Dialect {
    match work {
        Work::ConfirmPayment { dialect, .. } => *dialect,
        Work::LogOnly { .. } => Dialect::V2,
    }
}

fn verdict_of(applied: &Applied, facts: &PaymentFacts, dialect: Dialect) -> Verdict {
    use NotifyVerdict as V;
    let ok = |verdict: NotifyVerdict, reason: String| Verdict { verdict, reason, reply: dialect.success() };
    match applied {
        Applied::Changed { transition, .. } if transition.paid_after_close => {
            ok(V::PaidAfterClose, "payment for a closed order recorded; exception raised".into())
        }
        Applied::Changed { transition, .. } => ok(V::Paid, format!("{} -> {}", transition.from, transition.to)),
        Applied::AlreadyDone { .. } => ok(V::Duplicate, "already paid with this transaction".into()),
        // The remaining cases are real WeChat messages we cannot apply. Retrying cannot change
        // them, so WeChat is told SUCCESS and a person is told by an exception.
        Applied::UnknownOrder => ok(V::UnknownOrder, "no such order; exception raised".into()),
        Applied::Refused { rejection: Rejection::AmountMismatch { expected, reported }, .. } => ok(
            V::AmountMismatch,
            format!("order is {} fen, WeChat reports {} fen; exception raised", expected.get(), reported.get()),
        ),
        Applied::Refused { rejection: Rejection::ConflictingPayment { recorded, .. }, .. } => {
            ok(V::ConflictingPayment, json!({ "recorded": recorded, "received": facts.transaction_id }).to_string())
        }
        Applied::Refused { order, rejection } => ok(V::Refused, format!("{rejection:?} in state {}", order.state)),
    }
}

#[cfg(test)]
mod tests;
