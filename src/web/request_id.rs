//! Request ids: each request gets one (the caller's `X-Request-Id` when it is a sane token, else a
//! new one), returned in the response's `X-Request-Id` and carried by every log line emitted
//! while the request is handled, through a `request` span around its handler.
//!
//! Rocket's fairings cannot wrap the handler's future, so the span is entered by wrapping each
//! route's handler ([`traced`]); `web::mount` does it for every route it mounts.

use rocket::http::Header;
use rocket::route::{Handler, Outcome, Route};
use rocket::{Data, Request, Response};
use tracing::Instrument;

pub const HEADER: &str = "X-Request-Id";
/// Longer ids are replaced: they end up in every log line of the request.
pub const MAX_LEN: usize = 64;

/// The id and span of one request, kept in its local cache.
#[derive(Clone)]
pub struct RequestContext {
    pub id: String,
    pub span: tracing::Span,
}

impl RequestContext {
    fn new(id: String) -> RequestContext {
        // At ERROR level so the span stays enabled whatever RUST_LOG keeps: a warning of a
        // request logged under `RUST_LOG=warn` still carries its id.
        let span = tracing::error_span!("request", request_id = %id);
        RequestContext { id, span }
    }
}

/// Whether a caller's id may be kept as it is: 1 to [`MAX_LEN`] characters of
/// `[A-Za-z0-9._:-]`. Anything else is attacker input we will not write into logs.
pub fn is_sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A fresh id: 16 random letters and digits (about 95 bits), short enough to read in a log.
pub fn generate() -> String {
    crate::wxpay::nonce::random_alphanumeric(16)
}

/// Assigns the request its id (called first thing, from the request log's `on_request`).
pub fn assign(req: &Request<'_>) {
    req.local_cache(|| {
        let given = req.headers().get_one(HEADER).map(str::trim).filter(|id| is_sane(id));
        RequestContext::new(given.map_or_else(generate, str::to_owned))
    });
}

/// The request's id and span (made now if [`assign`] never ran, e.g. for a request Rocket
/// refused before the fairings).
pub fn of<'r>(req: &'r Request<'_>) -> &'r RequestContext {
    req.local_cache(|| RequestContext::new(generate()))
}

/// Returns the id to the caller.
pub fn set_header(req: &Request<'_>, res: &mut Response<'_>) {
    res.set_header(Header::new(HEADER, of(req).id.clone()));
}

/// `routes` with each handler run inside its request's span.
pub fn traced(routes: Vec<Route>) -> Vec<Route> {
    routes
        .into_iter()
        .map(|mut route| {
            route.handler = Box::new(Traced(route.handler));
            route
        })
        .collect()
}

/// A route's own handler, run inside the request's span: guards, the use case it calls and the
/// WeChat calls that makes all log under the request's id.
#[derive(Clone)]
struct Traced(Box<dyn Handler>);

#[rocket::async_trait]
impl Handler for Traced {
    async fn handle<'r>(&self, req: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        let span = of(req).span.clone();
        self.0.handle(req, data).instrument(span).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_tokens_are_kept() {
        for ok in ["abc", "0f8e-12:ab_cd.EF", &"a".repeat(MAX_LEN)] {
            assert!(is_sane(ok), "{ok}");
        }
        for bad in ["", &"a".repeat(MAX_LEN + 1), "a b", "a\nb", "x\"y", "<script>", "ü", "a/b", "{}", "a%0a"] {
            assert!(!is_sane(bad), "{bad:?}");
        }
        let fresh = generate();
        assert!(is_sane(&fresh) && fresh.len() == 16);
        assert_ne!(fresh, generate());
    }
}
