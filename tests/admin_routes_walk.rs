//! Walks every mounted `/admin` route (whatever routes exist when it runs, so pages added later
//! are covered without touching this file): with no session, a GET redirects to the sign-in page
//! and a POST is refused; with an admin's session, a POST without the CSRF token, or with it from
//! a foreign origin, is refused. None of those requests changes anything in the database.

mod common;

use std::collections::BTreeMap;

use common::admin::*;
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, free_port, prepay_id, test_figment};
use diesel::prelude::*;
use rocket::http::Method;
use wechat_checkout::db::{Db, DbError, schema};
use wechat_checkout::staff::Role;

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
        ("current", ADMIN_PASSWORD),
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

#[tokio::test]
async fn every_admin_route_needs_a_session_and_every_post_a_csrf_token_from_our_origin() {
    let app = TestApp::sqlite().await;
    let seed = seed(&app).await;
    let routes = admin_routes(&app);
    assert!(routes.iter().any(|(m, p)| *m == Method::Get && p == "/admin/users"), "{routes:?}");
    assert!(routes.iter().any(|(m, _)| *m == Method::Post), "{routes:?}");
    let form = plausible_form();
    let mut failures = Vec::new();

    // No session at all.
    let anonymous = browser();
    for (method, pattern) in &routes {
        let path = fill(pattern, &seed);
        let before = snapshot(&app).await;
        let res = match *method {
            Method::Get => anonymous.get(app.url(&path)).send().await.unwrap(),
            Method::Post => anonymous.post(app.url(&path)).form(&form).send().await.unwrap(),
            _ => continue,
        };
        let status = res.status().as_u16();
        let location = res.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        let ok = match *method {
            Method::Get => {
                let next: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
                status == 303 && location == format!("/admin/login?next={next}")
            }
            _ => (status == 303 && location.starts_with("/admin/login")) || status == 401 || status == 403,
        };
        if !ok {
            failures.push(format!("no session: {method} {path} → {status} {location}"));
        }
        if snapshot(&app).await != before {
            failures.push(format!("no session: {method} {path} changed the database"));
        }
    }

    // An admin's session, but no CSRF token, or the right token from a foreign site.
    let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let csrf = csrf_of(&get(&app, &admin, "/admin/account/password").await.1);
    let with_token: Vec<(String, String)> =
        form.iter().cloned().chain(std::iter::once(("csrf".to_owned(), csrf.clone()))).collect();
    for (_, pattern) in routes.iter().filter(|(m, _)| *m == Method::Post) {
        let path = fill(pattern, &seed);
        let attempts = [
            ("no token", admin.post(app.url(&path)).form(&form)),
            ("wrong token", {
                let mut wrong = form.clone();
                wrong.push(("csrf".into(), "A".repeat(csrf.len())));
                admin.post(app.url(&path)).form(&wrong)
            }),
            ("foreign Origin", admin.post(app.url(&path)).header("Origin", "https://evil.example").form(&with_token)),
            ("cross-site fetch", admin.post(app.url(&path)).header("Sec-Fetch-Site", "cross-site").form(&with_token)),
        ];
        for (what, request) in attempts {
            let before = snapshot(&app).await;
            let status = request.send().await.unwrap().status().as_u16();
            if status != 403 {
                failures.push(format!("admin, {what}: POST {path} → {status}"));
            }
            if snapshot(&app).await != before {
                failures.push(format!("admin, {what}: POST {path} changed the database"));
            }
        }
    }
    // The session survived all of that (logout without a token was refused too).
    assert_eq!(get(&app, &admin, "/admin/account/password").await.0, 200);
    assert!(failures.is_empty(), "{} request(s) not refused:\n{}", failures.len(), failures.join("\n"));
    eprintln!("walked {} admin routes", routes.len());
    app.stop().await;
}
