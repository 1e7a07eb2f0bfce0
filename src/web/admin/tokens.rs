//! The API tokens page (admins only): the merchant API's bearer tokens by name, creating one (shown
//! once; only its SHA-256 is stored) and revoking one (it stops authenticating at once). Both are
//! audited with the token's name and id, never the token.

use askama::Template;
use rocket::form::FromForm;
use rocket::http::CookieJar;
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::response::{Flash, Redirect};
use rocket::{State, get, post, routes};
use serde_json::json;

use super::layout::Chrome;
use super::login::CsrfOnly;
use super::session::{Admin, AdminForm, CsrfField};
use super::users::{Secret, reveal_once, secure_cookies, take_revealed};
use super::view::beijing_time;
use crate::db::{DbError, audit, tokens};
use crate::error::AppError;
use crate::payments::Payments;
use crate::web::api::token_hash;
use crate::web::page::render;
use crate::wxpay::nonce::random_alphanumeric;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_tokens, post_create, post_revoke]
}

const PAGE: &str = "/admin/tokens";
/// 40 alphanumerics: about 238 bits, so a plain SHA-256 of it cannot be brute-forced.
pub const TOKEN_LENGTH: usize = 40;
/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

struct TokenView {
    id: i64,
    name: String,
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
    payments: &State<Payments>,
) -> Result<RawHtml<String>, AppError> {
    let rows = payments.db.read(tokens::list).await?;
    let tokens = rows
        .into_iter()
        .map(|t| TokenView {
            id: t.id,
            name: t.name,
            created: beijing_time(t.created_at.and_utc()),
            revoked: t.revoked_at.map(|r| beijing_time(r.and_utc())),
        })
        .collect();
    let secret = take_revealed(cookies, PAGE, &admin.0);
    render(&TokensPage {
        chrome: Chrome::new(&admin.0, "tokens", flash),
        tokens,
        secret,
        configured_token: payments.config.api_token.is_some(),
    })
}

#[derive(FromForm)]
struct CreateForm {
    // Missing fields are empty ones: a missing token is then a 403 and a missing name a message.
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    name: String,
}

impl CsrfField for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A name is 1–64 characters with no control characters (it is shown on pages and in the audit).
fn check_name(name: &str) -> Result<(), &'static str> {
    let count = name.chars().count();
    if count == 0 {
        Err("请填写令牌名称")
    } else if count > MAX_NAME_CHARS {
        Err("令牌名称最多 64 个字符")
    } else if name.chars().any(char::is_control) {
        Err("令牌名称不能包含控制字符")
    } else {
        Ok(())
    }
}

#[post("/admin/tokens", data = "<form>")]
async fn post_create(
    admin: Admin,
    form: AdminForm<CreateForm>,
    cookies: &CookieJar<'_>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let name = form.0.name.trim().to_owned();
    if let Err(message) = check_name(&name) {
        return Ok(Flash::error(Redirect::to(PAGE), message));
    }
    let token = random_alphanumeric(TOKEN_LENGTH);
    let hash = token_hash(&token);
    let (actor, stored_name) = (admin.0.clone(), name.clone());
    payments
        .db
        .write(move |c| -> Result<(), DbError> {
            tokens::insert(
                c,
                &tokens::NewToken { name: &stored_name, token_hash: &hash, created_at: crate::db::now() },
            )?;
            let id = tokens::find_by_hash(c, &hash)?.map(|t| t.id);
            audit::record(c, &actor.audit("token_created", None, Some(&stored_name), json!({ "token_id": id })))
        })
        .await?;
    let label = format!("API 令牌「{name}」");
    reveal_once(cookies, PAGE, &admin.0, Secret { label, value: token }, secure_cookies(payments));
    Ok(Flash::success(Redirect::to(PAGE), format!("已创建 API 令牌「{name}」。令牌只显示这一次，请立即保存。")))
}

#[post("/admin/tokens/<id>/revoke", data = "<_form>")]
async fn post_revoke(
    admin: Admin,
    id: i64,
    _form: AdminForm<CsrfOnly>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let actor = admin.0.clone();
    let outcome = payments
        .db
        .write(move |c| -> Result<Option<(String, bool)>, DbError> {
            let Some(token) = tokens::find(c, id)? else { return Ok(None) };
            // The guarded UPDATE decides: zero rows means it was already revoked, by us or another.
            let revoked = tokens::revoke(c, id, crate::db::now())?;
            if revoked {
                audit::record(c, &actor.audit("token_revoked", None, Some(&token.name), json!({ "token_id": id })))?;
            }
            Ok(Some((token.name, revoked)))
        })
        .await?;
    Ok(match outcome {
        None => Flash::error(Redirect::to(PAGE), "令牌不存在"),
        Some((name, true)) => {
            Flash::success(Redirect::to(PAGE), format!("已撤销 API 令牌「{name}」，它已无法再调用接口。"))
        }
        Some((name, false)) => Flash::warning(Redirect::to(PAGE), format!("API 令牌「{name}」此前已被撤销。")),
    })
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_are_one_to_sixty_four_printable_characters() {
        assert!(check_name("").is_err());
        assert!(check_name("订单系统").is_ok());
        assert!(check_name(&"名".repeat(64)).is_ok());
        assert!(check_name(&"名".repeat(65)).is_err());
        assert!(check_name("a\u{7}b").is_err());
    }
}
