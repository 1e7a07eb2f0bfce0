//! The notify writer's batch path (`apply_batch::confirm_payments`, a few statements for a whole
//! batch) decides every case as `confirm_payment` does one by one, on SQLite and PostgreSQL: an
//! ordinary payment, its duplicate in the same batch, an order paid before, a payment after close,
//! another amount, another transaction, an unknown order; and writes exactly what it would.

mod common;

use std::sync::Arc;

use common::app::{TestApp, on_every_backend};
use wechat_checkout::config::{AppConfig, RawSettings};
use wechat_checkout::db::{Db, events, exceptions};
use wechat_checkout::domain::{Fen, OrderState, PaymentFacts, PaymentSource, TimelineSource};
use wechat_checkout::payments::apply::{Applied, Change, apply_change, confirm_payment};
use wechat_checkout::payments::apply_batch::confirm_payments;
use wechat_checkout::payments::outbox::WebhookOutbox;

fn facts(transaction_id: &str, fen: i64) -> PaymentFacts {
    PaymentFacts {
        transaction_id: transaction_id.into(),
        total_fee: Fen::new(fen),
        paid_at: chrono::Utc::now(),
        source: PaymentSource::Notify,
    }
}

fn paid_transitions(db: &Db, no: &str) -> usize {
    let timeline = events::for_order(&mut db.conn().unwrap(), no).unwrap();
    timeline.iter().filter(|e| e.to_state.as_deref() == Some("PAID")).count()
}

/// What each result is, in a word, with the order's state where there is one.
fn shape(applied: &Applied) -> String {
    match applied {
        Applied::Changed { order, transition } => {
            format!("changed to {} (after close: {})", order.state.as_str(), transition.paid_after_close)
        }
        Applied::AlreadyDone { order } => format!("already {}", order.state.as_str()),
        Applied::Refused { rejection, .. } => format!("refused {rejection:?}"),
        Applied::UnknownOrder => "unknown".into(),
    }
}

#[tokio::test]
async fn a_batch_decides_and_writes_each_case_as_one_by_one_would() {
    on_every_backend(|app: TestApp| async move {
        let nos: Vec<String> = futures::future::join_all(
            ["fresh", "before", "closed", "amount", "other-tx"].map(|m| app.create_order(m, 500)),
        )
        .await
        .into_iter()
        .map(|o| o["out_trade_no"].as_str().unwrap().to_owned())
        .collect();
        let [fresh, before, closed, amount, other_tx] = [0, 1, 2, 3, 4].map(|i| nos[i].clone());
        let outbox = WebhookOutbox::new(Arc::new(AppConfig::validate(RawSettings::default()).unwrap()));
        let db = app.db_handle();
        let (paid_before, other_before) = (facts("4200000001", 500), facts("4200000002", 500));
        db.write_blocking(|c| {
            confirm_payment(c, &before, &paid_before, &outbox)?;
            confirm_payment(c, &other_tx, &other_before, &outbox)?;
            apply_change(c, &closed, Change::Closed, TimelineSource::Close, serde_json::json!({}), &outbox)
        })
        .unwrap();

        let (pay_fresh, pay_closed) = (facts("4200000010", 500), facts("4200000011", 500));
        let (wrong_amount, second_tx, nobody) =
            (facts("4200000012", 499), facts("4200000013", 500), facts("4200000014", 500));
        let batch = [
            (amount.as_str(), &wrong_amount),
            (before.as_str(), &paid_before),
            (closed.as_str(), &pay_closed),
            (fresh.as_str(), &pay_fresh),
            (fresh.as_str(), &pay_fresh),
            (other_tx.as_str(), &second_tx),
            ("WC_NO_SUCH_ORDER", &nobody),
        ];
        let results = db.write_blocking(|c| confirm_payments(c, &batch, &outbox)).unwrap();
        let shapes: Vec<String> = results.iter().map(shape).collect();
        assert_eq!(
            shapes,
            [
                "refused AmountMismatch { expected: Fen(500), reported: Fen(499) }",
                "already PAID",
                "changed to PAID (after close: true)",
                "changed to PAID (after close: false)",
                "already PAID",
                "refused ConflictingPayment { recorded: \"4200000002\", received: \"4200000013\" }",
                "unknown",
            ],
        );

        let fresh_order = common::app::order_row(&db, &fresh);
        assert_eq!(fresh_order.state, OrderState::Paid);
        assert_eq!(fresh_order.transaction_id.as_deref(), Some("4200000010"));
        assert_eq!(fresh_order.paid, Some(Fen::new(500)));
        assert!(fresh_order.paid_at.is_some() && !fresh_order.paid_after_close);
        for (no, n) in [(&fresh, 1), (&before, 1), (&closed, 1), (&amount, 0), (&other_tx, 1)] {
            assert_eq!(paid_transitions(&db, no), n, "paid transitions of {no}");
        }
        let open = exceptions::open(&mut db.conn().unwrap(), 100).unwrap();
        let mut kinds: Vec<&str> = open.iter().map(|e| e.kind.as_str()).collect();
        kinds.sort_unstable();
        assert_eq!(kinds, ["amount_mismatch", "conflicting_payment", "paid_after_close", "unknown_order"]);
        app
    })
    .await;
}
