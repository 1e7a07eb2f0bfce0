//! The role matrix over real HTTP: which admin pages each role loads (200) or is refused (403),
//! and which actions each role may take. Every mounted admin POST route must be classified in
//! [`ACTIONS`] (a new action fails this test until it is), a role below the one required gets a
//! 403 with a valid CSRF token and nothing changes, and the roles allowed are not refused.

mod common;

use std::collections::BTreeMap;

use common::admin::*;
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp};
use common::route_walk::*;
use rocket::http::Method;
use wechat_checkout::staff::Role;

/// The least role each admin action needs (operators re-query, close, re-process notifies,
/// resolve exceptions, run reconciliations and re-send webhooks; admins refund and manage users
/// and tokens).
const ACTIONS: &[(&str, Role)] = &[
    ("/admin/logout", Role::Viewer),
    ("/admin/account/password", Role::Viewer),
    ("/admin/orders/<no>/requery", Role::Operator),
    ("/admin/orders/<no>/close", Role::Operator),
    ("/admin/notifies/<id>/reprocess", Role::Operator),
    ("/admin/exceptions/<id>/resolve", Role::Operator),
    ("/admin/reconciliation", Role::Operator),
    ("/admin/webhooks/<id>/resend", Role::Operator),
    ("/admin/orders/<no>/refund", Role::Admin),
    ("/admin/orders/<no>/refunds/<out_refund_no>/retry", Role::Admin),
    ("/admin/users", Role::Admin),
    ("/admin/users/<id>/role", Role::Admin),
    ("/admin/users/<id>/disable", Role::Admin),
    ("/admin/users/<id>/enable", Role::Admin),
    ("/admin/users/<id>/unlock", Role::Admin),
    ("/admin/users/<id>/password", Role::Admin),
    ("/admin/tokens", Role::Admin),
    ("/admin/tokens/<id>/revoke", Role::Admin),
];

/// Pages for admins only; every other admin page is open to every role.
const ADMIN_PAGES: &[&str] = &["/admin/users", "/admin/tokens", "/admin/audit"];

/// One signed-in client per role.
async fn staff_by_role(app: &TestApp) -> Vec<(Role, reqwest::Client)> {
    create_staff(app, "vera-viewer", Role::Viewer);
    create_staff(app, "otto-operator", Role::Operator);
    vec![
        (Role::Viewer, sign_in(app, "vera-viewer", STAFF_PASSWORD).await),
        (Role::Operator, sign_in(app, "otto-operator", STAFF_PASSWORD).await),
        (Role::Admin, sign_in(app, ADMIN_USER, ADMIN_PASSWORD).await),
    ]
}

#[tokio::test]
async fn each_role_loads_the_pages_it_may_and_is_refused_the_others() {
    let app = TestApp::sqlite().await;
    let seed = seed(&app).await;
    let clients = staff_by_role(&app).await;
    let pages: Vec<String> =
        admin_routes(&app).into_iter().filter(|(m, _)| *m == Method::Get).map(|(_, p)| p).collect();
    for must in ADMIN_PAGES.iter().chain(&["/admin/account/password"]) {
        assert!(pages.iter().any(|p| p == must), "{must} is not mounted: {pages:?}");
    }
    let mut failures = Vec::new();
    for pattern in &pages {
        let path = fill(pattern, &seed);
        let needs = if ADMIN_PAGES.contains(&pattern.as_str()) { Role::Admin } else { Role::Viewer };
        for (role, client) in &clients {
            let status = client.get(app.url(&path)).send().await.unwrap().status().as_u16();
            let expected = if *role >= needs { 200 } else { 403 };
            if status != expected {
                failures.push(format!("{role:?} GET {path} → {status}, expected {expected}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}

#[tokio::test]
async fn each_role_may_take_only_the_actions_of_its_role() {
    let app = TestApp::sqlite().await;
    let seed = seed(&app).await;
    let clients = staff_by_role(&app).await;
    let form = plausible_form("not-the-current-password");
    let posts: Vec<String> =
        admin_routes(&app).into_iter().filter(|(m, _)| *m == Method::Post).map(|(_, p)| p).collect();
    let mut failures = Vec::new();
    let unclassified: Vec<&String> = posts.iter().filter(|p| !ACTIONS.iter().any(|(a, _)| a == p)).collect();
    assert!(unclassified.is_empty(), "classify these admin actions in ACTIONS: {unclassified:?}");
    let stale: Vec<&str> = ACTIONS.iter().map(|(a, _)| *a).filter(|a| !posts.iter().any(|p| p == a)).collect();
    assert!(stale.is_empty(), "ACTIONS lists routes that are not mounted: {stale:?}");

    // Refused: every role below the one required, with a valid CSRF token; nothing changes.
    let mut csrf = BTreeMap::new();
    for (role, client) in &clients {
        csrf.insert(*role, csrf_of(&get(&app, client, "/admin/account/password").await.1));
    }
    for pattern in &posts {
        let needs = ACTIONS.iter().find(|(a, _)| a == pattern).unwrap().1;
        let path = fill(pattern, &seed);
        for (role, client) in clients.iter().filter(|(r, _)| *r < needs) {
            let mut body = form.clone();
            body.push(("csrf".into(), csrf[role].clone()));
            let before = snapshot(&app).await;
            let status = client.post(app.url(&path)).form(&body).send().await.unwrap().status().as_u16();
            if status != 403 {
                failures.push(format!("{role:?} POST {path} → {status}, expected 403"));
            }
            if snapshot(&app).await != before {
                failures.push(format!("{role:?} POST {path} changed something although refused"));
            }
        }
    }

    // Allowed: the least role that may is not refused (logout last: it ends the session).
    let mut allowed: Vec<&String> = posts.iter().collect();
    allowed.sort_by_key(|p| p.as_str() == "/admin/logout");
    for pattern in allowed {
        let needs = ACTIONS.iter().find(|(a, _)| a == pattern).unwrap().1;
        let (role, client) = clients.iter().find(|(r, _)| *r == needs).unwrap();
        let mut body = form.clone();
        body.push(("csrf".into(), csrf[role].clone()));
        let path = fill(pattern, &seed);
        let status = client.post(app.url(&path)).form(&body).send().await.unwrap().status().as_u16();
        if status == 403 || status == 401 || status >= 500 {
            failures.push(format!("{role:?} POST {path} → {status}, expected to be let through"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}
