//! Static assets compiled into the binary (one file to deploy), linked by URLs that carry a hash
//! of their content (`/static/js/pay.js?v=<hash>`): a changed file gets a new URL, so a browser
//! never keeps running yesterday's script under today's page, whatever the crate version says.
//! Only a request naming the current hash may be cached for good; any other (no hash, a stale one
//! from an old page) gets the current content but must be revalidated.

use std::sync::LazyLock;

use rocket::http::{ContentType, Header};
use rocket::response::Responder;
use rocket::{get, routes};
use sha2::{Digest, Sha256};

/// What page structs keep in their `version` field (the name predates content hashes): templates
/// ask it for the URL of each asset, `{{ version.url("css/app.css") }}`.
pub const VERSION: Assets = Assets;

/// The handle templates call [`url`] through; see [`VERSION`].
#[derive(Clone, Copy, Debug)]
pub struct Assets;

impl Assets {
    /// The URL of the asset `name` (a path under `static/`), with its content hash.
    pub fn url(&self, name: &str) -> &'static str {
        url(name)
    }
}

/// name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    ("js/pay.js", "text/javascript; charset=utf-8", include_str!("../../static/js/pay.js")),
    ("js/return.js", "text/javascript; charset=utf-8", include_str!("../../static/js/return.js")),
    ("css/app.css", "text/css; charset=utf-8", include_str!("../../static/css/app.css")),
    ("css/admin.css", "text/css; charset=utf-8", include_str!("../../static/css/admin.css")),
    // Pico CSS 2.1.1 (MIT, see static/vendor/pico-LICENSE.md), vendored: no build step, no CDN.
    ("vendor/pico.min.css", "text/css; charset=utf-8", include_str!("../../static/vendor/pico.min.css")),
];

/// Cached for a year without asking again: only ever sent for the URL of the current content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Stored, but checked with us before each use: the URL may serve other content tomorrow.
const REVALIDATE: &str = "no-cache";

struct Served {
    name: &'static str,
    mime: &'static str,
    body: &'static str,
    hash: String,
    url: &'static str,
}

/// Hashed once, at the first page or asset served.
static SERVED: LazyLock<Vec<Served>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(name, mime, body)| {
            let hash = content_hash(body.as_bytes());
            // Leaked once per file for the life of the process, so templates get `&'static str`.
            let url = Box::leak(format!("/static/{name}?v={hash}").into_boxed_str());
            Served { name, mime, body, hash, url }
        })
        .collect()
});

/// The first 16 hex digits (64 bits) of the SHA-256 of `content`: plenty to tell versions of a
/// file apart, short enough for a URL.
pub fn content_hash(content: &[u8]) -> String {
    let digest = Sha256::digest(content);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The URL of the asset `name` (a path under `static/`, e.g. `css/app.css`) with its content
/// hash. Templates without a `version` field call it as `crate::web::assets::url("…")`. A name
/// that is not served gets its plain path (a unit test keeps templates from naming one).
pub fn url(name: &str) -> &'static str {
    let found = SERVED.iter().find(|f| f.name == name);
    debug_assert!(found.is_some(), "no asset named {name}");
    found.map_or("/static/missing", |f| f.url)
}

pub fn routes() -> Vec<rocket::Route> {
    routes![get_asset]
}

#[derive(Responder)]
struct Asset {
    body: &'static str,
    content_type: ContentType,
    cache: Header<'static>,
}

/// The cache policy for a request of a file whose current hash is `current`, asked for as `v`.
fn cache_control(current: &str, v: Option<&str>) -> &'static str {
    if v == Some(current) { IMMUTABLE } else { REVALIDATE }
}

#[get("/static/<path..>?<v>")]
fn get_asset(path: std::path::PathBuf, v: Option<&str>) -> Option<Asset> {
    let path = path.to_str()?;
    let file = SERVED.iter().find(|f| f.name == path)?;
    Some(Asset {
        body: file.body,
        content_type: ContentType::parse_flexible(file.mime)?,
        cache: Header::new("Cache-Control", cache_control(&file.hash, v)),
    })
}

#[cfg(test)]
mod tests {
    use rocket::http::Status;
    use rocket::local::blocking::Client;

    use super::*;

    #[test]
    fn the_hash_follows_the_content() {
        let a = content_hash(b"body { color: red; }");
        assert_eq!(a, content_hash(b"body { color: red; }"), "the same content, the same hash");
        assert_ne!(a, content_hash(b"body { color: blue; }"), "changed content, a new hash");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{a}");
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(content_hash(b"abc"), "ba7816bf8f01cfea");
    }

    #[test]
    fn every_asset_url_names_its_file_and_the_hash_of_its_content() {
        for &(name, _, body) in FILES {
            let url = url(name);
            assert_eq!(url, format!("/static/{name}?v={}", content_hash(body.as_bytes())));
            assert_eq!(VERSION.url(name), url, "the handle and the function agree");
        }
        let hashes: std::collections::BTreeSet<&str> = FILES.iter().map(|(name, _, _)| url(name)).collect();
        assert_eq!(hashes.len(), FILES.len());
    }

    #[test]
    fn only_the_current_hash_is_cached_for_good() {
        assert_eq!(cache_control("0123456789abcdef", Some("0123456789abcdef")), IMMUTABLE);
        assert_eq!(cache_control("0123456789abcdef", Some("fedcba9876543210")), REVALIDATE);
        assert_eq!(cache_control("0123456789abcdef", Some("")), REVALIDATE);
        assert_eq!(cache_control("0123456789abcdef", None), REVALIDATE);
    }

    #[test]
    fn served_with_the_policy_its_url_earns() {
        let client = Client::untracked(rocket::build().mount("/", routes())).unwrap();
        let body = include_str!("../../static/js/pay.js");
        for (path, policy) in [
            (url("js/pay.js").to_owned(), IMMUTABLE),
            ("/static/js/pay.js".to_owned(), REVALIDATE),
            ("/static/js/pay.js?v=0000000000000000".to_owned(), REVALIDATE),
            // An old page's link (the crate version, before content hashes) still works.
            (format!("/static/js/pay.js?v={}", env!("CARGO_PKG_VERSION")), REVALIDATE),
        ] {
            let res = client.get(path.as_str()).dispatch();
            assert_eq!(res.status(), Status::Ok, "{path}");
            assert_eq!(res.headers().get_one("Cache-Control"), Some(policy), "{path}");
            assert_eq!(res.content_type(), Some(ContentType::JavaScript), "{path}");
            assert_eq!(res.into_string().as_deref(), Some(body), "{path}");
        }
        assert_eq!(client.get("/static/js/nope.js").dispatch().status(), Status::NotFound);
        assert_eq!(client.get("/static/../Cargo.toml").dispatch().status(), Status::NotFound);
    }

    /// Every asset a template links goes through [`url`] (or a `version` field's `url`) and names
    /// a file that is served, and every served file is linked: no hand-written `/static/` link
    /// that would miss the hash.
    #[test]
    fn templates_link_assets_only_by_hashed_url() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut pending = vec![root];
        let mut linked = std::collections::BTreeSet::new();
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let html = std::fs::read_to_string(&path).unwrap();
                assert!(!html.contains("/static/"), "{} links an asset by hand", path.display());
                for call in html.split("url(\"").skip(1) {
                    let name = call.split('"').next().unwrap();
                    assert!(FILES.iter().any(|(n, _, _)| *n == name), "{} links {name}", path.display());
                    linked.insert(name.to_owned());
                }
            }
        }
        let served: std::collections::BTreeSet<String> = FILES.iter().map(|(n, _, _)| (*n).to_owned()).collect();
        assert_eq!(linked, served, "every served asset is linked, by its hashed URL");
    }
}
