//! The API tokens page (admins only): the merchant API's bearer tokens by name and scope, creating
//! one (shown once; only its SHA-256 is stored) and revoking one (it stops authenticating at once). Both are
//! audited with the token's name and id, never the token.

use askama::Template;
use rocket::form::FromForm;
use rocket::http::CookieJar;
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::response::{Flash, Redirect};
use rocket::{State, get, post, routes};

use super::layout::Chrome;
use super::login::CsrfOnly;
use super::session::{Admin, AdminForm, CsrfField};
use super::users::{Secret, reveal_once, take_revealed};
use super::view::beijing_time;
use crate::domain::ApiScope;
use crate::error::AppError;
use crate::staff::Accounts;
use crate::staff::tokens::{MAX_NAME_CHARS, NameProblem, Revoked, check_name};
use crate::web::page::render;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_tokens, post_create, post_revoke]
}

const PAGE: &str = "/admin/tokens";

struct TokenView {
    id: i64,
    name: String,
    scope: &'static str,
    created: String,
    revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/tokens.html")]
struct TokensPage {
    chrome: Chrome,
    tokens: Vec<TokenView>,
    secret: Option<Secret>,
    /// A token from `API_TOKEN` also authenticates; it lives in the configuration, not here.
    configured_token: bool,
}

#[get("/admin/tokens")]
async fn get_tokens(
    admin: Admin,
    flash: Option<FlashMessage<'_>>,
    cookies: &CookieJar<'_>,
    accounts: &State<Accounts>,
    config: &State<std::sync::Arc<crate::config::AppConfig>>,
) -> Result<RawHtml<String>, AppError> {
    let rows = accounts.list_tokens().await?;
    let tokens = rows
        .into_iter()
        .map(|t| TokenView {
            id: t.id,
            name: t.name,
            scope: scope_label(t.scope),
            created: beijing_time(t.created_at.and_utc()),
            revoked: t.revoked_at.map(|r| beijing_time(r.and_utc())),
        })
        .collect();
    let secret = take_revealed(cookies, PAGE, &admin.0);
    render(&TokensPage {
        chrome: Chrome::new(&admin.0, "tokens", flash),
        tokens,
        secret,
        configured_token: config.api_token.is_some(),
    })
}

#[derive(FromForm)]
struct CreateForm {
    // Missing fields are empty ones: a missing token is then a 403 and a missing name a message.
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    name: String,
    #[field(default = String::new())]
    scope: String,
}

/// How the page names a scope (each includes the ones before it).
fn scope_label(scope: ApiScope) -> &'static str {
    match scope {
        ApiScope::Read => "只读（read）",
        ApiScope::Write => "下单与关单（write）",
        ApiScope::Refund => "全部含退款（refund）",
    }
}

impl CsrfField for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn name_problem(problem: NameProblem) -> String {
    match problem {
        NameProblem::Empty => "请填写令牌名称".into(),
        NameProblem::TooLong => format!("令牌名称最多 {MAX_NAME_CHARS} 个字符"),
        NameProblem::ControlCharacters => "令牌名称不能包含控制字符".into(),
    }
}

#[post("/admin/tokens", data = "<form>")]
async fn post_create(
    admin: Admin,
    form: AdminForm<CreateForm>,
    cookies: &CookieJar<'_>,
    accounts: &State<Accounts>,
) -> Result<Flash<Redirect>, AppError> {
    let name = form.0.name.trim().to_owned();
    if let Err(problem) = check_name(&name) {
        return Ok(Flash::error(Redirect::to(PAGE), name_problem(problem)));
    }
    let Some(scope) = ApiScope::parse(&form.0.scope) else {
        return Ok(Flash::error(Redirect::to(PAGE), "请选择令牌权限：只读、下单与关单，或全部含退款"));
    };
    let token = accounts.create_token(&admin.0.actor(), &name, scope).await?;
    let label = format!("API 令牌「{name}」（{}）", scope_label(scope));
    reveal_once(cookies, PAGE, &admin.0, Secret { label, value: token }, accounts.secure_cookies());
    let created = format!("已创建 API 令牌「{name}」（{}）。令牌只显示这一次，请立即保存。", scope_label(scope));
    Ok(Flash::success(Redirect::to(PAGE), created))
}

#[post("/admin/tokens/<id>/revoke", data = "<_form>")]
async fn post_revoke(
    admin: Admin,
    id: i64,
    _form: AdminForm<CsrfOnly>,
    accounts: &State<Accounts>,
) -> Result<Flash<Redirect>, AppError> {
    Ok(match accounts.revoke_token(&admin.0.actor(), id).await? {
        Revoked::NotFound => Flash::error(Redirect::to(PAGE), "令牌不存在"),
        Revoked::Now(name) => {
            Flash::success(Redirect::to(PAGE), format!("已撤销 API 令牌「{name}」，它已无法再调用接口。"))
        }
        Revoked::Already(name) => Flash::warning(Redirect::to(PAGE), format!("API 令牌「{name}」此前已被撤销。")),
    })
}
