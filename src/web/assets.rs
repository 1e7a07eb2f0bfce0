//! Static assets compiled into the binary (one file to deploy), served with long cache
//! lifetimes; pages reference them with a version query so a new release busts the cache.

use rocket::http::{ContentType, Header};
use rocket::response::Responder;
use rocket::{get, routes};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const FILES: &[(&str, &str, &str)] = &[
    ("js/pay.js", "text/javascript; charset=utf-8", include_str!("../../static/js/pay.js")),
    ("css/app.css", "text/css; charset=utf-8", include_str!("../../static/css/app.css")),
    ("css/admin.css", "text/css; charset=utf-8", include_str!("../../static/css/admin.css")),
    // Pico CSS 2.1.1 (MIT, see static/vendor/pico-LICENSE.md), vendored: no build step, no CDN.
    ("vendor/pico.min.css", "text/css; charset=utf-8", include_str!("../../static/vendor/pico.min.css")),
];

pub fn routes() -> Vec<rocket::Route> {
    routes![get_asset]
}

#[derive(Responder)]
struct Asset {
    body: &'static str,
    content_type: ContentType,
    cache: Header<'static>,
}

#[get("/static/<path..>")]
fn get_asset(path: std::path::PathBuf) -> Option<Asset> {
    let path = path.to_str()?;
    let (_, mime, body) = FILES.iter().find(|(name, _, _)| *name == path)?;
    Some(Asset {
        body,
        content_type: ContentType::parse_flexible(mime)?,
        cache: Header::new("Cache-Control", "public, max-age=31536000, immutable"),
    })
}
