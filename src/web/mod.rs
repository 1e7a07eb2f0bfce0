//! The HTTP surface: routes, security headers, static assets, error pages. Handlers are thin:
//! parse, call `payments/`, render.

pub mod admin;
pub mod api;
pub mod assets;
pub mod checkout;
pub mod client;
pub mod csrf;
pub mod demo;
pub mod health;
pub mod https;
pub mod notify;
pub mod oauth_state;
pub mod page;
pub mod refund_notify;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Build, Request, Response, Rocket, catch, catchers};

/// Mounts every route of the product.
pub fn mount(rocket: Rocket<Build>, simulator: bool) -> Rocket<Build> {
    let rocket = rocket
        .mount("/", health::routes())
        .mount("/", notify::routes())
        .mount("/", refund_notify::routes())
        .mount("/", checkout::routes())
        .mount("/", assets::routes())
        .mount("/api/v1", api::routes())
        .mount("/", admin::routes())
        .register("/", catchers![not_found, unprocessable, too_large, internal])
        .register("/api", api::catchers())
        .register("/admin", admin::catchers())
        .attach(SecurityHeaders)
        .attach(https::HttpsOnly)
        .attach(RequestLog);
    if simulator { rocket.mount("/", demo::routes()) } else { rocket }
}

/// Security headers on every response; `no-store` on pages that show payment state.
pub struct SecurityHeaders;

#[rocket::async_trait]
impl Fairing for SecurityHeaders {
    fn info(&self) -> Info {
        Info { name: "security headers", kind: Kind::Response }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let path = req.uri().path();
        // The simulator's pages and bridge belong to the fake WeChat, not to us.
        if path.starts_with("/simulator") {
            return;
        }
        res.set_header(Header::new(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ));
        res.set_header(Header::new("X-Frame-Options", "DENY"));
        res.set_header(Header::new("X-Content-Type-Options", "nosniff"));
        // Not "no-referrer": with it browsers send `Origin: null` on our own form posts.
        res.set_header(Header::new("Referrer-Policy", "same-origin"));
        if !path.starts_with("/static/") {
            res.set_header(Header::new("Cache-Control", "no-store"));
        }
    }
}

#[catch(404)]
fn not_found() -> page::ErrorPage {
    page::ErrorPage::new(rocket::http::Status::NotFound, "页面不存在", "链接可能有误，或订单已不存在。")
}

#[catch(422)]
fn unprocessable() -> page::ErrorPage {
    page::ErrorPage::new(rocket::http::Status::UnprocessableEntity, "请求无效", "请求的内容无法处理。")
}

#[catch(413)]
fn too_large() -> page::ErrorPage {
    page::ErrorPage::new(rocket::http::Status::PayloadTooLarge, "请求过大", "请求的内容超过了允许的大小。")
}

#[catch(500)]
fn internal() -> page::ErrorPage {
    page::ErrorPage::new(rocket::http::Status::InternalServerError, "服务暂时不可用", "请稍后重试。")
}

/// One log line per request: method, path (never the query, which may hold an OAuth code),
/// status and time taken.
pub struct RequestLog;

#[derive(Clone, Copy)]
struct Started(std::time::Instant);

#[rocket::async_trait]
impl Fairing for RequestLog {
    fn info(&self) -> Info {
        Info { name: "request log", kind: Kind::Request | Kind::Response }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut rocket::Data<'_>) {
        req.local_cache(|| Started(std::time::Instant::now()));
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let started = req.local_cache(|| Started(std::time::Instant::now()));
        tracing::info!(
            method = %req.method(),
            path = %req.uri().path(),
            status = res.status().code,
            ms = started.0.elapsed().as_millis() as u64,
            "request"
        );
    }
}
