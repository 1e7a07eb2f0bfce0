//! Walking the mounted admin routes: the route list read from a built app, rows seeded so every
//! action has something to act on, concrete paths and plausible forms for each route, and a
//! snapshot of what a refused request must not change.

use std::collections::BTreeMap;

use diesel::prelude::*;
use rocket::http::Method;
use wechat_checkout::db::{Db, DbError, schema};
use wechat_checkout::staff::Role;

use super::admin::create_staff;
use super::app::{TestApp, free_port, prepay_id, test_figment};

/// The mounted admin routes (method, path pattern), sign-in excluded, read from an app built on
/// the same database exactly as the running one is.
pub fn admin_routes(app: &TestApp) -> Vec<(Method, String)> {
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
pub struct Seed {
    pub order: String,
    /// `<id>` of the rows under each path prefix (`/admin/users` → a user id, …).
    pub ids: BTreeMap<&'static str, i64>,
}

pub async fn seed(app: &TestApp) -> Seed {
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
                    kind: wechat_checkout::domain::ExceptionKind::AmountMismatch,
                    dedupe_key: "walk-exception".into(),
                    out_trade_no: Some(key.clone()),
                    detail: serde_json::json!({}),
                },
            )?;
            let hash = wechat_checkout::domain::records::token_hash("walk-token-0123456789abcdefghijklmnop");
            tokens::insert(
                c,
                &tokens::NewToken {
                    name: "walk",
                    token_hash: &hash,
                    created_at: wechat_checkout::db::now(),
                    scope: "read",
                },
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
pub fn fill(pattern: &str, seed: &Seed) -> String {
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
/// act if it were let through: literal `value="…"`s where a template has them, else a default
/// (`current_password` for the password-change form's current password).
pub fn plausible_form(current_password: &str) -> Vec<(String, String)> {
    let defaults = BTreeMap::from([
        ("amount", "0.01"),
        ("reason", "walk"),
        ("note", "walk"),
        ("confirm", "yes"),
        ("role", "viewer"),
        ("username", "walk-new-user"),
        ("name", "walk-token"),
        ("current", current_password),
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
pub type StaffState = (i64, String, String, i64, i32, i32, Option<chrono::NaiveDateTime>);

/// What a refused request must not change, as text to compare.
pub async fn snapshot(app: &TestApp) -> String {
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
