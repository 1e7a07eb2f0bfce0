//! Mini Program sign-in as WeChat serves it: `GET /sns/jscode2session` (under the API base, beside
//! OAuth) exchanges a `wx.login` code once, within five minutes, for the shopper's openid under
//! the Mini Program's appid and a session key. The simulator has no Mini Program client, so
//! `POST {own}/control/mini-program/login` plays `wx.login` for a simulated user and returns the
//! code. An openid is bound to the appid it was issued for: unifiedorder refuses it under another
//! (`appid and openid not match`).

use rocket::data::Data;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, get, post, routes};
use serde::Deserialize;
use serde_json::{Value, json};

use super::model::OAuthCode;
use super::oauth::{CODE_TTL, sns_error};
use super::server::Mounted;
use super::sim::clock;
use super::web::{JsonReply, json_error, json_ok, read_json};
use super::{Simulator, ids};

/// What unifiedorder answers (`return_code=FAIL`) for an openid of another appid.
pub(crate) const OPENID_MISMATCH: &str = "appid and openid not match";

/// The code-for-openid exchange, with WeChat's errors: 40013 unknown appid, 40125 wrong secret,
/// 41008 no code, 40029 a code that is unknown, another app's or expired, 40163 a used one.
pub(crate) fn jscode2session(
    sim: &Simulator,
    appid: Option<&str>,
    secret: Option<&str>,
    js_code: Option<&str>,
    grant_type: Option<&str>,
) -> Value {
    let Some(mp) = appid.and_then(|a| sim.config().mini_program_for_appid(a)) else {
        return sns_error(40013, "invalid appid");
    };
    if secret != Some(mp.app_secret.as_str()) {
        return sns_error(40125, "invalid appsecret");
    }
    let Some(code) = js_code.filter(|c| !c.is_empty()) else { return sns_error(41008, "missing code") };
    if grant_type != Some("authorization_code") {
        return sns_error(40002, "invalid grant_type");
    }
    sim.write(|s| {
        let now = clock(s.clock_offset_ms);
        match s.oauth_codes.get_mut(code) {
            Some(c) if c.appid != mp.appid || c.session_key.is_none() || now - c.created_at >= CODE_TTL => {
                sns_error(40029, "invalid code")
            }
            Some(c) if c.used => sns_error(40163, "code been used"),
            Some(c) => {
                c.used = true;
                json!({ "session_key": c.session_key, "openid": c.openid })
            }
            None => sns_error(40029, "invalid code"),
        }
    })
}

/// `wx.login` for simulated user `user` (a new one when `None`) in the Mini Program `appid` (the
/// first configured when `None`): a fresh code, and what `jscode2session` will give for it.
pub(crate) fn login(sim: &Simulator, appid: Option<&str>, user: Option<&str>) -> Result<Value, String> {
    let mp = match appid {
        Some(a) => sim.config().mini_program_for_appid(a).ok_or_else(|| format!("no Mini Program {a:?}"))?,
        None => sim.config().mini_programs.first().ok_or("no Mini Program is configured")?,
    };
    let user = match user {
        Some(u) if ids::is_valid_shopper_id(u) => u.to_owned(),
        Some(_) => return Err("user must be 1 to 64 letters, digits, _ or -".into()),
        None => ids::shopper_id(),
    };
    let (code, openid, session_key) = (ids::oauth_code(), ids::openid(&mp.appid, &user), ids::session_key());
    let appid = mp.appid.clone();
    sim.write(|s| {
        let now = clock(s.clock_offset_ms);
        s.oauth_codes.retain(|_, c| now - c.created_at < CODE_TTL * 12);
        s.openids.insert(openid.clone(), appid.clone());
        let record = OAuthCode {
            appid: appid.clone(),
            openid: openid.clone(),
            scope: "wx.login".into(),
            created_at: now,
            used: false,
            session_key: Some(session_key.clone()),
        };
        s.oauth_codes.insert(code.clone(), record);
    });
    Ok(json!({ "code": code, "appid": appid, "user": user, "openid": openid, "session_key": session_key }))
}

/// Whether WeChat would refuse `openid` beside `appid` in a unifiedorder: an openid issued for
/// another appid, or, under a Mini Program (whose openids only come from `jscode2session`), one
/// never issued. An Official Account takes an openid the simulator never saw, as tests write
/// their own.
pub(crate) fn openid_mismatch(sim: &Simulator, appid: &str, openid: &str) -> bool {
    let mini_program = sim.config().mini_program_for_appid(appid).is_some();
    sim.read(|s| match s.openids.get(openid) {
        Some(owner) => owner != appid,
        None => mini_program,
    })
}

#[get("/sns/jscode2session?<appid>&<secret>&<js_code>&<grant_type>")]
fn get_jscode2session(
    sim: &State<Mounted>,
    appid: Option<String>,
    secret: Option<String>,
    js_code: Option<String>,
    grant_type: Option<String>,
) -> Json<Value> {
    Json(jscode2session(&sim.0, appid.as_deref(), secret.as_deref(), js_code.as_deref(), grant_type.as_deref()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// `{"appid"?, "user"?}` → `{"code", "appid", "user", "openid", "session_key"}`.
#[post("/control/mini-program/login", data = "<data>")]
async fn post_login(sim: &State<Mounted>, data: Data<'_>) -> JsonReply {
    let body: Login = match read_json(data).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    match login(&sim.0, body.appid.as_deref(), body.user.as_deref()) {
        Ok(answer) => json_ok(answer),
        Err(e) => json_error(Status::NotFound, e),
    }
}

/// The WeChat API route (under the API base).
pub(crate) fn api_routes() -> Vec<Route> {
    routes![get_jscode2session]
}

/// The control route (under the simulator's own base).
pub(crate) fn control_routes() -> Vec<Route> {
    routes![post_login]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::config::SimulatorConfig;
    use crate::wxpay::demo::{DEMO_APP_SECRET, DEMO_APPID, DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET};

    fn exchange(sim: &Simulator, appid: &str, secret: &str, code: &str) -> Value {
        jscode2session(sim, Some(appid), Some(secret), Some(code), Some("authorization_code"))
    }

    #[test]
    fn codes_are_single_use_bound_to_the_mini_program_and_expire() {
        let sim = Simulator::new(SimulatorConfig::default()).unwrap();
        let first = login(&sim, None, Some("u1")).unwrap();
        let code = first["code"].as_str().unwrap();
        assert_eq!(first["openid"], ids::openid(DEMO_MINIPROGRAM_APPID, "u1"));
        assert_ne!(first["openid"], ids::openid(DEMO_APPID, "u1"), "another appid, another openid");
        // An Official Account cannot use it, nor a wrong secret.
        assert_eq!(exchange(&sim, DEMO_APPID, DEMO_APP_SECRET, code)["errcode"], 40013);
        assert_eq!(exchange(&sim, DEMO_MINIPROGRAM_APPID, "x", code)["errcode"], 40125);
        let ok = exchange(&sim, DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET, code);
        assert_eq!((&ok["openid"], &ok["session_key"]), (&first["openid"], &first["session_key"]));
        assert_eq!(ok["session_key"].as_str().unwrap().len(), 24);
        assert_eq!(exchange(&sim, DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET, code)["errcode"], 40163);
        assert_eq!(exchange(&sim, DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET, "nope")["errcode"], 40029);
        let late = login(&sim, None, Some("u1")).unwrap();
        sim.advance_clock(std::time::Duration::from_secs(301));
        let expired = exchange(&sim, DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET, late["code"].as_str().unwrap());
        assert_eq!(expired["errcode"], 40029);
        assert!(login(&sim, Some(DEMO_APPID), None).is_err(), "an Official Account has no wx.login");
    }

    #[test]
    fn openids_are_only_good_with_their_appid() {
        let sim = Simulator::new(SimulatorConfig::default()).unwrap();
        let mp = login(&sim, None, Some("u1")).unwrap()["openid"].as_str().unwrap().to_owned();
        assert!(!openid_mismatch(&sim, DEMO_MINIPROGRAM_APPID, &mp));
        assert!(openid_mismatch(&sim, DEMO_APPID, &mp));
        let official = ids::openid(DEMO_APPID, "u1");
        sim.write(|s| s.openids.insert(official.clone(), DEMO_APPID.into()));
        assert!(openid_mismatch(&sim, DEMO_MINIPROGRAM_APPID, &official));
        assert!(!openid_mismatch(&sim, DEMO_APPID, &official));
        // Never issued: an Official Account takes it (tests write their own), a Mini Program not.
        assert!(!openid_mismatch(&sim, DEMO_APPID, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"));
        assert!(openid_mismatch(&sim, DEMO_MINIPROGRAM_APPID, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"));
    }
}
