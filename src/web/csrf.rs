//! CSRF tokens for server-rendered forms: a random token in an encrypted, SameSite=Strict cookie
//! (`Secure` when the public origin is https), echoed in a hidden field and compared in constant
//! time.

use rocket::http::{Cookie, CookieJar, SameSite};
use subtle::ConstantTimeEq;

use crate::wxpay::nonce::random_alphanumeric;

const COOKIE: &str = "csrf";

/// The browser's token, created on first use; `secure` when the public origin is https.
pub fn token(cookies: &CookieJar<'_>, secure: bool) -> String {
    if let Some(c) = cookies.get_private(COOKIE) {
        return c.value().to_owned();
    }
    let token = random_alphanumeric(32);
    let mut cookie = Cookie::new(COOKIE, token.clone());
    cookie.set_same_site(SameSite::Strict);
    cookie.set_http_only(true);
    cookie.set_path("/");
    cookie.set_secure(secure);
    cookies.add_private(cookie);
    token
}

/// Whether a submitted token matches the browser's.
pub fn verify(cookies: &CookieJar<'_>, submitted: &str) -> bool {
    match cookies.get_private(COOKIE) {
        Some(c) => !submitted.is_empty() && bool::from(c.value().as_bytes().ct_eq(submitted.as_bytes())),
        None => false,
    }
}
