//! The admin console under `/admin`: server-rendered pages for merchant staff. Every route needs
//! a session ([`session::Staff`] or a role guard), every POST goes through
//! [`session::AdminForm`] (CSRF token + same origin), and every action is audited.

pub mod audit;
pub mod dashboard;
pub mod exceptions;
pub mod labels;
pub mod layout;
pub mod login;
pub mod messages;
pub mod notifies;
pub mod order_actions;
pub mod order_detail;
pub mod order_timeline;
pub mod orders;
pub mod orders_csv;
pub mod reconcile;
pub mod session;
pub mod tokens;
pub mod users;
pub mod view;
pub mod webhooks;

use rocket::http::Status;
use rocket::response::Redirect;
use rocket::{Request, catch, catchers};

use crate::web::page::ErrorPage;

pub fn routes() -> Vec<rocket::Route> {
    let mut routes = login::routes();
    routes.extend(dashboard::routes());
    routes.extend(orders::routes());
    routes.extend(orders_csv::routes());
    routes.extend(order_detail::routes());
    routes.extend(order_actions::routes());
    routes.extend(notifies::routes());
    routes.extend(exceptions::routes());
    routes.extend(users::routes());
    routes.extend(tokens::routes());
    routes.extend(audit::routes());
    routes.extend(reconcile::routes());
    routes.extend(webhooks::routes());
    routes
}

pub fn catchers() -> Vec<rocket::Catcher> {
    catchers![sign_in_first, change_password_first, forbidden]
}

#[catch(401)]
fn sign_in_first(req: &Request<'_>) -> Redirect {
    let path = req.uri().path().as_str();
    let next = if req.method() == rocket::http::Method::Get && path.starts_with("/admin") { path } else { "/admin" };
    Redirect::to(format!(
        "/admin/login?next={}",
        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    ))
}

#[catch(428)]
fn change_password_first() -> Redirect {
    Redirect::to("/admin/account/password")
}

#[catch(403)]
fn forbidden() -> ErrorPage {
    ErrorPage::new(Status::Forbidden, "没有权限", "您的角色不能执行此操作，或表单已过期（请刷新页面后重试）。")
}
