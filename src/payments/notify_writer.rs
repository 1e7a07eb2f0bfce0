//! Group commit for notifies. Handlers hand verified notifies to one writer thread, which
//! applies every notify waiting at that moment in a single transaction (each in its own
//! savepoint) and answers each handler only after that transaction is durably committed.
//!
//! One fsync then covers a whole batch: under load the batches grow by themselves, at low load a
//! batch is one notify and adds no latency. Durability is never weakened: no reply says SUCCESS
//! before the commit that records it.
//!
//! Refused deliveries (anyone can send them) come on a queue of their own, small and bounded:
//! a handler never waits for room on it (a full queue drops the delivery, see
//! `payments::refused`), and the writer logs them only when no genuine notify waits, in batches
//! of their own. However many arrive, they never stand in front of a genuine notify.

use std::thread;

use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::apply::{Applied, confirm_payment};
use super::outbox::WebhookOutbox;
use crate::db::notify_log::{self, NewNotifyLog};
use crate::db::{AnyConnection, Db, DbError};
use crate::domain::{NotifyVerdict, PaymentFacts, Rejection};
use crate::wxpay::notify::{SUCCESS_REPLY, fail_reply};

/// Upper bound on notifies per transaction, to bound latency and memory.
const MAX_BATCH: usize = 512;
/// Refused deliveries waiting at most; more are dropped by the handler.
pub const REFUSED_QUEUE: usize = 256;
/// Refused deliveries per transaction: small, so that a genuine notify arriving while one is
/// written waits little.
const REFUSED_BATCH: usize = 64;

/// What a job asks the writer to do besides logging the delivery.
#[derive(Debug)]
pub enum Work {
    /// A verified payment: apply it.
    ConfirmPayment { out_trade_no: String, facts: PaymentFacts },
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
    tx: mpsc::Sender<Job>,
    refused: mpsc::Sender<Refused>,
}

impl NotifyWriter {
    /// Starts the writer thread; payments it applies write their webhooks to `outbox`.
    pub fn start(db: Db, outbox: WebhookOutbox) -> NotifyWriter {
        let (writer, queues) = NotifyWriter::channels();
        thread::Builder::new()
            .name("notify-writer".into())
            .spawn(move || run(db, outbox, queues))
            .expect("the notify writer thread starts");
        writer
    }

    fn channels() -> (NotifyWriter, Queues) {
        let (tx, genuine) = mpsc::channel(8192);
        let (refused_tx, refused) = mpsc::channel(REFUSED_QUEUE);
        (NotifyWriter { tx, refused: refused_tx }, Queues { genuine, refused, held: None })
    }

    /// Records a delivery and applies its work; resolves once committed. `log.verdict`,
    /// `log.reason` and `log.reply` are filled in by the writer.
    pub async fn submit(&self, log: NewNotifyLog, work: Work) -> Result<Verdict, String> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Job { log, work, done }).await.map_err(|_| "the notify writer has stopped".to_owned())?;
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

fn run(db: Db, outbox: WebhookOutbox, mut queues: Queues) {
    // Only for waiting on two queues at once; the writing itself is blocking, on this thread.
    let waiter =
        tokio::runtime::Builder::new_current_thread().build().expect("the notify writer's waiting runtime starts");
    while let Some(batch) = queues.next_batch(&waiter) {
        match batch {
            Batch::Genuine(jobs) => write_batch(&db, &outbox, jobs),
            Batch::Refused(refused) => write_refused(&db, refused),
        }
    }
}

/// Logs refused deliveries in one transaction of their own.
fn write_refused(db: &Db, batch: Vec<Refused>) {
    let (logs, senders): (Vec<NewNotifyLog>, Vec<_>) = batch.into_iter().map(|r| (r.log, r.done)).unzip();
    let result = db.write_blocking(|conn| -> Result<(), DbError> {
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

fn write_batch(db: &Db, outbox: &WebhookOutbox, batch: Vec<Job>) {
    let (logs_and_work, senders): (Vec<(NewNotifyLog, Work)>, Vec<_>) =
        batch.into_iter().map(|j| ((j.log, j.work), j.done)).unzip();
    let result = db.write_blocking(|conn| -> Result<Vec<Verdict>, DbError> {
        let mut verdicts = Vec::with_capacity(logs_and_work.len());
        for (log, work) in &logs_and_work {
            let verdict = process(conn, work, outbox);
            let mut row = log.clone();
            row.verdict = verdict.verdict;
            row.reason.clone_from(&verdict.reason);
            row.reply.clone_from(&verdict.reply);
            notify_log::insert(conn, &row)?;
            verdicts.push(verdict);
        }
        Ok(verdicts)
    });
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

/// Applies one job inside its own savepoint; an error rolls back just this job.
fn process(conn: &mut AnyConnection, work: &Work, outbox: &WebhookOutbox) -> Verdict {
    match work {
        Work::LogOnly { verdict, reason, reply } => {
            Verdict { verdict: *verdict, reason: reason.clone(), reply: reply.clone() }
        }
        Work::ConfirmPayment { out_trade_no, facts } => {
            let applied = crate::db::savepoint(conn, |c| confirm_payment(c, out_trade_no, facts, outbox));
            match applied {
                Ok(applied) => verdict_of(&applied, facts),
                Err(e) => {
                    tracing::error!(%out_trade_no, error = %e, "notify could not be applied");
                    Verdict {
                        verdict: NotifyVerdict::Error,
                        reason: e.to_string(),
                        reply: fail_reply("处理失败，请重试"),
                    }
                }
            }
        }
    }
}

fn verdict_of(applied: &Applied, facts: &PaymentFacts) -> Verdict {
    use NotifyVerdict as V;
    let ok = |verdict: NotifyVerdict, reason: String| Verdict { verdict, reason, reply: SUCCESS_REPLY.to_owned() };
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
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{AppConfig, RawSettings};
    use crate::domain::NotifyKind;

    type Done<T> = oneshot::Receiver<Result<T, String>>;

    /// Fills the refused queue, then queues one genuine job (a notify of a failed payment).
    fn refused_flood_then_genuine(writer: &NotifyWriter) -> (Vec<Done<()>>, Done<Verdict>) {
        let refused = |i: usize| {
            let mut log = NewNotifyLog::received(NotifyKind::Payment, format!("<xml>{i}</xml>"), None);
            (log.verdict, log.reply) = (NotifyVerdict::BadSignature, fail_reply("签名错误"));
            log
        };
        let waits: Vec<_> = (0..REFUSED_QUEUE).map(|i| writer.submit_refused(refused(i)).unwrap()).collect();
        assert!(writer.submit_refused(refused(REFUSED_QUEUE)).is_err(), "a full refused queue turns one away at once");
        let (done, genuine) = oneshot::channel();
        let log = NewNotifyLog::received(NotifyKind::Payment, "<xml>genuine</xml>".into(), None);
        let reply = SUCCESS_REPLY.to_owned();
        let work = Work::LogOnly { verdict: NotifyVerdict::PaymentFailed, reason: "NOTENOUGH".into(), reply };
        writer.tx.try_send(Job { log, work, done }).unwrap();
        (waits, genuine)
    }

    #[test]
    fn a_genuine_notify_queued_behind_a_full_refused_queue_is_the_first_batch() {
        let (writer, mut queues) = NotifyWriter::channels();
        let _waits = refused_flood_then_genuine(&writer);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(matches!(queues.next_batch(&rt), Some(Batch::Genuine(jobs)) if jobs.len() == 1));
        let mut refused = 0;
        while refused < REFUSED_QUEUE {
            match queues.next_batch(&rt) {
                Some(Batch::Refused(batch)) => {
                    assert!(batch.len() <= REFUSED_BATCH);
                    refused += batch.len();
                }
                _ => panic!("only refused deliveries are left"),
            }
        }
    }

    #[test]
    fn on_a_real_database_the_genuine_notify_is_committed_before_any_refused_one() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("writer.sqlite").to_string_lossy().into_owned();
        crate::db::migrate::run_pending(&url).unwrap();
        let db = Db::connect(&url, 2).unwrap();
        let (writer, queues) = NotifyWriter::channels();
        let (waits, genuine) = refused_flood_then_genuine(&writer);
        let outbox = WebhookOutbox::new(Arc::new(AppConfig::validate(RawSettings::default()).unwrap()));
        let thread = thread::spawn({
            let db = db.clone();
            move || run(db, outbox, queues)
        });
        assert_eq!(genuine.blocking_recv().unwrap().unwrap().verdict, NotifyVerdict::PaymentFailed);
        for wait in waits {
            wait.blocking_recv().unwrap().unwrap();
        }
        drop(writer);
        thread.join().unwrap();
        let rows = notify_log::page(&mut db.conn().unwrap(), None, None, None, 10_000).unwrap();
        assert_eq!(rows.len(), REFUSED_QUEUE + 1);
        let first = rows.iter().min_by_key(|r| r.id).unwrap();
        assert_eq!((first.verdict.as_str(), first.raw_body.as_str()), ("payment_failed", "<xml>genuine</xml>"));
    }
}
