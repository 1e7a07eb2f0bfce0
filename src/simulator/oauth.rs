//! Official Account web authorization (`snsapi_base` / `snsapi_userinfo`): the authorize page
//! that identifies the shopper by a `wxsim_user` cookie and redirects back with a single-use
//! code, and the JSON code-for-openid exchange.

use std::io::Cursor;

use rocket::http::{ContentType, Cookie, CookieJar, Header, SameSite, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::serde::json::Json;
use rocket::{Route, State, get, routes};
use serde_json::{Value, json};
use url::Url;

use super::model::OAuthCode;
use super::server::Mounted;
use super::sim::clock;
use super::{Simulator, ids};

pub(crate) const USER_COOKIE: &str = "wxsim_user";
/// Codes expire after five minutes (simulated clock).
pub(crate) const CODE_TTL: chrono::Duration = chrono::Duration::minutes(5);

/// The authorize endpoint's answers: a redirect back to the merchant, or WeChat's error page.
pub(crate) enum AuthorizeAnswer {
    Redirect(String),
    ErrorPage { code: Option<u32>, message: String },
}

impl<'r> Responder<'r, 'static> for AuthorizeAnswer {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        match self {
            AuthorizeAnswer::Redirect(location) => {
                Response::build().status(Status::Found).header(Header::new("Location", location)).ok()
            }
            AuthorizeAnswer::ErrorPage { code, message } => {
                let code = code.map(|c| format!("<p class=\"code\">错误码：{c}</p>")).unwrap_or_default();
                let page = format!(
                    "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>微信网页授权</title></head><body style=\"font-family:sans-serif;text-align:center;padding:40px 20px\"><h1 style=\"font-size:20px\">Oops! Something went wrong:(</h1><p class=\"msg\">{}</p>{code}<p style=\"color:#888;font-size:13px\">wechat-checkout simulator</p></body></html>",
                    html_escape(&message)
                );
                Response::build().header(ContentType::HTML).sized_body(page.len(), Cursor::new(page)).ok()
            }
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(code: Option<u32>, message: &str) -> AuthorizeAnswer {
    AuthorizeAnswer::ErrorPage { code, message: message.to_owned() }
}

/// The redirect target with `code` and `state` appended to any query it already has.
pub(crate) fn redirect_target(redirect_uri: &Url, code: &str, state: &str) -> String {
    let mut target = redirect_uri.clone();
    target.query_pairs_mut().append_pair("code", code).append_pair("state", state);
    target.to_string()
}

/// Validates the authorize parameters and issues a code for `shopper`.
pub(crate) fn authorize(
    sim: &Simulator,
    shopper: &str,
    appid: Option<&str>,
    redirect_uri: Option<&str>,
    response_type: Option<&str>,
    scope: Option<&str>,
    state: Option<&str>,
) -> AuthorizeAnswer {
    let Some(appid) = appid.filter(|a| !a.is_empty()) else { return page(Some(10012), "appid不能为空") };
    if sim.config().merchant_for_appid(appid).is_none() {
        return page(None, "appid错误：该公众号不存在");
    }
    let Some(redirect_raw) = redirect_uri.filter(|r| !r.is_empty()) else {
        return page(Some(10011), "redirect_uri不能为空");
    };
    let redirect = match Url::parse(redirect_raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
        _ => return page(Some(10003), "redirect_uri 参数错误"),
    };
    if let Some(domain) = &sim.config().oauth_domain
        && !redirect.host_str().is_some_and(|h| h.eq_ignore_ascii_case(domain))
    {
        return page(Some(10003), "redirect_uri 参数错误");
    }
    if !sim.config().allows_callback(redirect.as_str()) {
        return page(Some(10003), "redirect_uri 参数错误");
    }
    if response_type != Some("code") {
        return page(None, "response_type参数错误：必须为code");
    }
    let scope = match scope {
        None | Some("") => return page(Some(10010), "scope不能为空"),
        Some(s @ ("snsapi_base" | "snsapi_userinfo")) => s,
        Some(_) => return page(Some(10005), "scope参数错误"),
    };
    let state = state.unwrap_or_default();
    if state.len() > 128 || !state.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return page(None, "state参数错误：最多128字节，只能包含字母和数字");
    }
    let code = ids::oauth_code();
    let openid = ids::openid(appid, shopper);
    sim.write(|s| {
        let now = clock(s.clock_offset_ms);
        // Forget codes long past any use.
        s.oauth_codes.retain(|_, c| now - c.created_at < CODE_TTL * 12);
        s.openids.insert(openid.clone(), appid.to_owned());
        let scope = scope.to_owned();
        s.oauth_codes.insert(
            code.clone(),
            OAuthCode { appid: appid.to_owned(), openid, scope, created_at: now, used: false, session_key: None },
        );
    });
    AuthorizeAnswer::Redirect(redirect_target(&redirect, &code, state))
}

pub(crate) fn sns_error(errcode: i32, errmsg: &str) -> Value {
    json!({ "errcode": errcode, "errmsg": errmsg })
}

/// The code-for-openid exchange.
pub(crate) fn access_token(
    sim: &Simulator,
    appid: Option<&str>,
    secret: Option<&str>,
    code: Option<&str>,
    grant_type: Option<&str>,
) -> Value {
    let Some(merchant) = appid.and_then(|a| sim.config().merchant_for_appid(a)) else {
        return sns_error(40013, "invalid appid");
    };
    if secret != Some(merchant.app_secret.as_str()) {
        return sns_error(40125, "invalid appsecret");
    }
    let Some(code) = code.filter(|c| !c.is_empty()) else { return sns_error(41008, "missing code") };
    if grant_type != Some("authorization_code") {
        return sns_error(40002, "invalid grant_type");
    }
    sim.write(|s| {
        let now = clock(s.clock_offset_ms);
        match s.oauth_codes.get_mut(code) {
            Some(c) if c.appid != merchant.appid || now - c.created_at >= CODE_TTL => sns_error(40029, "invalid code"),
            Some(c) if c.used => sns_error(40163, "code been used"),
            Some(c) => {
                c.used = true;
                json!({
                    "access_token": ids::token(),
                    "expires_in": 7200,
                    "refresh_token": ids::token(),
                    "openid": c.openid,
                    "scope": c.scope,
                })
            }
            None => sns_error(40029, "invalid code"),
        }
    })
}

/// The shopper's id from the cookie, or a new one (and the cookie to remember it).
fn shopper_id(cookies: &CookieJar<'_>) -> String {
    if let Some(c) = cookies.get(USER_COOKIE)
        && ids::is_valid_shopper_id(c.value())
    {
        return c.value().to_owned();
    }
    let id = ids::shopper_id();
    let cookie = Cookie::build((USER_COOKIE, id.clone()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(rocket::time::Duration::days(365));
    cookies.add(cookie);
    id
}

#[get("/connect/oauth2/authorize?<appid>&<redirect_uri>&<response_type>&<scope>&<state>")]
fn get_authorize(
    sim: &State<Mounted>,
    cookies: &CookieJar<'_>,
    appid: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
) -> AuthorizeAnswer {
    let shopper = shopper_id(cookies);
    authorize(
        &sim.0,
        &shopper,
        appid.as_deref(),
        redirect_uri.as_deref(),
        response_type.as_deref(),
        scope.as_deref(),
        state.as_deref(),
    )
}

#[get("/sns/oauth2/access_token?<appid>&<secret>&<code>&<grant_type>")]
fn get_access_token(
    sim: &State<Mounted>,
    appid: Option<String>,
    secret: Option<String>,
    code: Option<String>,
    grant_type: Option<String>,
) -> Json<Value> {
    Json(access_token(&sim.0, appid.as_deref(), secret.as_deref(), code.as_deref(), grant_type.as_deref()))
}

pub(crate) fn routes() -> Vec<Route> {
    routes![get_authorize, get_access_token]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::config::SimulatorConfig;
    use crate::wxpay::demo::{DEMO_APP_SECRET, DEMO_APPID};

    #[test]
    fn redirects_keep_existing_queries() {
        let u = Url::parse("https://shop.example/cb?order=1#frag").unwrap();
        assert_eq!(redirect_target(&u, "C", "S1"), "https://shop.example/cb?order=1&code=C&state=S1#frag");
        let plain = Url::parse("http://127.0.0.1:8000/cb").unwrap();
        assert_eq!(redirect_target(&plain, "C", ""), "http://127.0.0.1:8000/cb?code=C&state=");
    }

    #[test]
    fn codes_are_single_use_and_bound_to_the_appid() {
        let sim = Simulator::new(SimulatorConfig::default()).unwrap();
        let answer = authorize(
            &sim,
            "u1",
            Some(DEMO_APPID),
            Some("https://shop.example/cb"),
            Some("code"),
            Some("snsapi_base"),
            Some("abc"),
        );
        let AuthorizeAnswer::Redirect(location) = answer else { panic!("no redirect") };
        let url = Url::parse(&location).unwrap();
        let code = url.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        let ok = access_token(&sim, Some(DEMO_APPID), Some(DEMO_APP_SECRET), Some(&code), Some("authorization_code"));
        assert_eq!(ok["openid"], ids::openid(DEMO_APPID, "u1"));
        let again =
            access_token(&sim, Some(DEMO_APPID), Some(DEMO_APP_SECRET), Some(&code), Some("authorization_code"));
        assert_eq!(again["errcode"], 40163);
        let bad = access_token(&sim, Some(DEMO_APPID), Some("x"), Some(&code), Some("authorization_code"));
        assert_eq!(bad["errcode"], 40125);
        let none = access_token(&sim, Some("wx_other"), Some(DEMO_APP_SECRET), Some(&code), None);
        assert_eq!(none["errcode"], 40013);
    }
}
