//! The HTTP surface: routes, security headers, static assets, error pages. Handlers are thin:
//! parse, call `payments/`, render.

pub mod admin;
pub mod api;
pub mod api_docs;
pub mod assets;
pub mod checkout;
pub mod client;
pub mod csrf;
pub mod demo;
pub mod health;
pub mod https;
pub mod metrics;
pub mod notify;
pub mod notify_v3;
pub mod oauth_state;
pub mod page;
pub mod refund_notify;
pub mod request_id;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Build, Request, Response, Rocket, catch, catchers};

/// Mounts every route of the product, each handler run inside its request's span
/// (`request_id::traced`), so every line it logs carries the request id.
pub fn mount(rocket: Rocket<Build>, simulator: bool) -> Rocket<Build> {
    let mut mounts = vec![
        ("/", health::routes()),
        ("/", metrics::routes()),
        ("/", notify::routes()),
        ("/", notify_v3::routes()),
        ("/", refund_notify::routes()),
        ("/", checkout::routes()),
        ("/", assets::routes()),
        ("/api/v1", api::routes()),
        ("/", api_docs::routes()),
        ("/", admin::routes()),
    ];
    if simulator {
        mounts.push(("/", demo::routes()));
    }
    // Installed now, so that the first request is counted.
    metrics::handle();
    let rocket =
        mounts.into_iter().fold(rocket, |rocket, (base, routes)| rocket.mount(base, request_id::traced(routes)));
    rocket
        .register("/", catchers![not_found, unprocessable, too_large, internal])
        .register("/api", api::catchers())
        .register("/admin", admin::catchers())
        .manage(metrics::Figures::default())
        .attach(SecurityHeaders)
        .attach(https::HttpsOnly)
        .attach(RequestLog)
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
/// status and time taken, in the request's span (its id); also gives the request its id, returns
/// it in `X-Request-Id`, and counts the request for `/metrics`.
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
        request_id::assign(req);
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let elapsed = req.local_cache(|| Started(std::time::Instant::now())).0.elapsed();
        request_id::set_header(req, res);
        let status = res.status().code;
        metrics::record_request(&metrics::route_label(req), req.method().as_str(), status, elapsed);
        request_id::of(req).span.in_scope(|| {
            tracing::info!(
                method = %req.method(),
                path = %req.uri().path(),
                status,
                ms = elapsed.as_millis() as u64,
                "request"
            )
        });
    }
}
