//! Request guards describing the client: its IP (for `spbill_create_ip`, sign-in limits and the
//! audit log) and whether it is the WeChat in-app browser.

use std::net::IpAddr;

use rocket::request::{FromRequest, Outcome};
use rocket::{Request, async_trait};

/// The client's IP: the connection's peer, or what a trusted proxy says it is
/// (`TRUSTED_PROXY`). A header from anyone else is ignored: clients can send any header.
pub struct ClientIp(pub IpAddr);

#[async_trait]
impl<'r> FromRequest<'r> for ClientIp {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        Outcome::Success(ClientIp(client_ip(req)))
    }
}

/// The client's IP for `req` (see [`ClientIp`]).
pub fn client_ip(req: &Request<'_>) -> IpAddr {
    // Rocket's own `ip_header` is switched off at assembly, so `remote` is the socket peer.
    let peer = req.remote().map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    match req.rocket().state::<std::sync::Arc<crate::config::AppConfig>>() {
        Some(config) => config.proxy.client_ip(peer, req.headers().get_one(&config.proxy.header)),
        None => peer,
    }
}

/// Whether the request comes from WeChat's built-in browser (where `WeixinJSBridge` exists).
pub struct InWeChat(pub bool);

#[async_trait]
impl<'r> FromRequest<'r> for InWeChat {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let ua = req.headers().get_one("User-Agent").unwrap_or_default();
        Outcome::Success(InWeChat(ua.contains("MicroMessenger")))
    }
}

/// Refuses cross-site requests: `Sec-Fetch-Site` must not be `cross-site`, and an `Origin`
/// header, when sent, must be ours. Browsers send at least one of them on every POST.
pub struct SameOrigin;

#[async_trait]
impl<'r> FromRequest<'r> for SameOrigin {
    type Error = &'static str;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, &'static str> {
        let forbidden = || Outcome::Error((rocket::http::Status::Forbidden, "cross-site request refused"));
        if req.headers().get_one("Sec-Fetch-Site") == Some("cross-site") {
            return forbidden();
        }
        if let Some(origin) = req.headers().get_one("Origin") {
            let ours =
                req.rocket().state::<std::sync::Arc<crate::config::AppConfig>>().map(|c| c.public_base_url.as_str());
            let host = req.headers().get_one("Host").map(|h| h.to_owned());
            let same_host = host.is_some_and(|h| origin.ends_with(&format!("://{h}")));
            if Some(origin) != ours && !same_host {
                return forbidden();
            }
        }
        Outcome::Success(SameOrigin)
    }
}
