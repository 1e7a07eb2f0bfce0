//! Group commit for notifies. Handlers hand verified notifies to one writer thread, which
//! applies every notify waiting at that moment in a single transaction (each in its own
//! savepoint) and answers each handler only after that transaction is durably committed.
//!
//! One fsync then covers a whole batch: under load the batches grow by themselves, at low load a
//! batch is one notify and adds no latency. Durability is never weakened: no reply says SUCCESS
//! before the commit that records it.

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

/// What a job asks the writer to do besides logging the delivery.
#[derive(Debug)]
pub enum Work {
    /// A verified payment: apply it.
    ConfirmPayment { out_trade_no: String, facts: PaymentFacts },
    /// Nothing to apply (a refused or failed notify): just log it with this verdict.
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

/// The handle handlers use; cheap to clone.
#[derive(Clone)]
pub struct NotifyWriter {
    tx: mpsc::Sender<Job>,
}

impl NotifyWriter {
    /// Starts the writer thread; payments it applies write their webhooks to `outbox`.
    pub fn start(db: Db, outbox: WebhookOutbox) -> NotifyWriter {
        let (tx, rx) = mpsc::channel(8192);
        thread::Builder::new()
            .name("notify-writer".into())
            .spawn(move || run(db, outbox, rx))
            .expect("the notify writer thread starts");
        NotifyWriter { tx }
    }

    /// Records a delivery and applies its work; resolves once committed. `log.verdict`,
    /// `log.reason` and `log.reply` are filled in by the writer.
    pub async fn submit(&self, log: NewNotifyLog, work: Work) -> Result<Verdict, String> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Job { log, work, done }).await.map_err(|_| "the notify writer has stopped".to_owned())?;
        wait.await.map_err(|_| "the notify writer dropped the job".to_owned())?
    }
}

fn run(db: Db, outbox: WebhookOutbox, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        write_batch(&db, &outbox, batch);
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
