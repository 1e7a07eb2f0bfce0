//! The users page (admins only): every staff account with its role and state, and the actions on
//! it (create, change role, disable / enable, unlock, reset password), each a CSRF-checked form,
//! audited in the same transaction, answered with a redirect and a flash. One-time passwords are
//! handed to the next page view once, in an encrypted cookie, never in a log or the audit detail.

use askama::Template;
use chrono::Utc;
use rocket::form::FromForm;
use rocket::http::{Cookie, CookieJar, SameSite};
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::response::{Flash, Redirect};
use rocket::{State, get, post, routes};
use serde::{Deserialize, Serialize};

use super::labels::{self, RoleName};
use super::layout::Chrome;
use super::login::CsrfOnly;
use super::session::{Admin, AdminForm, CsrfField, Staff};
use super::view::{beijing_time, opt_time};
use crate::error::AppError;
use crate::staff::manage::{AccountChange, ManageError, Refusal};
use crate::staff::{Accounts, Role, StaffUser};
use crate::web::page::render;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_users, post_create, post_role, post_disable, post_enable, post_unlock, post_reset_password]
}

const PAGE: &str = "/admin/users";

/// A secret (one-time password, API token) waiting to be shown once.
pub struct Secret {
    pub label: String,
    pub value: String,
}

const REVEAL_COOKIE: &str = "wc_reveal";
/// How long a secret waits for the page view after the POST that made it.
const REVEAL_SECONDS: i64 = 300;

#[derive(Serialize, Deserialize)]
struct Revealed {
    uid: i64,
    label: String,
    secret: String,
    exp: i64,
}

/// Hands `secret` to the next GET of `page` by this admin. Rocket's flash cookie is neither
/// encrypted nor scoped, so the secret rides in a private (encrypted, authenticated), HttpOnly
/// cookie limited to the page's path and bound to the admin who made it.
pub(super) fn reveal_once(cookies: &CookieJar<'_>, page: &'static str, staff: &Staff, secret: Secret, secure: bool) {
    let value = Revealed {
        uid: staff.id,
        label: secret.label,
        secret: secret.value,
        exp: Utc::now().timestamp() + REVEAL_SECONDS,
    };
    let mut cookie = Cookie::new(REVEAL_COOKIE, serde_json::to_string(&value).expect("a secret serializes"));
    cookie.set_path(page);
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_secure(secure);
    cookie.set_max_age(rocket::time::Duration::seconds(REVEAL_SECONDS));
    cookies.add_private(cookie);
}

/// Takes the secret waiting for `page`, if it is this admin's and fresh; it is gone afterwards.
pub(super) fn take_revealed(cookies: &CookieJar<'_>, page: &'static str, staff: &Staff) -> Option<Secret> {
    let cookie = cookies.get_private(REVEAL_COOKIE)?;
    cookies.remove_private(Cookie::build(REVEAL_COOKIE).path(page));
    let revealed: Revealed = serde_json::from_str(cookie.value()).ok()?;
    (revealed.uid == staff.id && revealed.exp >= Utc::now().timestamp())
        .then_some(Secret { label: revealed.label, value: revealed.secret })
}

struct UserView {
    id: i64,
    username: String,
    role: &'static str,
    role_label: &'static str,
    state: String,
    state_class: &'static str,
    must_change: bool,
    last_login: String,
    created: String,
    is_self: bool,
    disabled: bool,
    locked: bool,
    failed_logins: i32,
}

impl UserView {
    fn new(u: StaffUser, me: i64) -> UserView {
        let now = Utc::now();
        let locked = u.is_locked(now);
        let (state, state_class) = if u.disabled {
            ("已停用".to_owned(), "muted")
        } else if let (true, Some(until)) = (locked, u.locked_until) {
            (format!("已锁定（至 {}）", beijing_time(until)), "bad")
        } else {
            ("正常".to_owned(), "ok")
        };
        UserView {
            id: u.id,
            username: u.username,
            role: u.role.as_str(),
            role_label: labels::role(u.role),
            state,
            state_class,
            must_change: u.must_change_password,
            last_login: opt_time(u.last_login_at),
            created: beijing_time(u.created_at),
            is_self: u.id == me,
            disabled: u.disabled,
            locked,
            failed_logins: u.failed_logins,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserView>,
    roles: [RoleName; 3],
    secret: Option<Secret>,
}

#[get("/admin/users")]
async fn get_users(
    admin: Admin,
    flash: Option<FlashMessage<'_>>,
    cookies: &CookieJar<'_>,
    accounts: &State<Accounts>,
) -> Result<RawHtml<String>, AppError> {
    let staff = admin.0;
    let me = staff.id;
    let users = accounts.list_users().await?.into_iter().map(|u| UserView::new(u, me)).collect();
    let secret = take_revealed(cookies, PAGE, &staff);
    render(&UsersPage { chrome: Chrome::new(&staff, "users", flash), users, roles: Role::ALL.map(RoleName), secret })
}

#[derive(FromForm)]
struct CreateForm {
    // Missing fields are empty ones: a missing token is then a 403 and a missing name a message.
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    username: String,
    #[field(default = String::new())]
    role: String,
}

impl CsrfField for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[post("/admin/users", data = "<form>")]
async fn post_create(
    admin: Admin,
    form: AdminForm<CreateForm>,
    cookies: &CookieJar<'_>,
    accounts: &State<Accounts>,
) -> Result<Flash<Redirect>, AppError> {
    let staff = admin.0;
    let username = form.0.username.trim().to_owned();
    let Some(role) = Role::parse(form.0.role.trim()) else {
        return Ok(back_error("请选择有效的角色"));
    };
    match accounts.create_user(&staff.actor(), &username, role).await {
        Ok(one_time) => {
            let label = format!("{username} 的一次性密码");
            reveal_once(cookies, PAGE, &staff, Secret { label, value: one_time }, accounts.secure_cookies());
            Ok(back_success(format!(
                "已创建用户 {username}（{}）。一次性密码只显示这一次，用户首次登录后必须修改。",
                labels::role(role)
            )))
        }
        Err(e) => refusal(e),
    }
}

#[derive(FromForm)]
struct RoleForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    role: String,
}

impl CsrfField for RoleForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

#[post("/admin/users/<id>/role", data = "<form>")]
async fn post_role(
    admin: Admin,
    id: i64,
    form: AdminForm<RoleForm>,
    accounts: &State<Accounts>,
) -> Result<Flash<Redirect>, AppError> {
    let Some(role) = Role::parse(form.0.role.trim()) else {
        return Ok(back_error("请选择有效的角色"));
    };
    let before = match change(accounts, &admin.0, id, AccountChange::SetRole(role)).await {
        Ok(before) => before,
        Err(e) => return refusal(e),
    };
    Ok(back_success(format!("已将 {} 的角色改为{}，其登录会话已结束。", before.username, labels::role(role))))
}

#[post("/admin/users/<id>/disable", data = "<_form>")]
async fn post_disable(
    admin: Admin,
    id: i64,
    _form: AdminForm<CsrfOnly>,
    accounts: &State<Accounts>,
) -> Result<Flash<Redirect>, AppError> {
    match change(accounts, &admin.0, id, AccountChange::Disable).await {
        Ok(u) => Ok(back_success(format!("已停用 {}，其登录会话已结束。", u.username))),
        Err(e) => refusal(e),
    }
}

#[post("/admin/users/<id>/enable", data = "<_form>")]
async fn post_enable(
    admin: Admin,
    id: i64,
    _form: AdminForm<CsrfOnly>,
    accounts: &State<Accounts>,
) -> Result<Flash<Redirect>, AppError> {
    match change(accounts, &admin.0, id, AccountChange::Enable).await {
        Ok(u) => Ok(back_success(format!("已启用 {}。", u.username))),
        Err(e) => refusal(e),
    }
}

#[post("/admin/users/<id>/unlock", data = "<_form>")]
async fn post_unlock(
    admin: Admin,
    id: i64,
    _form: AdminForm<CsrfOnly>,
    accounts: &State<Accounts>,
) -> Result<Flash<Redirect>, AppError> {
    match change(accounts, &admin.0, id, AccountChange::Unlock).await {
        Ok(u) => Ok(back_success(format!("已解除 {} 的锁定。", u.username))),
        Err(e) => refusal(e),
    }
}

#[post("/admin/users/<id>/password", data = "<_form>")]
async fn post_reset_password(
    admin: Admin,
    id: i64,
    _form: AdminForm<CsrfOnly>,
    cookies: &CookieJar<'_>,
    accounts: &State<Accounts>,
) -> Result<Flash<Redirect>, AppError> {
    match accounts.reset_password(admin.0.id, &admin.0.actor(), id).await {
        Ok((u, one_time)) => {
            let label = format!("{} 的一次性密码", u.username);
            reveal_once(cookies, PAGE, &admin.0, Secret { label, value: one_time }, accounts.secure_cookies());
            Ok(back_success(format!(
                "已重置 {} 的密码，其登录会话已结束。一次性密码只显示这一次，用户登录后必须修改。",
                u.username
            )))
        }
        Err(e) => refusal(e),
    }
}

/// Applies a change (audited by the use case); returns the account as it was.
async fn change(accounts: &Accounts, staff: &Staff, id: i64, change: AccountChange) -> Result<StaffUser, ManageError> {
    accounts.change_user(staff.id, &staff.actor(), id, change).await
}

/// A refused change goes back to the page with the reason; a database failure is a 5xx.
fn refusal(e: ManageError) -> Result<Flash<Redirect>, AppError> {
    match e {
        ManageError::Db(e) => Err(e.into()),
        ManageError::Internal(e) => Err(AppError::Internal(e)),
        ManageError::NotFound => Ok(back_error("用户不存在")),
        ManageError::Refused(why) => Ok(back_error(refusal_text(&why))),
    }
}

fn refusal_text(why: &Refusal) -> String {
    match why {
        Refusal::UsernameInvalid => "用户名为 3–32 个字母、数字或 . _ -".into(),
        Refusal::UsernameTaken(name) => format!("用户名 {name} 已存在"),
        Refusal::AlreadyHasRole { username, role } => format!("{username} 已经是{}", labels::role(*role)),
        Refusal::OwnRole => "不能修改自己的角色".into(),
        Refusal::AlreadyDisabled(name) => format!("{name} 已停用"),
        Refusal::OwnAccountDisabled => "不能停用自己的账户".into(),
        Refusal::NotDisabled(name) => format!("{name} 未停用"),
        Refusal::NotLocked(name) => format!("{name} 未被锁定"),
        Refusal::OwnPasswordReset => "请在「修改密码」页面修改自己的密码".into(),
        Refusal::LastAdmin => "至少需要保留一个有效的管理员账户".into(),
    }
}

fn back_success(message: String) -> Flash<Redirect> {
    Flash::success(Redirect::to(PAGE), message)
}

fn back_error(message: impl Into<String>) -> Flash<Redirect> {
    Flash::error(Redirect::to(PAGE), message.into())
}
