//! Admin sign-in, sessions, lockout, CSRF and origin checks, over real HTTP.

mod common;

use common::admin::*;
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp};
use wechat_checkout::staff::Role;

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
    assert_eq!(locked.status(), 403, "the right password does not open a locked account");
    assert!(locked.text().await.unwrap().contains("锁定"));
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
