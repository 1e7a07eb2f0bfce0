//! Request guards describing the client: its IP (for `spbill_create_ip`) and whether it is the
//! WeChat in-app browser.

use std::net::IpAddr;

use rocket::request::{FromRequest, Outcome};
use rocket::{Request, async_trait};

/// The client's IP, as Rocket determines it (honouring `ip_header` behind a proxy).
pub struct ClientIp(pub IpAddr);

#[async_trait]
impl<'r> FromRequest<'r> for ClientIp {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        Outcome::Success(ClientIp(req.client_ip().unwrap_or(IpAddr::from([127, 0, 0, 1]))))
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
