//! Paying from the merchant's own front end, over real HTTP on both databases, against the
//! simulator: a Mini Program's `wx.login` code (from the simulator's control API) becomes an
//! openid (`POST /api/v1/wechat/mini-program/session`), the openid the five `wx.requestPayment`
//! parameters (`POST /api/v1/orders/{no}/payment`, `paySign` checked here over the Mini Program's
//! appid), the shopper pays in the simulator and the order becomes PAID by the notify made under
//! the Mini Program's appid. Around it: one prepay per order, reused; one app per order; one
//! openid per order; the Official Account's six parameters through the same endpoint; WeChat's
//! sign-in errors; scopes; and the `session_key`, which no answer ever carries.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::app::{API_TOKEN, TestApp, on_every_backend_and_version};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wechat_checkout::db::events;
use wechat_checkout::simulator::{DEMO_APP_SECRET, DEMO_APPID, DEMO_MCH_ID};
use wechat_checkout::wxpay::demo::{DEMO_API_KEY, DEMO_MINIPROGRAM_APPID};
use wechat_checkout::wxpay::sign::{self, ApiKey, SignType};

const SESSION: &str = "/api/v1/wechat/mini-program/session";

/// Every answer the API gave in a run, as text: none may hold a session key.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn assert_no_session_key(&self, session_keys: &[String]) {
        let answers = self.0.lock().unwrap();
        assert!(answers.len() >= 5, "{} answers", answers.len());
        for answer in answers.iter() {
            assert!(!answer.contains("session_key"), "{answer}");
            for key in session_keys {
                assert!(!answer.contains(key.as_str()), "a session key in {answer}");
            }
        }
    }
}

/// POSTs JSON to the API with `token`: the status and the JSON answer (its text kept in `seen`).
async fn post(app: &TestApp, seen: &Seen, token: &str, path: &str, body: Value) -> (u16, Value) {
    let res = app.http.post(app.url(path)).bearer_auth(token).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    seen.0.lock().unwrap().push(text.clone());
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

/// `wx.login` in the simulated Mini Program for `user`: the code, and what the simulator will
/// tell the merchant for it (openid, session key).
async fn wx_login(app: &TestApp, user: &str) -> Value {
    let login = app.control("mini-program/login", json!({ "user": user })).await;
    assert_eq!(login["appid"], DEMO_MINIPROGRAM_APPID, "{login}");
    login
}

/// The openid of `user` under the Mini Program, through the API.
async fn mini_openid(app: &TestApp, seen: &Seen, user: &str) -> String {
    let login = wx_login(app, user).await;
    let (status, session) = post(app, seen, API_TOKEN, SESSION, json!({ "code": login["code"] })).await;
    assert_eq!(status, 200, "{session}");
    session["openid"].as_str().unwrap().to_owned()
}

/// The openid of a shopper under the Official Account, from the simulator's OAuth (what a
/// merchant's own H5 pages do with `snsapi_base`).
async fn official_openid(app: &TestApp) -> String {
    let authorize = format!(
        "/simulator/connect/oauth2/authorize?appid={DEMO_APPID}&redirect_uri={}&response_type=code&scope=snsapi_base&state=s1",
        urlencode(&app.url("/back"))
    );
    let res = common::app::browser().get(app.url(&authorize)).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let location = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let token = format!(
        "/simulator/sns/oauth2/access_token?appid={DEMO_APPID}&secret={DEMO_APP_SECRET}&code={code}&grant_type=authorization_code"
    );
    app.get_json(&token).await["openid"].as_str().unwrap().to_owned()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn payment(no: &str) -> String {
    format!("/api/v1/orders/{no}/payment")
}

/// `paySign` as the WeChat client checks it: over appId (given, or the one `wx.requestPayment`
/// leaves out), timeStamp, nonceStr, package and signType, with the merchant's key.
fn pay_sign(params: &Value, app_id: &str, sign_type: SignType) -> String {
    let s = |k: &str| params[k].as_str().unwrap_or_else(|| panic!("{k} is not a string: {params}"));
    let pairs = [
        ("appId", app_id),
        ("timeStamp", s("timeStamp")),
        ("nonceStr", s("nonceStr")),
        ("package", s("package")),
        ("signType", s("signType")),
    ];
    sign::sign(pairs, &ApiKey::new(DEMO_API_KEY).unwrap(), sign_type)
}

/// Whether `params` carry the `paySign` of the app's protocol over `app_id`: v2's MD5 with the demo
/// API key, or v3's RSA with the demo merchant's key pair (made in `data/` at first start).
fn signed_for(app: &TestApp, params: &Value, app_id: &str) -> bool {
    let given = params["paySign"].as_str().unwrap();
    if app.api_version != "v3" {
        return given == pay_sign(params, app_id, SignType::Md5);
    }
    let s = |k: &str| params[k].as_str().unwrap().to_owned();
    let p = wechat_checkout::wxpay::jsapi::JsapiParams {
        app_id: app_id.to_owned(),
        time_stamp: s("timeStamp"),
        nonce_str: s("nonceStr"),
        package: s("package"),
        sign_type: s("signType"),
        pay_sign: given.to_owned(),
    };
    let pem = std::fs::read_to_string(wechat_checkout::wxpay::demo::DEMO_V3_KEY_PATH).unwrap();
    let key = wechat_checkout::wxpay::v3::MerchantKey::from_pem(&pem).unwrap();
    wechat_checkout::wxpay::v3::jsapi::verify(&p, &key.verifying_key())
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// How many prepays the app asked WeChat for on this order (its timeline).
fn prepays_issued(app: &TestApp, no: &str) -> usize {
    let timeline = events::for_order(&mut app.db_handle().conn().unwrap(), no).unwrap();
    timeline.iter().filter(|e| e.kind == "prepay_issued").count()
}

async fn wait_paid(app: &TestApp, no: &str) {
    for _ in 0..200 {
        if app.order(no).await["state"] == "PAID" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("order {no} did not become PAID: {}", app.order(no).await);
}

async fn wait_refunded(app: &TestApp, out_refund_no: &str) {
    let read = || async {
        let res = app.http.get(app.url(&format!("/api/v1/refunds/{out_refund_no}"))).bearer_auth(API_TOKEN);
        res.send().await.unwrap().json::<Value>().await.unwrap()
    };
    for _ in 0..200 {
        if read().await["state"] == "SUCCESS" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("refund {out_refund_no} did not succeed: {}", read().await);
}

#[tokio::test]
async fn a_mini_program_signs_in_gets_the_five_parameters_and_pays() {
    on_every_backend_and_version(|app| async move {
        let seen = Seen::default();
        // wx.login → the session endpoint → the shopper's openid under the Mini Program.
        let login = wx_login(&app, "mp-shopper-1").await;
        let (status, session) = post(&app, &seen, API_TOKEN, SESSION, json!({ "code": login["code"] })).await;
        assert_eq!(status, 200, "{session}");
        assert_eq!(session["openid"], login["openid"]);
        assert_eq!(keys(&session), ["openid", "simulated", "unionid"], "{session}");
        assert!(session["unionid"].is_null() && session["simulated"] == true);
        let openid = session["openid"].as_str().unwrap().to_owned();
        // A code signs in once; a made-up one never.
        let (status, again) = post(&app, &seen, API_TOKEN, SESSION, json!({ "code": login["code"] })).await;
        assert_eq!(
            (status, &again["error"]["code"], &again["error"]["field"]),
            (422, &json!("invalid"), &json!("code"))
        );
        assert!(again["error"]["message"].as_str().unwrap().contains("40163"), "{again}");
        let (status, bad) = post(&app, &seen, API_TOKEN, SESSION, json!({ "code": "not-a-code" })).await;
        assert_eq!((status, &bad["error"]["field"]), (422, &json!("code")), "{bad}");
        assert!(bad["error"]["message"].as_str().unwrap().contains("40029"), "{bad}");

        // The five parameters, signed over the Mini Program's appid.
        let order = app.create_order("MP-1", 1990).await;
        let no = order["out_trade_no"].as_str().unwrap().to_owned();
        let body = json!({ "openid": openid, "app": "mini_program" });
        let (status, paying) = post(&app, &seen, API_TOKEN, &payment(&no), body.clone()).await;
        assert_eq!(status, 200, "{paying}");
        assert_eq!(
            (&paying["app"], &paying["out_trade_no"], &paying["simulated"]),
            (&json!("mini_program"), &json!(no), &json!(true))
        );
        let params = &paying["params"];
        assert_eq!(keys(params), ["nonceStr", "package", "paySign", "signType", "timeStamp"], "no appId: {params}");
        assert_eq!(params["signType"], if app.api_version == "v3" { "RSA" } else { "MD5" });
        assert!(signed_for(&app, params, DEMO_MINIPROGRAM_APPID), "{params}");
        assert!(!signed_for(&app, params, DEMO_APPID), "signed over the Mini Program's appid: {params}");
        let prepay = params["package"].as_str().unwrap().strip_prefix("prepay_id=").unwrap().to_owned();
        let at_wechat = app.sim_order(&no).await;
        assert_eq!((&at_wechat["appid"], &at_wechat["openid"]), (&json!(DEMO_MINIPROGRAM_APPID), &json!(openid)));
        assert_eq!((&at_wechat["prepay_id"], &at_wechat["trade_type"]), (&json!(prepay), &json!("JSAPI")));

        // Again: the same prepay, no second unifiedorder, freshly signed.
        let (status, again) = post(&app, &seen, API_TOKEN, &payment(&no), body.clone()).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["params"]["package"], params["package"]);
        assert!(signed_for(&app, &again["params"], DEMO_MINIPROGRAM_APPID));
        assert_eq!(prepays_issued(&app, &no), 1);
        assert_eq!(app.sim_order(&no).await["prepay_created_at"], at_wechat["prepay_created_at"]);

        // Another app, or another shopper, while the prepay is the Mini Program's: 409.
        let official = official_openid(&app).await;
        let other_app = json!({ "openid": official, "app": "official_account" });
        let (status, refused) = post(&app, &seen, API_TOKEN, &payment(&no), other_app).await;
        assert_eq!((status, &refused["error"]["reason"]), (409, &json!("other_app")), "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("Mini Program"), "{refused}");
        let stranger = mini_openid(&app, &seen, "mp-shopper-2").await;
        let (status, taken) =
            post(&app, &seen, API_TOKEN, &payment(&no), json!({ "openid": stranger, "app": "mini_program" })).await;
        assert_eq!(
            (status, &taken["error"]["code"], &taken["error"]["reason"]),
            (409, &json!("conflict"), &json!("taken"))
        );
        assert_eq!(prepays_issued(&app, &no), 1, "nothing was asked of WeChat");

        // The shopper pays (wx.requestPayment's part, played by the simulator): the notify, under
        // the Mini Program's appid, makes the order PAID (jobs are off: nothing else could).
        assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
        wait_paid(&app, &no).await;
        let (status, paid) = post(&app, &seen, API_TOKEN, &payment(&no), body).await;
        assert_eq!((status, &paid["error"]["reason"]), (409, &json!("paid")), "{paid}");

        // A refund of it: its notify too comes under the Mini Program's appid, and is applied.
        let refund = json!({ "amount_fen": 500, "reason": "退货", "out_refund_no": "MP-R-1" });
        let (status, refund) = post(&app, &seen, API_TOKEN, &format!("/api/v1/orders/{no}/refunds"), refund).await;
        assert_eq!(status, 201, "{refund}");
        app.control("refunds/MP-R-1/settle", json!({ "status": "SUCCESS" })).await;
        wait_refunded(&app, "MP-R-1").await;

        let session_keys: Vec<String> = [login["session_key"].as_str().unwrap().to_owned()].into();
        seen.assert_no_session_key(&session_keys);
        app
    })
    .await;
}

#[tokio::test]
async fn the_official_account_gets_the_six_parameters_and_keeps_its_orders() {
    on_every_backend_and_version(|app| async move {
        let seen = Seen::default();
        let openid = official_openid(&app).await;
        let no = app.create_order("OA-1", 500).await["out_trade_no"].as_str().unwrap().to_owned();
        let body = json!({ "openid": openid, "app": "official_account", "client_ip": "203.0.113.7" });
        let (status, paying) = post(&app, &seen, API_TOKEN, &payment(&no), body).await;
        assert_eq!(status, 200, "{paying}");
        let params = &paying["params"];
        assert_eq!(keys(params), ["appId", "nonceStr", "package", "paySign", "signType", "timeStamp"]);
        assert_eq!(params["appId"], DEMO_APPID);
        assert!(signed_for(&app, params, DEMO_APPID), "{params}");
        assert_eq!(app.sim_order(&no).await["appid"], DEMO_APPID);
        let row = common::app::order_row(&app.db_handle(), &no);
        assert_eq!(row.client_ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(row.prepay_app, Some(wechat_checkout::domain::PaymentApp::OfficialAccount));

        // The Mini Program cannot take over an order started in the Official Account.
        let mini = mini_openid(&app, &seen, "mp-shopper-3").await;
        let body = json!({ "openid": mini, "app": "mini_program" });
        let (status, refused) = post(&app, &seen, API_TOKEN, &payment(&no), body).await;
        assert_eq!((status, &refused["error"]["reason"]), (409, &json!("other_app")), "{refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("Official Account"), "{refused}");

        // An Official Account openid sent as a Mini Program one: WeChat refuses it, and says so.
        let fresh = app.create_order("OA-2", 500).await["out_trade_no"].as_str().unwrap().to_owned();
        let body = json!({ "openid": openid, "app": "mini_program" });
        let (status, foreign) = post(&app, &seen, API_TOKEN, &payment(&fresh), body).await;
        assert_eq!((status, &foreign["error"]["field"]), (422, &json!("openid")), "{foreign}");
        // v2 words it `openid not match`; v3 answers `OPENID_MISMATCH`.
        let message = foreign["error"]["message"].as_str().unwrap();
        assert!(message.contains("openid not match") || message.contains("OPENID_MISMATCH"), "{foreign}");
        assert_eq!(app.order(&fresh).await["state"], "CREATED");
        app
    })
    .await;
}

#[tokio::test]
async fn scopes_unknown_orders_and_bad_inputs_are_refused_by_name() {
    on_every_backend_and_version(|app| async move {
        let seen = Seen::default();
        let read = app.issue_token("mp-read", "read").await;
        let login = wx_login(&app, "mp-shopper-4").await;
        let (status, e) = post(&app, &seen, &read, SESSION, json!({ "code": login["code"] })).await;
        assert_eq!(
            (status, &e["error"]["code"], &e["error"]["required_scope"]),
            (403, &json!("insufficient_scope"), &json!("write"))
        );
        let no = app.create_order("MP-S", 100).await["out_trade_no"].as_str().unwrap().to_owned();
        let body = json!({ "openid": "oAbc", "app": "mini_program" });
        let (status, e) = post(&app, &seen, &read, &payment(&no), body.clone()).await;
        assert_eq!((status, &e["error"]["code"]), (403, &json!("insufficient_scope")), "{e}");
        let write = app.issue_token("mp-write", "write").await;
        // The code was not spent by the refused call: a write token signs in with it.
        let (status, ok) = post(&app, &seen, &write, SESSION, json!({ "code": login["code"] })).await;
        assert_eq!(status, 200, "{ok}");

        let (status, e) = post(&app, &seen, &write, &payment("WC404"), body).await;
        assert_eq!((status, &e["error"]["code"]), (404, &json!("not_found")), "{e}");
        for (input, field) in [
            (json!({ "openid": "oAbc" }), "app"),
            (json!({ "openid": "oAbc", "app": "app" }), "app"),
            (json!({ "openid": "", "app": "mini_program" }), "openid"),
            (json!({ "openid": "o<script>", "app": "mini_program" }), "openid"),
            (json!({ "openid": "oAbc", "app": "mini_program", "client_ip": "localhost" }), "client_ip"),
            (json!({ "openid": "oAbc", "app": "mini_program", "extra": 1 }), "extra"),
        ] {
            let (status, e) = post(&app, &seen, &write, &payment(&no), input.clone()).await;
            assert_eq!((status, e["error"]["field"].as_str()), (422, Some(field)), "{input}: {e}");
        }
        for input in [json!({}), json!({ "code": "" }), json!({ "code": "a b" })] {
            let (status, e) = post(&app, &seen, &write, SESSION, input.clone()).await;
            assert_eq!((status, e["error"]["field"].as_str()), (422, Some("code")), "{input}: {e}");
        }
        assert_eq!(app.order(&no).await["state"], "CREATED", "nothing reached WeChat");
        seen.assert_no_session_key(&[login["session_key"].as_str().unwrap().to_owned()]);
        app
    })
    .await;
}

#[tokio::test]
async fn hmac_sha256_merchants_sign_the_mini_programs_parameters_with_hmac() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::app::TestDb::sqlite(&dir);
    let app = TestApp::start(db, Some(dir), |f| f.merge(("wechat_sign_type", "HMAC-SHA256"))).await;
    let seen = Seen::default();
    let openid = mini_openid(&app, &seen, "mp-shopper-5").await;
    let no = app.create_order("MP-H", 100).await["out_trade_no"].as_str().unwrap().to_owned();
    let (status, paying) =
        post(&app, &seen, API_TOKEN, &payment(&no), json!({ "openid": openid, "app": "mini_program" })).await;
    assert_eq!(status, 200, "{paying}");
    let params = &paying["params"];
    assert_eq!(params["signType"], "HMAC-SHA256");
    assert_eq!(params["paySign"].as_str().unwrap().len(), 64);
    assert_eq!(params["paySign"].as_str().unwrap(), pay_sign(params, DEMO_MINIPROGRAM_APPID, SignType::HmacSha256));
    let prepay = params["package"].as_str().unwrap().strip_prefix("prepay_id=").unwrap().to_owned();
    assert_eq!(app.shopper(&prepay, "ok").await.status(), 200);
    wait_paid(&app, &no).await;
    app.stop().await;
}

/// A stand-in for WeChat's `jscode2session` that answers by the code: `E<errcode>` gets that
/// error, anything else an openid. It keeps every query it was sent.
async fn sns_stub() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let queries = Arc::new(Mutex::new(Vec::new()));
    let kept = queries.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let target = request.split_whitespace().nth(1).unwrap_or_default().to_owned();
            kept.lock().unwrap().push(target.clone());
            let code = target.split("js_code=").nth(1).and_then(|r| r.split('&').next()).unwrap_or_default();
            let body = match code.strip_prefix('E') {
                Some(errcode) => json!({ "errcode": errcode.parse::<i64>().unwrap(), "errmsg": "stub" }).to_string(),
                None => {
                    json!({ "openid": "oStubOpenid", "session_key": "STUBSESSIONKEY", "unionid": "oUnion" }).to_string()
                }
            };
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    (base, queries)
}

#[tokio::test]
async fn wechats_sign_in_errors_become_clear_api_errors() {
    let (sns, queries) = sns_stub().await;
    let dir = tempfile::tempdir().unwrap();
    let db = common::app::TestDb::sqlite(&dir);
    let app = TestApp::start(db, Some(dir), |f| f.merge(("wechat_sns_base", sns.as_str()))).await;
    let seen = Seen::default();
    let (status, ok) = post(&app, &seen, API_TOKEN, SESSION, json!({ "code": "good" })).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!((&ok["openid"], &ok["unionid"]), (&json!("oStubOpenid"), &json!("oUnion")));
    let sent = queries.lock().unwrap()[0].clone();
    for part in [
        "/sns/jscode2session?".to_owned(),
        format!("appid={DEMO_MINIPROGRAM_APPID}"),
        "js_code=good".to_owned(),
        "grant_type=authorization_code".to_owned(),
    ] {
        assert!(sent.contains(&part), "{part} not in {sent}");
    }
    for (code, status, error, says) in [
        ("E40029", 422, "invalid", "call wx.login again"),
        ("E40163", 422, "invalid", "used"),
        ("E40226", 403, "forbidden", "high-risk"),
        ("E-1", 502, "gateway", "retry"),
        ("E45011", 502, "gateway", "retry"),
    ] {
        let (got, e) = post(&app, &seen, API_TOKEN, SESSION, json!({ "code": code })).await;
        assert_eq!((got, e["error"]["code"].as_str()), (status, Some(error)), "{code}: {e}");
        assert!(e["error"]["message"].as_str().unwrap().contains(says), "{code}: {e}");
    }
    seen.assert_no_session_key(&["STUBSESSIONKEY".to_owned()]);
    app.stop().await;
}

#[tokio::test]
async fn without_a_mini_program_both_endpoints_say_what_to_set() {
    // Real credentials (WeChat never reached: the checks come first) and no Mini Program.
    let dir = tempfile::tempdir().unwrap();
    let db = common::app::TestDb::sqlite(&dir);
    let app = TestApp::start(db, Some(dir), |f| {
        f.merge(("simulator", "off"))
            .merge(("wechat_appid", "wx2421b1c4370ec43b"))
            .merge(("wechat_mch_id", DEMO_MCH_ID))
            .merge(("wechat_api_key", "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"))
            .merge(("wechat_app_secret", "0123456789abcdef0123456789abcdef"))
            .merge(("wechat_api_base", "http://127.0.0.1:9"))
            .merge(("wechat_sns_base", "http://127.0.0.1:9"))
    })
    .await;
    let seen = Seen::default();
    let (status, e) = post(&app, &seen, API_TOKEN, SESSION, json!({ "code": "c" })).await;
    assert_eq!((status, e["error"]["code"].as_str()), (409, Some("conflict")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("WECHAT_MINIPROGRAM_APPID is not set"), "{e}");
    assert_eq!(e["simulated"], false);
    let no = app.create_order("MP-NONE", 100).await["out_trade_no"].as_str().unwrap().to_owned();
    let body = json!({ "openid": "oAbc", "app": "mini_program" });
    let (status, e) = post(&app, &seen, API_TOKEN, &payment(&no), body).await;
    assert_eq!((status, e["error"]["code"].as_str()), (409, Some("conflict")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("WECHAT_MINIPROGRAM_APPID is not set"), "{e}");
    app.stop().await;
}
