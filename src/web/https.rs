//! On an https deployment (`PUBLIC_BASE_URL` starts with https): HSTS on every response, and
//! `Secure` on every cookie. TLS usually ends at a proxy in front of us, so Rocket cannot tell on
//! its own: its flash cookie and the removal cookies it writes would go out without `Secure`.
//! Plain-http deployments (local demos) get neither, or browsers would refuse them.

use std::sync::Arc;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Request, Response};

use crate::config::AppConfig;

/// One year, subdomains included: the value every HSTS guide starts from.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

pub struct HttpsOnly;

#[rocket::async_trait]
impl Fairing for HttpsOnly {
    fn info(&self) -> Info {
        Info { name: "https only", kind: Kind::Response }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        if !req.rocket().state::<Arc<AppConfig>>().is_some_and(|c| c.is_https()) {
            return;
        }
        res.set_header(Header::new("Strict-Transport-Security", HSTS));
        let cookies: Vec<String> = res.headers().get("Set-Cookie").map(str::to_owned).collect();
        if cookies.iter().all(|c| is_secure(c)) {
            return;
        }
        res.remove_header("Set-Cookie");
        for cookie in cookies {
            let cookie = if is_secure(&cookie) { cookie } else { format!("{cookie}; Secure") };
            res.adjoin_header(Header::new("Set-Cookie", cookie));
        }
    }
}

/// Whether a `Set-Cookie` value carries the `Secure` attribute.
fn is_secure(set_cookie: &str) -> bool {
    set_cookie.split(';').skip(1).any(|attribute| attribute.trim().eq_ignore_ascii_case("secure"))
}

#[cfg(test)]
mod tests {
    use super::is_secure;

    #[test]
    fn secure_is_an_attribute_not_a_value() {
        assert!(is_secure("a=b; Path=/; Secure"));
        assert!(is_secure("a=b; secure; HttpOnly"));
        assert!(!is_secure("a=b; Path=/"));
        assert!(!is_secure("Secure=1; Path=/"));
        assert!(!is_secure("a=Secure"));
    }
}
