//! Staff sessions: an encrypted, HttpOnly, SameSite=Strict cookie scoped to `/admin`, with idle
//! and absolute expiry, invalidated by the account's session version; the request guards that
//! demand a session and a role; and the CSRF-checked form every admin POST goes through.

use chrono::Utc;
use rocket::data::{self, Data, FromData};
use rocket::form::{Form, FromForm};
use rocket::http::{Cookie, CookieJar, SameSite, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::{Request, async_trait};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::domain::{Actor, Permission, Role, StaffUser};
use crate::payments::Payments;
use crate::staff::Accounts;
use crate::wxpay::nonce::random_alphanumeric;

pub const COOKIE: &str = "wc_staff";
/// A session unused this long ends.
pub const IDLE_SECONDS: i64 = 30 * 60;
/// A session ends this long after sign-in, however active.
pub const ABSOLUTE_SECONDS: i64 = 12 * 3600;
/// The cookie's last-seen time is refreshed at most this often.
const REFRESH_SECONDS: i64 = 60;

#[derive(Serialize, Deserialize, Clone, Debug)]
struct SessionCookie {
    uid: i64,
    ver: i64,
    /// Issued (sign-in) time, Unix seconds.
    iat: i64,
    /// Last activity, Unix seconds.
    seen: i64,
    /// The synchronizer CSRF token of this session.
    csrf: String,
}

/// A signed-in staff member (any role).
#[derive(Clone, Debug)]
pub struct Staff {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub csrf: String,
    pub remote_addr: Option<String>,
    /// The app runs in simulator mode: every page says so.
    pub simulated: bool,
}

impl Staff {
    pub fn may(&self, what: Permission) -> bool {
        self.role.may(what)
    }

    /// This staff member as the author of an action, for the use case to audit.
    pub fn actor(&self) -> Actor {
        Actor { username: self.username.clone(), remote_addr: self.remote_addr.clone() }
    }
}

/// Starts a session for a user who just signed in (or changed password).
pub fn start(cookies: &CookieJar<'_>, user: &StaffUser, secure: bool) {
    let now = Utc::now().timestamp();
    let session =
        SessionCookie { uid: user.id, ver: user.session_version, iat: now, seen: now, csrf: random_alphanumeric(32) };
    set(cookies, &session, secure);
}

pub fn end(cookies: &CookieJar<'_>) {
    cookies.remove_private(Cookie::build(COOKIE).path("/admin"));
}

fn set(cookies: &CookieJar<'_>, session: &SessionCookie, secure: bool) {
    let value = serde_json::to_string(session).expect("a session serializes");
    let mut cookie = Cookie::new(COOKIE, value);
    cookie.set_path("/admin");
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_secure(secure);
    cookies.add_private(cookie);
}

/// Why a request has no usable session; the catchers turn these into redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSession {
    /// Not signed in, expired, or ended elsewhere: sign in (401).
    SignIn,
    /// Signed in with a one-time password: change it first (428).
    ChangePassword,
}

async fn load(req: &Request<'_>) -> Result<Staff, NoSession> {
    let cookies = req.cookies();
    let session: SessionCookie =
        cookies.get_private(COOKIE).and_then(|c| serde_json::from_str(c.value()).ok()).ok_or(NoSession::SignIn)?;
    let now = Utc::now().timestamp();
    if now - session.iat > ABSOLUTE_SECONDS || now - session.seen > IDLE_SECONDS || session.iat > now + 60 {
        end(cookies);
        return Err(NoSession::SignIn);
    }
    let accounts = req.rocket().state::<Accounts>().ok_or(NoSession::SignIn)?;
    let user = accounts.session_user(session.uid).await.map_err(|e| {
        tracing::error!(error = %e, "session check failed");
        NoSession::SignIn
    })?;
    let Some(user) = user.filter(|u| !u.disabled && u.session_version == session.ver) else {
        end(cookies);
        return Err(NoSession::SignIn);
    };
    let secure = accounts.secure_cookies();
    if now - session.seen >= REFRESH_SECONDS {
        set(cookies, &SessionCookie { seen: now, ..session.clone() }, secure);
    }
    let path = req.uri().path();
    if user.must_change_password && path != "/admin/account/password" && path != "/admin/logout" {
        return Err(NoSession::ChangePassword);
    }
    Ok(Staff {
        id: user.id,
        username: user.username,
        role: user.role,
        csrf: session.csrf,
        remote_addr: Some(crate::web::client::client_ip(req).to_string()),
        simulated: accounts.simulated(),
    })
}

/// The session of this request, looked up once and shared by every guard that asks.
#[derive(Clone)]
struct CachedResult(Result<Staff, NoSession>);

fn outcome<T>(
    result: Result<Staff, NoSession>,
    needs: Permission,
    wrap: impl FnOnce(Staff) -> T,
) -> Outcome<T, NoSession> {
    match result {
        Ok(staff) if staff.may(needs) => Outcome::Success(wrap(staff)),
        Ok(_) => Outcome::Error((Status::Forbidden, NoSession::SignIn)),
        Err(NoSession::SignIn) => Outcome::Error((Status::Unauthorized, NoSession::SignIn)),
        Err(NoSession::ChangePassword) => Outcome::Error((Status::PreconditionRequired, NoSession::ChangePassword)),
    }
}

async fn session(req: &Request<'_>) -> Result<Staff, NoSession> {
    req.local_cache_async(async { CachedResult(load(req).await) }).await.0.clone()
}

#[async_trait]
impl<'r> FromRequest<'r> for Staff {
    type Error = NoSession;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, NoSession> {
        outcome(session(req).await, Permission::Read, |s| s)
    }
}

/// A signed-in operator or admin.
pub struct Operator(pub Staff);

#[async_trait]
impl<'r> FromRequest<'r> for Operator {
    type Error = NoSession;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, NoSession> {
        outcome(session(req).await, Permission::Operate, Operator)
    }
}

/// A signed-in admin.
pub struct Admin(pub Staff);

#[async_trait]
impl<'r> FromRequest<'r> for Admin {
    type Error = NoSession;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, NoSession> {
        outcome(session(req).await, Permission::Administer, Admin)
    }
}

/// A signed-in staff member who may refund.
pub struct Refunder(pub Staff);

#[async_trait]
impl<'r> FromRequest<'r> for Refunder {
    type Error = NoSession;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, NoSession> {
        outcome(session(req).await, Permission::Refund, Refunder)
    }
}

/// Forms of the admin console carry the session's CSRF token in a `csrf` field.
pub trait CsrfField {
    fn csrf(&self) -> &str;
}

/// A form posted to the admin console, accepted only with the session's CSRF token and from our
/// own origin. Every admin POST takes its body through this, so none can skip the check.
pub struct AdminForm<T>(pub T);

#[async_trait]
impl<'r, T: FromForm<'r> + CsrfField + Send> FromData<'r> for AdminForm<T> {
    type Error = &'static str;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        if !same_origin(req) {
            return data::Outcome::Error((Status::Forbidden, "cross-site request refused"));
        }
        let Ok(staff) = session(req).await else {
            return data::Outcome::Error((Status::Unauthorized, "sign in first"));
        };
        match Form::<T>::from_data(req, data).await {
            data::Outcome::Success(form) => {
                let form = form.into_inner();
                if form.csrf().is_empty() || !bool::from(form.csrf().as_bytes().ct_eq(staff.csrf.as_bytes())) {
                    return data::Outcome::Error((Status::Forbidden, "invalid CSRF token"));
                }
                data::Outcome::Success(AdminForm(form))
            }
            data::Outcome::Forward(f) => data::Outcome::Forward(f),
            data::Outcome::Error((status, _)) => data::Outcome::Error((status, "invalid form")),
        }
    }
}

/// `Sec-Fetch-Site` must not be cross-site and `Origin`, when present, must be this host.
pub fn same_origin(req: &Request<'_>) -> bool {
    if matches!(req.headers().get_one("Sec-Fetch-Site"), Some("cross-site" | "same-site")) {
        return false;
    }
    match req.headers().get_one("Origin") {
        None => true,
        Some(origin) => {
            let ours = req.rocket().state::<Payments>().map(|p| p.config.public_base_url.clone());
            let host = req.headers().get_one("Host");
            Some(origin.to_owned()) == ours || host.is_some_and(|h| origin.ends_with(&format!("://{h}")))
        }
    }
}
