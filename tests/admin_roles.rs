//! The role matrix over real HTTP: which admin pages each role loads (200) or is refused (403),
//! and which actions each role may take. Every mounted admin POST route must be classified in
//! [`ACTIONS`] (a new action fails this test until it is), a role below the one required gets a
//! 403 with a valid CSRF token and nothing changes, and the roles allowed are not refused.

mod common;

use std::collections::BTreeMap;

use common::admin::*;
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, free_port, prepay_id, test_figment};
use diesel::prelude::*;
use rocket::http::Method;
use wechat_checkout::db::{Db, DbError, schema};
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

/// The mounted admin routes (method, path pattern), sign-in excluded, read from an app built on
/// the same database exactly as the running one is.
fn admin_routes(app: &TestApp) -> Vec<(Method, String)> {
    let rocket = wechat_checkout::app::build_rocket_from(test_figment(free_port(), &app.db.url())).expect("app builds");
    let mut routes: Vec<(Method, String)> = rocket
        .routes()
        .filter(|r| r.uri.path().starts_with("/admin") && r.uri.path() != "/admin/login")
        .map(|r| (r.method, r.uri.path().to_owned()))
        .collect();
    routes.sort_by(|a, b| (a.1.as_str(), a.0.as_str()).cmp(&(b.1.as_str(), b.0.as_str())));
    routes.dedup();
    routes
}

/// Rows the walk's requests could touch, seeded so every action has something to act on.
struct Seed {
    order: String,
    /// `<id>` of the rows under each path prefix (`/admin/users` → a user id, …).
    ids: BTreeMap<&'static str, i64>,
}

async fn seed(app: &TestApp) -> Seed {
    // A paid order (refundable, with a notify in the log) and an open exception about it.
    let order = app.create_order("WALK-PAID-1", 2990).await;
    let no = order["out_trade_no"].as_str().unwrap().to_owned();
    let jsapi = app.jsapi(&no).await;
    assert_eq!(app.shopper(&prepay_id(&jsapi), "ok").await.status(), 200);
    assert!(app.wait_for_state(&no, "PAID").await);
    create_staff(app, "walk-victim", Role::Operator);
    let db = Db::connect(&app.db.url(), 2).unwrap();
    let key = no.clone();
    let ids = db
        .write(move |c| -> Result<_, DbError> {
            use wechat_checkout::db::{exceptions, tokens};
            exceptions::raise(
                c,
                &exceptions::NewException {
                    kind: "amount_mismatch",
                    dedupe_key: "walk-exception".into(),
                    out_trade_no: Some(key.clone()),
                    detail: "{}".into(),
                    created_at: wechat_checkout::db::now(),
                },
            )?;
            let hash = wechat_checkout::web::api::token_hash("walk-token-0123456789abcdefghijklmnop");
            tokens::insert(
                c,
                &tokens::NewToken { name: "walk", token_hash: &hash, created_at: wechat_checkout::db::now() },
            )?;
            let last = |ids: Vec<i64>| ids.into_iter().max().unwrap_or(1);
            Ok(BTreeMap::from([
                ("/admin/users", last(schema::staff_users::table.select(schema::staff_users::id).load(c)?)),
                ("/admin/tokens", last(schema::api_tokens::table.select(schema::api_tokens::id).load(c)?)),
                ("/admin/exceptions", last(schema::exceptions::table.select(schema::exceptions::id).load(c)?)),
                ("/admin/notifies", last(schema::notify_log::table.select(schema::notify_log::id).load(c)?)),
            ]))
        })
        .await
        .unwrap();
    Seed { order: no, ids }
}

/// A concrete path for a route pattern: numeric ids of seeded rows, the seeded order number for
/// order-like segments, something well-formed for the rest.
fn fill(pattern: &str, seed: &Seed) -> String {
    pattern
        .split('/')
        .map(|segment| {
            let Some(name) = segment.strip_prefix('<').and_then(|s| s.strip_suffix('>')) else {
                return segment.to_owned();
            };
            let name = name.trim_end_matches('.');
            if name == "id" || name.ends_with("_id") {
                let id = seed.ids.iter().find(|(prefix, _)| pattern.starts_with(*prefix)).map_or(1, |(_, id)| *id);
                id.to_string()
            } else if name.contains("refund") {
                "WALKREFUND0001".to_owned()
            } else {
                seed.order.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Plausible values for every form field the admin templates use, so each POST would parse and
/// act if it were let through: literal `value="…"`s where a template has them, else a default.
fn plausible_form() -> Vec<(String, String)> {
    let defaults = BTreeMap::from([
        ("amount", "0.01"),
        ("reason", "walk"),
        ("note", "walk"),
        ("confirm", "yes"),
        ("role", "viewer"),
        ("username", "walk-new-user"),
        ("name", "walk-token"),
        ("current", "not-the-current-password"),
        ("new", "walk-new-password-1"),
        ("out_refund_no", "WALKREFUND0002"),
        ("back", "/admin"),
    ]);
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/admin");
    for entry in std::fs::read_dir(dir).unwrap() {
        let html = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for tag in
            html.split('<').filter(|t| t.starts_with("input") || t.starts_with("select") || t.starts_with("textarea"))
        {
            let attr = |name: &str| {
                let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
                Some(tag[at..].split('"').next().unwrap().to_owned())
            };
            let Some(name) = attr("name").filter(|n| n != "csrf" && !n.contains('{')) else { continue };
            let literal = attr("value").filter(|v| !v.is_empty() && !v.contains('{'));
            let value = defaults.get(name.as_str()).map(|v| (*v).to_owned()).or(literal).unwrap_or_else(|| "1".into());
            fields.entry(name).or_insert(value);
        }
    }
    fields.into_iter().collect()
}

/// id, role, password hash, session version, disabled, must change password, locked until.
type StaffState = (i64, String, String, i64, i32, i32, Option<chrono::NaiveDateTime>);

/// What a refused request must not change, as text to compare.
async fn snapshot(app: &TestApp) -> String {
    let db = Db::connect(&app.db.url(), 2).unwrap();
    db.read(|c| -> Result<String, DbError> {
        use schema::*;
        let counts = (
            orders::table.count().get_result::<i64>(c)?,
            order_events::table.count().get_result::<i64>(c)?,
            notify_log::table.count().get_result::<i64>(c)?,
            refunds::table.count().get_result::<i64>(c)?,
            audit_log::table.count().get_result::<i64>(c)?,
            login_attempts::table.count().get_result::<i64>(c)?,
        );
        let orders: Vec<(String, String, i64, i64, chrono::NaiveDateTime)> = orders::table
            .order(orders::out_trade_no)
            .select((
                orders::out_trade_no,
                orders::state,
                orders::refunded_fen,
                orders::refund_reserved_fen,
                orders::updated_at,
            ))
            .load(c)?;
        let exceptions: Vec<(i64, Option<chrono::NaiveDateTime>)> =
            exceptions::table.order(exceptions::id).select((exceptions::id, exceptions::resolved_at)).load(c)?;
        let tokens: Vec<(i64, Option<chrono::NaiveDateTime>)> =
            api_tokens::table.order(api_tokens::id).select((api_tokens::id, api_tokens::revoked_at)).load(c)?;
        let staff: Vec<StaffState> = staff_users::table
            .order(staff_users::id)
            .select((
                staff_users::id,
                staff_users::role,
                staff_users::password_hash,
                staff_users::session_version,
                staff_users::disabled,
                staff_users::must_change_password,
                staff_users::locked_until,
            ))
            .load(c)?;
        Ok(format!("{counts:?}\n{orders:?}\n{exceptions:?}\n{tokens:?}\n{staff:?}"))
    })
    .await
    .unwrap()
}

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
    let form = plausible_form();
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
