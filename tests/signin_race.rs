//! 1,000 parallel wrong-password sign-ins against one account, over real HTTP: none succeeds,
//! the account locks after `MAX_FAILURES_PER_ACCOUNT` verifications, and no more than
//! `password::MAX_CONCURRENT` Argon2 computations ever run at once. No other test of this binary
//! verifies a password, so the process-wide Argon2 counters it reads count nothing else. And the
//! account's guard on its own, raced by parallel transactions from many connections.

mod common;

use common::admin::*;
use common::app::on_every_backend;
use futures::future::join_all;
use wechat_checkout::db::{Db, staff};
use wechat_checkout::staff::Role;
use wechat_checkout::staff::login::MAX_FAILURES_PER_ACCOUNT;
use wechat_checkout::staff::password;

const PARALLEL: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_passwords_lock_the_account_after_the_limit() {
    on_every_backend(|app| async move {
        create_staff(&app, "clerk", Role::Viewer);
        let verified_before = password::verifications_run();

        // One browser: its CSRF cookie and token serve every request; reqwest opens as many
        // connections as there are requests in flight.
        let client = browser();
        let page = client.get(app.url("/admin/login")).send().await.unwrap().text().await.unwrap();
        let csrf = csrf_of(&page);
        let attempts = (0..PARALLEL).map(|i| {
            let (client, csrf, url) = (client.clone(), csrf.clone(), app.url("/admin/login"));
            async move {
                let guess = format!("wrong-password-{i}");
                let form = [("username", "clerk"), ("password", guess.as_str()), ("csrf", csrf.as_str())];
                client.post(url).form(&form).send().await.unwrap().status().as_u16()
            }
        });
        let statuses = join_all(attempts).await;

        assert!(!statuses.contains(&303), "a wrong password signed in");
        assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
        let verified = password::verifications_run() - verified_before;
        assert!(
            verified <= MAX_FAILURES_PER_ACCOUNT as u64,
            "{verified} passwords were verified for one account; at most {MAX_FAILURES_PER_ACCOUNT} may be"
        );
        let clerk = staff::find_by_username(&mut app.db_handle().conn().unwrap(), "clerk").unwrap().unwrap();
        assert!(clerk.is_locked(chrono::Utc::now()), "the account is locked: {clerk:?}");

        // Lift the per-IP limit behind the app's back: the lock alone refuses the right password.
        let later = wechat_checkout::db::now() + chrono::Duration::hours(1);
        wechat_checkout::db::retention::purge_signin_attempts(&mut app.db_handle().conn().unwrap(), later, 100_000)
            .unwrap();
        let res = try_sign_in(&app, &browser(), "clerk", STAFF_PASSWORD).await;
        assert_eq!(res.status(), 401, "the right password does not open a locked account");
        app
    })
    .await;
    let peak = password::argon2_in_flight_peak();
    assert!(
        (1..=password::MAX_CONCURRENT).contains(&peak),
        "{peak} Argon2 computations ran at once; at most {} may",
        password::MAX_CONCURRENT
    );
}

/// All the sign-ins over HTTP come from one IP, whose own lock serializes them; here parallel
/// transactions on separate connections race the account's guard alone. Exactly
/// `MAX_FAILURES_PER_ACCOUNT` are counted (the last of them locks), every other finds it closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_account_guard_admits_exactly_the_limit_under_parallel_transactions() {
    on_every_backend(|app| async move {
        create_staff(&app, "clerk", Role::Viewer);
        let db = Db::connect(&app.db.url(), 16).unwrap();
        let id = staff::find_by_username(&mut db.conn().unwrap(), "clerk").unwrap().unwrap().id;
        let tries = (0..64).map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |c| {
                    let now = wechat_checkout::db::now();
                    let until = now + chrono::Duration::minutes(15);
                    staff::count_failure_up_front(c, id, now, MAX_FAILURES_PER_ACCOUNT, until)
                })
                .await
                .unwrap()
            })
        });
        let counted: Vec<staff::Counted> = join_all(tries).await.into_iter().map(Result::unwrap).collect();
        let open = counted.iter().filter(|c| **c == staff::Counted::Open).count();
        let locked = counted.iter().filter(|c| matches!(c, staff::Counted::Locked(_))).count();
        assert_eq!((open, locked), (MAX_FAILURES_PER_ACCOUNT as usize - 1, 1), "{counted:?}");
        app
    })
    .await;
}
