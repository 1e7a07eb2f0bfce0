//! Admin sign-in, sessions, lockout, CSRF and origin checks, over real HTTP.

mod common;

use common::admin::*;
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, on_every_backend, on_every_backend_with};
use wechat_checkout::db::{audit, staff};
use wechat_checkout::domain::AuditAction;
use wechat_checkout::domain::records::AuditFilter;
use wechat_checkout::staff::Role;
use wechat_checkout::staff::login::MAX_FAILURES_PER_ACCOUNT;

#[tokio::test]
async fn sign_in_out_and_password_change() {
    let app = TestApp::sqlite().await;
    // No session: pages redirect to the sign-in page, keeping where to come back to.
    let anonymous = browser();
    let res = anonymous.get(app.url("/admin/account/password")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/admin/login?next=%2Fadmin%2Faccount%2Fpassword");

    let wrong = try_sign_in(&app, &browser(), ADMIN_USER, "not the password").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("用户名或密码错误"));

    let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let (status, _) = get(&app, &admin, "/admin/account/password").await;
    assert_eq!(status, 200);

    // Change the password: the old one stops working, the session continues.
    let res = post_form(
        &app,
        &admin,
        "/admin/account/password",
        "/admin/account/password",
        &[("current", ADMIN_PASSWORD), ("new", "a-brand-new-password"), ("confirm", "a-brand-new-password")],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(get(&app, &admin, "/admin/account/password").await.0, 200);
    assert_eq!(try_sign_in(&app, &browser(), ADMIN_USER, ADMIN_PASSWORD).await.status(), 401);
    sign_in(&app, ADMIN_USER, "a-brand-new-password").await;

    // Logout ends the session.
    let res = post_form(&app, &admin, "/admin/account/password", "/admin/logout", &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(admin.get(app.url("/admin/account/password")).send().await.unwrap().status(), 303);
    app.stop().await;
}

#[tokio::test]
async fn repeated_failures_lock_the_account_until_unlocked() {
    let app = TestApp::sqlite().await;
    create_staff(&app, "clerk", Role::Viewer);
    for _ in 0..5 {
        assert_eq!(try_sign_in(&app, &browser(), "clerk", "wrong-password").await.status(), 401);
    }
    let locked = try_sign_in(&app, &browser(), "clerk", STAFF_PASSWORD).await;
    // The answer is an unknown user's: it does not tell that the account exists.
    assert_eq!(locked.status(), 401, "the right password does not open a locked account");
    assert!(locked.text().await.unwrap().contains("用户名或密码错误"));
    app.stop().await;
}

#[tokio::test]
async fn csrf_and_origin_are_enforced_on_every_post() {
    let app = TestApp::sqlite().await;
    let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let fields = [("current", ADMIN_PASSWORD), ("new", "another-password-1"), ("confirm", "another-password-1")];
    // No token.
    let res = admin.post(app.url("/admin/account/password")).form(&fields).send().await.unwrap();
    assert_eq!(res.status(), 403);
    // A wrong token.
    let mut with_wrong = fields.to_vec();
    with_wrong.push(("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    let res = admin.post(app.url("/admin/account/password")).form(&with_wrong).send().await.unwrap();
    assert_eq!(res.status(), 403);
    // The right token from a foreign origin.
    let (_, page) = get(&app, &admin, "/admin/account/password").await;
    let csrf = csrf_of(&page);
    let mut with_token = fields.to_vec();
    with_token.push(("csrf", &csrf));
    for (header, value) in [("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")] {
        let res = admin
            .post(app.url("/admin/account/password"))
            .header(header, value)
            .form(&with_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{header}: {value}");
    }
    // The password did not change through any of those.
    sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    // The sign-in form itself is CSRF-protected too.
    let res = browser()
        .post(app.url("/admin/login"))
        .form(&[("username", ADMIN_USER), ("password", ADMIN_PASSWORD), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    app.stop().await;
}

/// The answer to a sign-in: status and body. One browser asks every time, so the CSRF token in
/// the page is the same too.
async fn answer(app: &TestApp, client: &reqwest::Client, username: &str, password: &str) -> (u16, String) {
    let res = try_sign_in(app, client, username, password).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn unknown_wrong_locked_and_disabled_accounts_get_one_answer() {
    on_every_backend(|app| async move {
        create_staff(&app, "clerk", Role::Viewer);
        create_staff(&app, "former", Role::Viewer);
        let db = app.db_handle();
        let former = staff::find_by_username(&mut db.conn().unwrap(), "former").unwrap().unwrap();
        staff::set_role_and_disabled(&mut db.conn().unwrap(), former.id, Role::Viewer, true).unwrap();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT {
            try_sign_in(&app, &browser(), "clerk", "wrong-password").await;
        }

        let client = browser();
        let unknown = answer(&app, &client, "nobody", STAFF_PASSWORD).await;
        assert_eq!(unknown.0, 401);
        assert!(unknown.1.contains("用户名或密码错误"), "{}", unknown.1);
        let cases = [("wrong password", ADMIN_USER, "not the password"), ("locked", "clerk", STAFF_PASSWORD)];
        for (what, user, password) in cases.into_iter().chain([("disabled", "former", STAFF_PASSWORD)]) {
            let got = answer(&app, &client, user, password).await;
            assert_eq!(got.0, unknown.0, "{what}: status");
            assert!(
                got.1 == unknown.1,
                "{what}: the page differs from an unknown user's:\n{}\n---\n{}",
                got.1,
                unknown.1
            );
        }

        // Staff still see why: the audit log keeps the reason, the users page the lock.
        let failed = AuditFilter { action: Some(AuditAction::LoginFailed.as_str().into()), ..AuditFilter::default() };
        let rows = audit::search(&mut db.conn().unwrap(), &failed, None, 100).unwrap();
        let reason_of = |actor: &str| {
            let row = rows.iter().find(|r| r.actor == actor).unwrap_or_else(|| panic!("no audit row for {actor}"));
            serde_json::from_str::<serde_json::Value>(&row.detail).unwrap()["reason"].as_str().unwrap().to_owned()
        };
        assert_eq!(reason_of("nobody"), "unknown_user");
        assert_eq!(reason_of("clerk"), "locked");
        assert_eq!(reason_of("former"), "disabled");
        assert_eq!(reason_of(ADMIN_USER), "wrong_password");
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let (_, users) = get(&app, &admin, "/admin/users").await;
        assert!(users.contains("已锁定"), "{users}");
        app
    })
    .await;
}

#[tokio::test]
async fn logout_ends_the_session_on_the_server() {
    on_every_backend(|app| async move {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        assert_eq!(try_sign_in(&app, &client, ADMIN_USER, ADMIN_PASSWORD).await.status(), 303);
        let page = app.url("/admin/account/password").parse().unwrap();
        let copied = reqwest::cookie::CookieStore::cookies(jar.as_ref(), &page).expect("a session cookie");
        let with_copy = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(app.url("/admin/account/password"))
                .header("Cookie", copied.clone())
        };
        assert_eq!(with_copy().send().await.unwrap().status(), 200, "the copy works before logout");

        let res = post_form(&app, &client, "/admin/account/password", "/admin/logout", &[]).await;
        assert_eq!(res.status(), 303);
        let res = with_copy().send().await.unwrap();
        assert_eq!(res.status(), 303, "the cookie copied before logout still opens the console");
        assert!(res.headers()["location"].to_str().unwrap().starts_with("/admin/login"));
        app
    })
    .await;
}

/// Every Set-Cookie header and whether HSTS came, over a whole staff session: the sign-in page, a
/// refused and an accepted sign-in, a password change (with its flash message), and logout.
async fn cookies_and_hsts_of_a_session(app: &TestApp) -> (Vec<String>, Vec<bool>) {
    let client = browser();
    let (mut cookies, mut hsts) = (Vec::new(), Vec::new());
    let mut seen = |res: &reqwest::Response| {
        hsts.push(res.headers().get("strict-transport-security").is_some_and(|v| v == HSTS));
        cookies.extend(res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()));
    };
    seen(&client.get(app.url("/admin/login")).send().await.unwrap());
    seen(&try_sign_in(app, &client, ADMIN_USER, "not the password").await);
    seen(&try_sign_in(app, &client, ADMIN_USER, ADMIN_PASSWORD).await);
    let fields = [("current", ADMIN_PASSWORD), ("new", "a-brand-new-password"), ("confirm", "a-brand-new-password")];
    seen(&post_form(app, &client, "/admin/account/password", "/admin/account/password", &fields).await);
    seen(&client.get(app.url("/admin")).send().await.unwrap());
    seen(&post_form(app, &client, "/admin/account/password", "/admin/logout", &[]).await);
    seen(&client.get(app.url("/healthz")).send().await.unwrap());
    (cookies, hsts)
}

const HSTS: &str = "max-age=31536000; includeSubDomains";

#[tokio::test]
async fn an_https_origin_gets_hsts_and_only_secure_cookies() {
    let https = |f: rocket::figment::Figment, _: &std::path::Path| {
        let ours: String = f.extract_inner("public_base_url").unwrap();
        f.merge(("public_base_url", ours.replacen("http://", "https://", 1)))
    };
    on_every_backend_with(https, |app, _| async move {
        let (cookies, hsts) = cookies_and_hsts_of_a_session(&app).await;
        assert!(hsts.iter().all(|h| *h), "a response without HSTS: {hsts:?}");
        for name in ["csrf=", "wc_staff=", "_flash="] {
            assert!(cookies.iter().any(|c| c.starts_with(name)), "no {name} cookie in {cookies:#?}");
        }
        let secure = |c: &String| c.split(';').any(|a| a.trim().eq_ignore_ascii_case("secure"));
        assert!(cookies.iter().all(secure), "a cookie without Secure: {cookies:#?}");
        app
    })
    .await;
    on_every_backend(|app| async move {
        let (_, hsts) = cookies_and_hsts_of_a_session(&app).await;
        assert!(hsts.iter().all(|h| !*h), "HSTS over plain http: {hsts:?}");
        app
    })
    .await;
}

#[tokio::test]
async fn overlong_usernames_are_cut_before_they_are_stored() {
    on_every_backend(|app| async move {
        let db = app.db_handle();
        // Over the form limit: refused before sign-in is tried.
        let huge = "u".repeat(100 * 1024);
        let status = try_sign_in(&app, &browser(), &huge, "whatever-password").await.status();
        assert!([401, 413].contains(&status.as_u16()), "{status}");
        // Within the form limit: refused like any unknown user, and only 64 characters kept.
        let long = "u".repeat(50 * 1024);
        assert_eq!(try_sign_in(&app, &browser(), &long, "whatever-password").await.status(), 401);

        let names: Vec<String> = {
            use diesel::prelude::*;
            use wechat_checkout::db::schema::login_attempts::dsl::*;
            login_attempts.select(username).load(&mut db.conn().unwrap()).unwrap()
        };
        assert!(!names.is_empty(), "the attempt is recorded");
        assert!(
            names.iter().all(|n| n.chars().count() <= 64),
            "{:?}",
            names.iter().map(|n| n.len()).collect::<Vec<_>>()
        );
        let failed = AuditFilter { action: Some(AuditAction::LoginFailed.as_str().into()), ..AuditFilter::default() };
        let rows = audit::search(&mut db.conn().unwrap(), &failed, None, 100).unwrap();
        assert!(!rows.is_empty(), "the failure is audited");
        assert!(rows.iter().all(|r| r.actor.chars().count() <= 64), "an audit actor over 64 characters");
        app
    })
    .await;
}
