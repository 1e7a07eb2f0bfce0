//! The users, API tokens and audit log pages over real HTTP: one-time passwords, role changes,
//! disabling, unlocking, resets, the last-admin guard rail (also under concurrent demotions),
//! tokens that work until revoked, and the audit log that records all of it with actor and IP.
//! The scenarios that touch transactions run on SQLite and, when TEST_DATABASE_URL is set, on
//! PostgreSQL.

mod common;

use common::admin::*;
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, on_every_backend};
use wechat_checkout::db::{Db, DbError, staff as staff_db};
use wechat_checkout::staff::Role;

/// GETs a page that must load, returning its HTML.
async fn page(app: &TestApp, client: &reqwest::Client, path: &str) -> String {
    let (status, html) = get(app, client, path).await;
    assert_eq!(status, 200, "GET {path}: {html}");
    html
}

/// POSTs a users/tokens form with the CSRF token of the users page; expects the redirect back.
async fn act(app: &TestApp, admin: &reqwest::Client, action: &str, fields: &[(&str, &str)]) -> String {
    let res = post_form(app, admin, "/admin/users", action, fields).await;
    assert_eq!(res.status(), 303, "POST {action}: {}", res.text().await.unwrap_or_default());
    let back = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(back == "/admin/users" || back == "/admin/tokens", "{back}");
    page(app, admin, &back).await
}

/// The text of the flash message on a page.
fn flash_of(html: &str) -> String {
    let Some(at) = html.find("class=\"flash flash-") else { return String::new() };
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    rest[start..rest.find("</p>").unwrap()].to_owned()
}

/// The one-time secret shown on a page, if any.
fn secret_of(html: &str) -> Option<String> {
    let at = html.find("id=\"secret-value\">")? + "id=\"secret-value\">".len();
    Some(html[at..].split('<').next().unwrap().to_owned())
}

/// The id of a user, from the users page.
fn user_id(html: &str, username: &str) -> i64 {
    let marker = format!("\" data-username=\"{username}\"");
    let end = html.find(&marker).unwrap_or_else(|| panic!("{username} is not listed"));
    let start = html[..end].rfind("id=\"user-").unwrap() + "id=\"user-".len();
    html[start..end].parse().unwrap()
}

/// The users-page row of a user.
fn user_row<'a>(html: &'a str, username: &str) -> &'a str {
    let at = html.find(&format!("data-username=\"{username}\"")).unwrap();
    &html[at..at + html[at..].find("</tr>").unwrap()]
}

/// Asserts that the audit log has an entry of `action` about `target` by the admin from 127.0.0.1.
async fn assert_audited(app: &TestApp, admin: &reqwest::Client, action: &str, target: &str) {
    let html = page(app, admin, &format!("/admin/audit?action={action}")).await;
    let row = html
        .split("<tr>")
        .find(|row| row.contains(&format!("<td>{target}</td>")) && row.contains(action))
        .unwrap_or_else(|| panic!("no {action} about {target} in the audit log: {html}"));
    assert!(row.contains(&format!(">{ADMIN_USER}</a>")), "actor missing: {row}");
    assert!(row.contains("127.0.0.1"), "IP missing: {row}");
}

async fn staff_list(app: &TestApp) -> Vec<wechat_checkout::domain::StaffUser> {
    let db = Db::connect(&app.db.url(), 2).unwrap();
    db.read(|c| -> Result<_, DbError> { staff_db::list(c) }).await.unwrap()
}

#[tokio::test]
async fn created_user_signs_in_with_the_one_time_password_and_must_change_it() {
    on_every_backend(|app| async move {
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let html = act(&app, &admin, "/admin/users", &[("username", "clerk"), ("role", "viewer")]).await;
        assert!(flash_of(&html).contains("已创建用户 clerk"), "{}", flash_of(&html));
        let one_time = secret_of(&html).expect("the one-time password is shown");
        assert!(one_time.len() >= 16 && one_time.bytes().all(|b| b.is_ascii_alphanumeric()), "{one_time}");
        assert!(user_row(&html, "clerk").contains("待修改一次性密码"));
        // Shown once: the next view of the page no longer has it.
        assert_eq!(secret_of(&page(&app, &admin, "/admin/users").await), None);

        // The one-time password signs in, and every page sends the user to change it first.
        let clerk = browser();
        let res = try_sign_in(&app, &clerk, "clerk", &one_time).await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/admin/account/password");
        for path in ["/admin/users", "/admin/audit"] {
            let res = clerk.get(app.url(path)).send().await.unwrap();
            assert_eq!(res.status(), 303, "{path}");
            assert_eq!(res.headers()["location"], "/admin/account/password", "{path}");
        }
        let res = post_form(
            &app,
            &clerk,
            "/admin/account/password",
            "/admin/account/password",
            &[("current", &one_time), ("new", "clerk-own-password-1"), ("confirm", "clerk-own-password-1")],
        )
        .await;
        assert_eq!(res.status(), 303);
        // Now a viewer like any other: admin pages are refused, not redirected.
        assert_eq!(get(&app, &clerk, "/admin/users").await.0, 403);
        assert_eq!(get(&app, &clerk, "/admin/account/password").await.0, 200);
        assert_eq!(try_sign_in(&app, &browser(), "clerk", &one_time).await.status(), 401);

        // A taken name is refused with a message, and nothing is created twice.
        let html = act(&app, &admin, "/admin/users", &[("username", "clerk"), ("role", "admin")]).await;
        assert!(flash_of(&html).contains("已存在"), "{}", flash_of(&html));
        assert_eq!(secret_of(&html), None);
        assert_eq!(staff_list(&app).await.iter().filter(|u| u.username == "clerk").count(), 1);

        assert_audited(&app, &admin, "user_created", "clerk").await;
        let audit_html = page(&app, &admin, "/admin/audit").await;
        assert!(!audit_html.contains(&one_time), "the one-time password reached the audit log");
        app
    })
    .await;
}

#[tokio::test]
async fn role_change_ends_sessions_and_applies_on_the_next_request() {
    let app = TestApp::sqlite().await;
    create_staff(&app, "olivia", Role::Operator);
    let olivia = sign_in(&app, "olivia", STAFF_PASSWORD).await;
    assert_eq!(get(&app, &olivia, "/admin/users").await.0, 403);

    let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let id = user_id(&page(&app, &admin, "/admin/users").await, "olivia");
    let html = act(&app, &admin, &format!("/admin/users/{id}/role"), &[("role", "admin")]).await;
    assert!(flash_of(&html).contains("管理员"), "{}", flash_of(&html));
    assert!(user_row(&html, "olivia").contains("管理员"));

    // Her old session ended with the change; signing in again gives the new role.
    let res = olivia.get(app.url("/admin/users")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers()["location"].to_str().unwrap().starts_with("/admin/login"));
    let olivia = sign_in(&app, "olivia", STAFF_PASSWORD).await;
    assert_eq!(get(&app, &olivia, "/admin/users").await.0, 200);

    // And back down: the next request is refused at once.
    act(&app, &admin, &format!("/admin/users/{id}/role"), &[("role", "viewer")]).await;
    assert_eq!(olivia.get(app.url("/admin/users")).send().await.unwrap().status(), 303);
    let olivia = sign_in(&app, "olivia", STAFF_PASSWORD).await;
    assert_eq!(get(&app, &olivia, "/admin/users").await.0, 403);

    // An unknown role changes nothing.
    let html = act(&app, &admin, &format!("/admin/users/{id}/role"), &[("role", "root")]).await;
    assert!(flash_of(&html).contains("有效的角色"));
    assert_eq!(staff_list(&app).await.iter().find(|u| u.username == "olivia").unwrap().role, Role::Viewer);

    assert_audited(&app, &admin, "user_role_changed", "olivia").await;
    let audit_html = page(&app, &admin, "/admin/audit?actor=admin&action=user_role_changed").await;
    assert!(audit_html.contains("from: operator，to: admin"), "{audit_html}");
    app.stop().await;
}

#[tokio::test]
async fn disabling_ends_sessions_and_refuses_sign_in_until_enabled() {
    let app = TestApp::sqlite().await;
    create_staff(&app, "dave", Role::Operator);
    let dave = sign_in(&app, "dave", STAFF_PASSWORD).await;
    assert_eq!(get(&app, &dave, "/admin/account/password").await.0, 200);

    let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let id = user_id(&page(&app, &admin, "/admin/users").await, "dave");
    let html = act(&app, &admin, &format!("/admin/users/{id}/disable"), &[]).await;
    assert!(flash_of(&html).contains("已停用 dave"), "{}", flash_of(&html));
    assert!(user_row(&html, "dave").contains("已停用"));

    let res = dave.get(app.url("/admin/account/password")).send().await.unwrap();
    assert_eq!(res.status(), 303, "the session ended");
    let refused = try_sign_in(&app, &browser(), "dave", STAFF_PASSWORD).await;
    assert_eq!(refused.status(), 401, "a disabled account cannot sign in");

    // Disabling twice is refused politely.
    let html = act(&app, &admin, &format!("/admin/users/{id}/disable"), &[]).await;
    assert!(flash_of(&html).contains("已停用"), "{}", flash_of(&html));

    let html = act(&app, &admin, &format!("/admin/users/{id}/enable"), &[]).await;
    assert!(flash_of(&html).contains("已启用 dave"));
    assert!(user_row(&html, "dave").contains("正常"));
    sign_in(&app, "dave", STAFF_PASSWORD).await;

    assert_audited(&app, &admin, "user_disabled", "dave").await;
    assert_audited(&app, &admin, "user_enabled", "dave").await;
    app.stop().await;
}

#[tokio::test]
async fn a_lockout_is_lifted_by_an_admin_and_a_reset_gives_a_new_one_time_password() {
    let app = TestApp::sqlite().await;
    create_staff(&app, "lucy", Role::Viewer);
    for _ in 0..5 {
        assert_eq!(try_sign_in(&app, &browser(), "lucy", "not-her-password").await.status(), 401);
    }
    // Locked: refused like an unknown user (the page does not tell that the account exists).
    assert_eq!(try_sign_in(&app, &browser(), "lucy", STAFF_PASSWORD).await.status(), 401, "locked");

    let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let html = page(&app, &admin, "/admin/users").await;
    assert!(user_row(&html, "lucy").contains("已锁定（至 "), "{}", user_row(&html, "lucy"));
    let id = user_id(&html, "lucy");
    let html = act(&app, &admin, &format!("/admin/users/{id}/unlock"), &[]).await;
    assert!(flash_of(&html).contains("已解除 lucy 的锁定"), "{}", flash_of(&html));
    assert!(user_row(&html, "lucy").contains("正常"));
    let lucy = sign_in(&app, "lucy", STAFF_PASSWORD).await;
    assert_audited(&app, &admin, "user_unlocked", "lucy").await;

    // Unlocking an account that is not locked changes nothing.
    let html = act(&app, &admin, &format!("/admin/users/{id}/unlock"), &[]).await;
    assert!(flash_of(&html).contains("未被锁定"), "{}", flash_of(&html));

    // A reset ends her session; the new one-time password works once and must be changed.
    let html = act(&app, &admin, &format!("/admin/users/{id}/password"), &[]).await;
    assert!(flash_of(&html).contains("已重置 lucy 的密码"), "{}", flash_of(&html));
    let one_time = secret_of(&html).expect("the new one-time password is shown");
    assert_eq!(lucy.get(app.url("/admin/account/password")).send().await.unwrap().status(), 303);
    assert_eq!(try_sign_in(&app, &browser(), "lucy", STAFF_PASSWORD).await.status(), 401);
    let res = try_sign_in(&app, &browser(), "lucy", &one_time).await;
    assert_eq!(res.headers()["location"], "/admin/account/password");
    assert_audited(&app, &admin, "user_password_reset", "lucy").await;
    assert!(!page(&app, &admin, "/admin/audit").await.contains(&one_time));
    app.stop().await;
}

#[tokio::test]
async fn the_last_admin_can_be_neither_demoted_nor_disabled() {
    on_every_backend(|app| async move {
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        let me = user_id(&page(&app, &admin, "/admin/users").await, ADMIN_USER);
        // Not by themselves: no demotion, no disabling, no reset of their own password here.
        for (action, fields, expected) in [
            ("role", vec![("role", "operator")], "不能修改自己的角色"),
            ("disable", vec![], "不能停用自己的账户"),
            ("password", vec![], "修改密码"),
        ] {
            let html = act(&app, &admin, &format!("/admin/users/{me}/{action}"), &fields).await;
            assert!(flash_of(&html).contains(expected), "{action}: {}", flash_of(&html));
        }
        let html = page(&app, &admin, "/admin/users").await;
        assert!(user_row(&html, ADMIN_USER).contains("管理员"));
        assert_eq!(get(&app, &admin, "/admin/users").await.0, 200, "still signed in");

        // Two admins demoting each other at the same moment: one wins, one admin always remains.
        create_staff(&app, "boss2", Role::Admin);
        let boss2 = sign_in(&app, "boss2", STAFF_PASSWORD).await;
        let html = page(&app, &admin, "/admin/users").await;
        let boss2_id = user_id(&html, "boss2");
        let (csrf_a, csrf_b) = (csrf_of(&html), csrf_of(&page(&app, &boss2, "/admin/users").await));
        let (a, b) = tokio::join!(
            admin
                .post(app.url(&format!("/admin/users/{boss2_id}/role")))
                .form(&[("role", "viewer"), ("csrf", &csrf_a)])
                .send(),
            boss2.post(app.url(&format!("/admin/users/{me}/disable"))).form(&[("csrf", &csrf_b)]).send(),
        );
        assert_eq!(a.unwrap().status(), 303);
        assert_eq!(b.unwrap().status(), 303);
        let users = staff_list(&app).await;
        let active_admins: Vec<_> = users.iter().filter(|u| u.role == Role::Admin && !u.disabled).collect();
        assert_eq!(active_admins.len(), 1, "exactly one of the two changes went through: {users:?}");
        app
    })
    .await;
}

#[tokio::test]
async fn an_api_token_works_until_revoked_and_is_shown_once() {
    on_every_backend(|app| async move {
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
        // A scope is required: none, or an unknown one, creates nothing.
        for scope in [None, Some("admin")] {
            let mut fields = vec![("name", "ERP 系统")];
            fields.extend(scope.map(|s| ("scope", s)));
            post_form(&app, &admin, "/admin/tokens", "/admin/tokens", &fields).await;
            let html = page(&app, &admin, "/admin/tokens").await;
            assert!(flash_of(&html).contains("令牌权限"), "{scope:?}: {}", flash_of(&html));
            assert_eq!(secret_of(&html), None);
        }
        let fields = [("name", "ERP 系统"), ("scope", "read")];
        let res = post_form(&app, &admin, "/admin/tokens", "/admin/tokens", &fields).await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/admin/tokens");
        let html = page(&app, &admin, "/admin/tokens").await;
        assert!(flash_of(&html).contains("已创建 API 令牌「ERP 系统」（只读（read））"), "{}", flash_of(&html));
        assert!(html.contains("<td data-label=\"权限\">只读（read）</td>"), "the list shows the scope");
        let token = secret_of(&html).expect("the token is shown once");
        assert!(token.len() >= 32 && token.bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
        assert_eq!(secret_of(&page(&app, &admin, "/admin/tokens").await), None);

        // It authenticates: an unknown order is a JSON 404, not a 401.
        let lookup = || app.http.get(app.url("/api/v1/orders/NO-SUCH-ORDER-1")).bearer_auth(&token).send();
        let res = lookup().await.unwrap();
        assert_eq!(res.status(), 404);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        // A read token cannot create an order: 403 naming the scope it lacks.
        let body = serde_json::json!({ "amount_fen": 100, "description": "x", "merchant_order_id": "RO-1" });
        let res = app.http.post(app.url("/api/v1/orders")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 403);
        let err: serde_json::Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], "insufficient_scope", "{err}");
        assert_eq!(err["error"]["required_scope"], "write", "{err}");

        // Only the hash is stored.
        let db = Db::connect(&app.db.url(), 2).unwrap();
        let hashes: Vec<String> = db
            .read(|c| -> Result<_, DbError> {
                use diesel::prelude::*;
                use wechat_checkout::db::schema::api_tokens;
                Ok(api_tokens::table.select(api_tokens::token_hash).load(c)?)
            })
            .await
            .unwrap();
        assert!(hashes.contains(&wechat_checkout::domain::records::token_hash(&token)));
        assert!(!hashes.contains(&token));

        let html = page(&app, &admin, "/admin/tokens").await;
        let at = html.find("action=\"/admin/tokens/").unwrap() + "action=\"".len();
        let revoke = html[at..].split('"').next().unwrap().to_owned();
        let res = post_form(&app, &admin, "/admin/tokens", &revoke, &[]).await;
        assert_eq!(res.status(), 303);
        let html = page(&app, &admin, "/admin/tokens").await;
        assert!(flash_of(&html).contains("已撤销"), "{}", flash_of(&html));
        assert!(html.contains("已撤销"));
        assert_eq!(lookup().await.unwrap().status(), 401, "a revoked token stops at once");
        // Revoking again is answered, not repeated.
        post_form(&app, &admin, "/admin/tokens", &revoke, &[]).await;
        assert!(flash_of(&page(&app, &admin, "/admin/tokens").await).contains("此前已被撤销"));

        // Names: required, at most 64 characters.
        for bad in ["", "   ", &"长".repeat(65)] {
            post_form(&app, &admin, "/admin/tokens", "/admin/tokens", &[("name", bad)]).await;
            let html = page(&app, &admin, "/admin/tokens").await;
            assert!(flash_of(&html).contains("令牌名称"), "{bad:?}: {}", flash_of(&html));
            assert_eq!(secret_of(&html), None);
        }

        assert_audited(&app, &admin, "token_created", "ERP 系统").await;
        assert_audited(&app, &admin, "token_revoked", "ERP 系统").await;
        let audit_html = page(&app, &admin, "/admin/audit").await;
        assert!(!audit_html.contains(&token), "the token reached the audit log");
        app
    })
    .await;
}

#[tokio::test]
async fn the_audit_log_pages_by_id_and_filters() {
    let app = TestApp::sqlite().await;
    let db = Db::connect(&app.db.url(), 2).unwrap();
    db.write(|c| -> Result<(), DbError> {
        // Written straight into the table: `order_note` is an action this build has no word for,
        // which the page must still show and filter on.
        use diesel::prelude::*;
        use wechat_checkout::db::schema::audit_log as a;
        for i in 0..120 {
            diesel::insert_into(a::table)
                .values((
                    a::at.eq(wechat_checkout::db::now()),
                    a::actor.eq(if i % 2 == 0 { "even" } else { "odd" }),
                    a::action.eq("order_note"),
                    a::out_trade_no.eq(Some(if i % 3 == 0 { "WX-AUDIT-3" } else { "WX-AUDIT-X" })),
                    a::target.eq(Some(format!("entry-{i:03}"))),
                    a::detail.eq(format!("{{\"n\":{i}}}")),
                    a::remote_addr.eq(Some("203.0.113.7")),
                ))
                .execute(c)?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;

    // Walk every page of one actor's entries through the "older" links: each once, newest first.
    let mut seen = Vec::new();
    let mut next = Some("/admin/audit?actor=odd".to_owned());
    while let Some(path) = next {
        assert!(seen.len() <= 120, "the pages do not end");
        // Askama escapes `&` in attributes.
        let html = page(&app, &admin, &path.replace("&#38;", "&").replace("&amp;", "&")).await;
        for piece in html.split("<td>entry-").skip(1) {
            seen.push(piece[..3].parse::<u32>().unwrap());
        }
        next = html.find("id=\"older\"").map(|end| {
            let start = html[..end].rfind("href=\"").unwrap() + "href=\"".len();
            html[start..end].trim_end_matches("\" ").to_owned()
        });
    }
    let expected: Vec<u32> = (0..120).rev().filter(|i| i % 2 == 1).collect();
    assert_eq!(seen, expected);

    // Filters combine; the order links to its page; the IP and the detail are shown.
    let html = page(&app, &admin, "/admin/audit?actor=even&order=WX-AUDIT-3&action=order_note").await;
    assert_eq!(html.matches("<td>entry-").count(), 20);
    assert!(html.contains("href=\"/admin/orders/WX-AUDIT-3\""));
    assert!(html.contains("203.0.113.7"));
    assert!(html.contains("n: 114"));
    // The sign-in is there too, with its Chinese name.
    let html = page(&app, &admin, "/admin/audit?action=login").await;
    assert!(html.contains("登录") && html.contains("127.0.0.1"));
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_without_errors() {
    let app = TestApp::sqlite().await;
    let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    for path in [
        "/admin/audit?before=abc&actor=%ff%fe&order=",
        "/admin/audit?before=-5",
        "/admin/audit?before=99999999999999999999999",
        &format!("/admin/audit?actor={}", "x".repeat(2000)),
        "/admin/audit?action=%3Cscript%3E",
    ] {
        let (status, html) = get(&app, &admin, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("<script>"), "{path}");
    }
    for (action, fields) in [
        ("/admin/users", vec![("username", "a"), ("role", "viewer")]),
        ("/admin/users", vec![("username", "名字"), ("role", "viewer")]),
        ("/admin/users", vec![("username", &*"x".repeat(40)), ("role", "viewer")]),
        ("/admin/users", vec![("username", "newbie")]),
        ("/admin/users", vec![]),
        ("/admin/users/999999/role", vec![("role", "admin")]),
        ("/admin/users/999999/disable", vec![]),
        ("/admin/users/999999/unlock", vec![]),
        ("/admin/users/999999/password", vec![]),
        ("/admin/users/-1/enable", vec![]),
    ] {
        let res = post_form(&app, &admin, "/admin/users", action, &fields).await;
        assert_eq!(res.status(), 303, "{action} {fields:?}");
        let html = page(&app, &admin, "/admin/users").await;
        assert!(html.contains("flash-error"), "{action} {fields:?}: {}", flash_of(&html));
        assert_eq!(secret_of(&html), None);
    }
    for action in ["/admin/users/abc/role", "/admin/tokens/abc/revoke", "/admin/tokens/999999/revoke"] {
        let res = post_form(&app, &admin, "/admin/users", action, &[]).await;
        assert!(res.status().is_client_error() || res.status() == 303, "{action}: {}", res.status());
    }
    assert_eq!(staff_list(&app).await.len(), 1, "nothing was created");
    app.stop().await;
}
