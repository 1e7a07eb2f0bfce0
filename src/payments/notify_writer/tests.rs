//! The writer's queues and its order of work, on real queues and a real SQLite file.

use super::*;
use crate::config::{AppConfig, RawSettings};
use crate::domain::NotifyKind;
use crate::wxpay::notify::{SUCCESS_REPLY, fail_reply};

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
    writer.tx[0].try_send(Job { log, work, done }).unwrap();
    (waits, genuine)
}

#[test]
fn a_genuine_notify_queued_behind_a_full_refused_queue_is_the_first_batch() {
    let (writer, mut queues) = NotifyWriter::channels(1);
    let mut queues = queues.remove(0);
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
    let (writer, mut queues) = NotifyWriter::channels(1);
    let queues = queues.remove(0);
    let (waits, genuine) = refused_flood_then_genuine(&writer);
    let outbox = WebhookOutbox::new(Arc::new(AppConfig::validate(RawSettings::default()).unwrap()));
    let thread = thread::spawn({
        let db = db.clone();
        let liveness = Arc::new(crate::payments::liveness::Liveness::default());
        let heartbeat = liveness.register("notify-writer-0", Duration::from_secs(60));
        move || run(db, outbox, queues, heartbeat)
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

#[test]
fn one_order_always_goes_to_one_writer_and_orders_spread_over_all() {
    let nos: Vec<String> = (0..1000).map(|i| format!("WC2026120200000{i:05}")).collect();
    let mut per_writer = [0usize; POSTGRES_WRITERS];
    for no in &nos {
        let writer = shard(no, POSTGRES_WRITERS);
        assert_eq!(writer, shard(no, POSTGRES_WRITERS), "the same order, the same writer");
        per_writer[writer] += 1;
    }
    assert!(per_writer.iter().all(|&n| n > 150), "{per_writer:?}");
    assert!(nos.iter().all(|no| shard(no, 1) == 0));
}
