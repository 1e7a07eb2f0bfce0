//! Migrations run up, down and up again on both backends, and every column of the schema can be
//! written and read back through `schema.rs`.

mod common;

use chrono::NaiveDateTime;
use common::app::TestDb;
use diesel::prelude::*;
use wechat_checkout::db::schema::*;
use wechat_checkout::db::{self, AnyConnection, Db};

fn exercise(url: &str) {
    assert!(!db::migrate::run_pending(url).unwrap().is_empty());
    assert!(db::migrate::run_pending(url).unwrap().is_empty(), "a second run applies nothing");
    assert!(db::migrate::revert_all(url).unwrap() > 0);
    assert!(!db::migrate::run_pending(url).unwrap().is_empty(), "down.sql undid up.sql completely");
    let database = Db::connect(url, 2).unwrap();
    let mut conn = database.conn().unwrap();
    round_trip_every_column(&mut conn);
}

fn round_trip_every_column(c: &mut AnyConnection) {
    let t: NaiveDateTime = db::now();
    diesel::insert_into(orders::table)
        .values((
            orders::out_trade_no.eq("WC1"),
            orders::merchant_order_id.eq("M1"),
            orders::amount_fen.eq(1990i64),
            orders::description.eq("描述"),
            orders::attach.eq(Some("a")),
            orders::state.eq("PAID"),
            orders::sign_type.eq("MD5"),
            orders::openid.eq(Some("o1")),
            orders::client_ip.eq(Some("::1")),
            orders::prepay_id.eq(Some("wx1")),
            orders::prepay_created_at.eq(Some(t)),
            orders::transaction_id.eq(Some("4200")),
            orders::paid_fen.eq(Some(1990i64)),
            orders::paid_at.eq(Some(t)),
            orders::paid_after_close.eq(1),
            orders::refunded_fen.eq(0i64),
            orders::created_at.eq(t),
            orders::updated_at.eq(t),
            orders::expires_at.eq(t),
            orders::closed_at.eq(Some(t)),
            orders::last_queried_at.eq(Some(t)),
        ))
        .execute(c)
        .unwrap();
    let order = db::orders::find(c, "WC1").unwrap().unwrap();
    assert_eq!(order.amount.get(), 1990);
    assert_eq!(order.paid_at.unwrap().naive_utc(), t, "timestamps round-trip to the microsecond");
    assert!(order.paid_after_close);

    diesel::insert_into(order_events::table)
        .values((
            order_events::out_trade_no.eq("WC1"),
            order_events::kind.eq("created"),
            order_events::from_state.eq(None::<String>),
            order_events::to_state.eq(Some("CREATED")),
            order_events::source.eq("api"),
            order_events::detail.eq("{}"),
            order_events::created_at.eq(t),
        ))
        .execute(c)
        .unwrap();
    assert_eq!(db::events::for_order(c, "WC1").unwrap()[0].created_at, t);

    diesel::insert_into(notify_log::table)
        .values((
            notify_log::kind.eq("payment"),
            notify_log::received_at.eq(t),
            notify_log::remote_addr.eq(Some("127.0.0.1")),
            notify_log::out_trade_no.eq(Some("WC1")),
            notify_log::transaction_id.eq(Some("4200")),
            notify_log::verdict.eq("paid"),
            notify_log::reason.eq(""),
            notify_log::raw_body.eq("<xml/>"),
            notify_log::reply.eq("<xml/>"),
        ))
        .execute(c)
        .unwrap();
    assert_eq!(db::notify_log::for_order(c, "WC1").unwrap().len(), 1);

    diesel::insert_into(exceptions::table)
        .values((
            exceptions::kind.eq("amount_mismatch"),
            exceptions::dedupe_key.eq("k1"),
            exceptions::out_trade_no.eq(Some("WC1")),
            exceptions::detail.eq("{}"),
            exceptions::created_at.eq(t),
            exceptions::resolved_at.eq(Some(t)),
            exceptions::resolved_by.eq(Some("admin")),
            exceptions::resolution_note.eq(Some("ok")),
        ))
        .execute(c)
        .unwrap();
    assert_eq!(db::exceptions::for_order(c, "WC1").unwrap()[0].resolution_note.as_deref(), Some("ok"));

    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::name.eq("t"),
            api_tokens::token_hash.eq("h"),
            api_tokens::created_at.eq(t),
            api_tokens::revoked_at.eq(None::<NaiveDateTime>),
        ))
        .execute(c)
        .unwrap();
    // A token inserted without a scope (as every token issued before scopes was) keeps them all.
    let token = db::tokens::find_active(c, "h").unwrap().expect("active token");
    assert_eq!(token.scope, wechat_checkout::domain::ApiScope::Refund);
    assert!(db::oauth_states::consume(c, "n1", t).unwrap());
    assert!(!db::oauth_states::consume(c, "n1", t).unwrap(), "a nonce is used once");

    let later = t + chrono::Duration::minutes(1);
    assert!(db::job_runs::claim(c, "retention", "a", t, later, None).unwrap());
    assert!(!db::job_runs::claim(c, "retention", "b", t, later, None).unwrap(), "the lease is held");
    assert!(db::job_runs::finish(c, "retention", "a", t).unwrap());
    assert_eq!(db::job_runs::last_finished(c, "retention").unwrap(), Some(t));
    assert!(!db::job_runs::claim(c, "retention", "b", later, later, Some(t)).unwrap(), "not due yet");
    assert!(db::job_runs::claim(c, "retention", "b", later, later, Some(later)).unwrap());
}

#[test]
fn sqlite_up_down_up_and_every_column() {
    let dir = tempfile::tempdir().unwrap();
    exercise(&TestDb::sqlite(&dir).url());
}

#[test]
fn postgres_up_down_up_and_every_column() {
    let Some(db) = TestDb::postgres() else {
        eprintln!("TEST_DATABASE_URL not set: PostgreSQL run skipped");
        return;
    };
    exercise(&db.url());
    db.cleanup();
}
