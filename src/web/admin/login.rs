//! Signing in and out, and changing one's own password.

use askama::Template;
use rocket::form::{Form, FromForm};
use rocket::http::{CookieJar, Status};
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::response::{Flash, Redirect};
use rocket::{Either, State, get, post, routes};

use super::layout::Chrome;
use super::messages;
use super::session::{self, AdminForm, CsrfField, Staff};
use crate::error::AppError;
use crate::staff::Accounts;
use crate::staff::login::{LoginOutcome, PasswordRefusal};
use crate::web::assets::VERSION;
use crate::web::client::{ClientIp, SameOrigin};
use crate::web::csrf;
use crate::web::page::render;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_login, post_login, post_logout, get_password, post_password]
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    error: Option<String>,
    version: crate::web::assets::Assets,
    /// Simulator mode: the banner shows here too.
    simulated: bool,
}

/// Only local admin paths are followed after sign-in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/admin") && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/admin".to_owned(),
    }
}

#[get("/admin/login?<next>")]
fn get_login(
    next: Option<&str>,
    cookies: &CookieJar<'_>,
    accounts: &State<Accounts>,
) -> Result<RawHtml<String>, AppError> {
    let csrf = csrf::token(cookies, accounts.secure_cookies());
    render(&LoginPage { csrf, next: safe_next(next), error: None, version: VERSION, simulated: accounts.simulated() })
}

#[derive(FromForm)]
struct LoginForm<'r> {
    username: &'r str,
    password: &'r str,
    csrf: &'r str,
    next: Option<&'r str>,
}

#[post("/admin/login", data = "<form>")]
async fn post_login(
    form: Form<LoginForm<'_>>,
    _same_origin: SameOrigin,
    cookies: &CookieJar<'_>,
    ip: ClientIp,
    accounts: &State<Accounts>,
) -> Result<Either<Redirect, (Status, RawHtml<String>)>, AppError> {
    let next = safe_next(form.next);
    let page = |status: Status, error: &str| -> Result<_, AppError> {
        let html = render(&LoginPage {
            csrf: csrf::token(cookies, accounts.secure_cookies()),
            next: next.clone(),
            error: Some(error.into()),
            version: VERSION,
            simulated: accounts.simulated(),
        })?;
        Ok(Either::Right((status, html)))
    };
    if !csrf::verify(cookies, form.csrf) {
        return page(Status::Forbidden, "页面已过期，请重新登录");
    }
    // No account name holds a NUL, and PostgreSQL cannot even look one up: a wrong name.
    if form.username.contains('\0') {
        return page(Status::Unauthorized, "用户名或密码错误");
    }
    match accounts.sign_in(form.username.trim(), form.password, &ip.0.to_string()).await? {
        LoginOutcome::Success(user) => {
            session::start(cookies, &user, accounts.secure_cookies());
            let target = if user.must_change_password { "/admin/account/password".to_owned() } else { next.clone() };
            Ok(Either::Left(Redirect::to(target)))
        }
        LoginOutcome::Refused => page(Status::Unauthorized, &messages::sign_in_refused()),
        LoginOutcome::RateLimited => page(Status::TooManyRequests, messages::SIGN_IN_RATE_LIMITED),
    }
}

#[derive(FromForm)]
pub struct CsrfOnly {
    // A missing token is an empty one, refused by the CSRF check (403) rather than a form error.
    #[field(default = String::new())]
    pub csrf: String,
}

impl CsrfField for CsrfOnly {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[post("/admin/logout", data = "<_form>")]
async fn post_logout(
    staff: Staff,
    _form: AdminForm<CsrfOnly>,
    cookies: &CookieJar<'_>,
    accounts: &State<Accounts>,
) -> Result<Redirect, AppError> {
    session::end(cookies);
    accounts.sign_out(staff.id, &staff.actor()).await?;
    Ok(Redirect::to("/admin/login"))
}

#[derive(Template)]
#[template(path = "admin/password.html")]
struct PasswordPage {
    chrome: Chrome,
    error: Option<String>,
    forced: bool,
}

#[get("/admin/account/password")]
async fn get_password(
    staff: Staff,
    flash: Option<FlashMessage<'_>>,
    accounts: &State<Accounts>,
) -> Result<RawHtml<String>, AppError> {
    let forced = accounts.must_change_password(staff.id).await?;
    render(&PasswordPage { chrome: Chrome::new(&staff, "", flash), error: None, forced })
}

#[derive(FromForm)]
struct PasswordForm {
    #[field(default = String::new())]
    csrf: String,
    current: String,
    new: String,
    confirm: String,
}

impl CsrfField for PasswordForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[post("/admin/account/password", data = "<form>")]
async fn post_password(
    staff: Staff,
    form: AdminForm<PasswordForm>,
    cookies: &CookieJar<'_>,
    accounts: &State<Accounts>,
) -> Result<Either<Flash<Redirect>, (Status, RawHtml<String>)>, AppError> {
    let form = form.0;
    let forced = accounts.must_change_password(staff.id).await?;
    let refuse = |message: String| -> Result<_, AppError> {
        let html = render(&PasswordPage { chrome: Chrome::new(&staff, "", None), error: Some(message), forced })?;
        Ok(Either::Right((Status::UnprocessableEntity, html)))
    };
    let actor = staff.actor();
    let changed = accounts.change_own_password(staff.id, &actor, &form.current, &form.new, &form.confirm);
    let user = match changed.await {
        Ok(Ok(user)) => user,
        Ok(Err(why)) => return refuse(password_refusal(why).into()),
        Err(AppError::Invalid { message, .. }) => return refuse(message),
        Err(e) => return Err(e),
    };
    // The version bump ended every session, this one included; start a fresh one.
    session::start(cookies, &user, accounts.secure_cookies());
    Ok(Either::Left(Flash::success(Redirect::to("/admin"), "密码已修改")))
}

fn password_refusal(why: PasswordRefusal) -> &'static str {
    match why {
        PasswordRefusal::WrongCurrent => "当前密码不正确",
        PasswordRefusal::ConfirmationDiffers => "两次输入的新密码不一致",
        PasswordRefusal::SameAsCurrent => "新密码不能与当前密码相同",
    }
}
