//! The simulator's shopper-facing side over real HTTP: OAuth, the JS bridge's parameter check,
//! paying, payment notifies with retries and notify faults, and the control API.

#[path = "common/simulator_support.rs"]
mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use url::Url;
use wechat_checkout::simulator::{
    DEMO_APP_SECRET, DEMO_APPID, Faults, NotifyStatus, Outcome, SimulatorConfig, SimulatorHandle,
};
use wechat_checkout::wxpay::jsapi::JsapiParams;
use wechat_checkout::wxpay::notify::parse_payment_notify;
use wechat_checkout::wxpay::{Merchant, SignType};

async fn authorize(sim: &SimulatorHandle, query: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = http().get(format!("{}/connect/oauth2/authorize?{query}", sim.api_base()));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap()
}

fn query(redirect: &str, scope: &str, state: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("appid", DEMO_APPID)
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("state", state);
    q.finish()
}

async fn token(sim: &SimulatorHandle, secret: &str, code: &str) -> Value {
    let url = format!(
        "{}/sns/oauth2/access_token?appid={DEMO_APPID}&secret={secret}&code={code}&grant_type=authorization_code",
        sim.api_base()
    );
    let r = http().get(url).send().await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    r.json().await.unwrap()
}

fn code_of(r: &reqwest::Response) -> (Url, String) {
    assert_eq!(r.status().as_u16(), 302);
    let location = Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    (location, code)
}

#[tokio::test]
async fn oauth_codes_openids_and_errors() {
    let sim = start(SimulatorConfig { oauth_domain: Some("shop.example".into()), ..fast() }).await;
    let r = authorize(&sim, &query("https://shop.example/pay?order=42", "snsapi_base", "S1"), None).await;
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("wxsim_user="), "{cookie}");
    let (location, code) = code_of(&r);
    assert_eq!(location.path(), "/pay");
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs[0], ("order".into(), "42".into()), "the existing query string is kept");
    assert_eq!(pairs[2], ("state".into(), "S1".into()));

    let t = token(&sim, DEMO_APP_SECRET, &code).await;
    let openid = t["openid"].as_str().unwrap().to_owned();
    assert!(openid.len() == 28 && openid.starts_with('o'), "{t}");
    assert_eq!((t["expires_in"].as_i64(), t["scope"].as_str()), (Some(7200), Some("snsapi_base")));
    assert!(t["access_token"].is_string() && t["refresh_token"].is_string());
    assert_eq!(token(&sim, DEMO_APP_SECRET, &code).await["errcode"], 40163, "codes are single-use");

    // The same browser (cookie) gets the same openid; another browser another one.
    let (_, again) =
        code_of(&authorize(&sim, &query("https://shop.example/pay", "snsapi_base", "S2"), Some(&cookie)).await);
    assert_eq!(token(&sim, DEMO_APP_SECRET, &again).await["openid"].as_str(), Some(openid.as_str()));
    let (_, other) = code_of(&authorize(&sim, &query("https://shop.example/pay", "snsapi_base", ""), None).await);
    assert_ne!(token(&sim, DEMO_APP_SECRET, &other).await["openid"].as_str(), Some(openid.as_str()));

    let (_, code) = code_of(&authorize(&sim, &query("https://shop.example/pay", "snsapi_userinfo", "S3"), None).await);
    assert_eq!(token(&sim, "wrong-secret", &code).await["errcode"], 40125);
    sim.sim.advance_clock(Duration::from_secs(5 * 60 + 1));
    assert_eq!(token(&sim, DEMO_APP_SECRET, &code).await["errcode"], 40029, "expired");
    assert_eq!(token(&sim, DEMO_APP_SECRET, "made-up").await["errcode"], 40029);
    let base = sim.api_base();
    let get = |q: String| {
        let url = format!("{base}/sns/oauth2/access_token?{q}");
        async move { http().get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(
        get(format!("appid=wx1&secret={DEMO_APP_SECRET}&code=x&grant_type=authorization_code")).await["errcode"],
        40013
    );
    assert_eq!(
        get(format!("appid={DEMO_APPID}&secret={DEMO_APP_SECRET}&grant_type=authorization_code")).await["errcode"],
        41008
    );
    assert_eq!(
        get(format!("appid={DEMO_APPID}&secret={DEMO_APP_SECRET}&code=x&grant_type=client")).await["errcode"],
        40002
    );

    for (q, text) in [
        (query("https://evil.example/pay", "snsapi_base", "S"), "redirect_uri 参数错误"),
        (query("/relative", "snsapi_base", "S"), "redirect_uri 参数错误"),
        (query("https://shop.example/pay", "snsapi_login", "S"), "scope参数错误"),
        (query("https://shop.example/pay", "snsapi_base", "not valid!"), "state参数错误"),
        (query("https://shop.example/pay", "snsapi_base", "S").replace(DEMO_APPID, "wx0000000000000000"), "appid错误"),
        (
            query("https://shop.example/pay", "snsapi_base", "S").replace("response_type=code", "response_type=token"),
            "response_type",
        ),
    ] {
        let r = authorize(&sim, &q, None).await;
        assert_eq!(r.status().as_u16(), 200, "{q}");
        let page = r.text().await.unwrap();
        assert!(page.contains(text), "{q}: {page}");
    }
    sim.shutdown().await;
}

async fn verify(sim: &SimulatorHandle, params: &Value) -> Value {
    let r = http().post(format!("{}/bridge/verify", sim.own_base())).json(params).send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    r.json().await.unwrap()
}

fn jsapi(m: &Merchant, prepay_id: &str) -> Value {
    serde_json::to_value(JsapiParams::new(m, prepay_id, chrono::Utc::now())).unwrap()
}

#[tokio::test]
async fn the_bridge_checks_parameters_like_the_client() {
    let sim = start(fast()).await;
    let md5 = merchant(SignType::Md5);
    let p = prepay(&sim, &md5, "BR1", "1990", "https://shop.example/notify").await;
    let good = jsapi(&md5, &p);
    let ok = verify(&sim, &good).await;
    assert_eq!(
        (ok["ok"].as_bool(), ok["total_fee"].as_i64(), ok["prepay_id"].as_str()),
        (Some(true), Some(1990), Some(p.as_str()))
    );
    assert_eq!(ok["body"], "模拟商店-测试商品");

    let fails = |v: &Value, desc: &str| {
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["err_msg"], "get_brand_wcpay_request:fail");
        assert_eq!(v["err_desc"], desc, "{v}");
    };
    let mut tampered = good.clone();
    tampered["paySign"] = json!("0".repeat(32));
    fails(&verify(&sim, &tampered).await, "fail_invalid signature");
    fails(&verify(&sim, &jsapi(&merchant(SignType::HmacSha256), &p)).await, "fail_invalid signature");
    let mut millis = good.clone();
    millis["timeStamp"] = json!(format!("{}000", good["timeStamp"].as_str().unwrap()));
    assert_eq!(verify(&sim, &millis).await["ok"], false);
    fails(&verify(&sim, &jsapi(&md5, "wx_never_issued")).await, "调用支付JSAPI缺少参数：total_fee");
    let mut numeric = good.clone();
    numeric["timeStamp"] = json!(1414561699);
    fails(&verify(&sim, &numeric).await, "调用支付JSAPI缺少参数：timeStamp");
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("paySign");
    fails(&verify(&sim, &missing).await, "调用支付JSAPI缺少参数：paySign");

    sim.sim.pay(&p, Outcome::Ok).await.unwrap();
    assert_eq!(verify(&sim, &good).await["ok"], false, "a paid prepay cannot be paid again");

    let js = http().get(format!("{}/bridge.js", sim.own_base())).send().await.unwrap();
    assert!(js.headers()["content-type"].to_str().unwrap().contains("javascript"));
    let js = js.text().await.unwrap();
    assert!(js.contains("WeixinJSBridgeReady") && js.contains("wxsim-pay") && js.contains("getBrandWCPayRequest"));
    let pre =
        http().request(reqwest::Method::OPTIONS, format!("{}/bridge/verify", sim.own_base())).send().await.unwrap();
    assert_eq!(pre.status().as_u16(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    sim.shutdown().await;
}

async fn shopper(sim: &SimulatorHandle, prepay_id: &str, outcome: &str) -> (u16, Value) {
    let r = http()
        .post(format!("{}/shopper/pay", sim.own_base()))
        .json(&json!({ "prepay_id": prepay_id, "outcome": outcome }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn paying_sends_a_signed_notify_without_sign_type() {
    let sim = start(fast()).await;
    let rx = receiver(vec![(200, NOTIFY_OK)]).await;
    let hmac = merchant(SignType::HmacSha256);
    let p = prepay(&sim, &hmac, "PN1", "2500", &rx.url).await;
    assert_eq!(shopper(&sim, &p, "cancel").await.1["trade_state"], "NOTPAY");
    assert_eq!(shopper(&sim, &p, "fail").await.1["trade_state"], "PAYERROR");
    let (status, paid) = shopper(&sim, &p, "ok").await;
    assert_eq!((status, paid["trade_state"].as_str()), (200, Some("SUCCESS")));
    let got = rx.wait_for(1).await;
    assert!(!got[0].body.contains("sign_type"), "WeChat's notifies carry no sign_type");
    assert_eq!(got[0].content_type, "text/xml");
    // Without sign_type the configured algorithm applies: HMAC verifies, MD5 is refused.
    assert!(parse_payment_notify(got[0].body.as_bytes(), &merchant(SignType::Md5)).is_err());
    let n = parse_payment_notify(got[0].body.as_bytes(), &hmac).unwrap();
    assert_eq!((n.sign_type, n.total_fee.get(), n.out_trade_no.as_str()), (SignType::HmacSha256, 2500, "PN1"));
    assert_eq!(n.transaction_id, paid["transaction_id"].as_str().unwrap());
    assert_eq!((n.bank_type.as_deref(), n.cash_fee.map(|f| f.get())), (Some("OTHERS"), Some(2500)));
    eventually("delivered", || sim.sim.order("PN1").is_some_and(|o| o.notify_status == NotifyStatus::Delivered)).await;
    assert_eq!(sim.sim.order("PN1").unwrap().notify_attempts.len(), 1);

    assert_eq!(shopper(&sim, &p, "ok").await.0, 409, "already paid");
    assert_eq!(shopper(&sim, "wx_unknown", "ok").await.0, 404);
    let r = http().post(format!("{}/shopper/pay", sim.own_base())).body("{not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let old = prepay(&sim, &hmac, "PN2", "100", &rx.url).await;
    sim.sim.advance_clock(Duration::from_secs(2 * 3600));
    assert_eq!(shopper(&sim, &old, "ok").await.0, 410, "prepays live two hours");
    sim.shutdown().await;
}

#[tokio::test]
async fn notifies_are_retried_on_the_scaled_schedule() {
    let sim = start(fast()).await;
    let rx = receiver(vec![(200, NOTIFY_FAIL), (500, "oops"), (200, "SUCCESS"), (200, NOTIFY_OK)]).await;
    let m = merchant(SignType::Md5);
    let p = prepay(&sim, &m, "RT1", "100", &rx.url).await;
    sim.sim.pay(&p, Outcome::Ok).await.unwrap();
    let got = rx.wait_for(4).await;
    assert!(got.windows(2).all(|w| w[0].body == w[1].body), "every attempt carries the same notify");
    // 15 s, 15 s, 30 s scaled by 0.001.
    assert!(got[3].at - got[0].at >= Duration::from_millis(60));
    eventually("delivered", || sim.sim.order("RT1").is_some_and(|o| o.notify_status == NotifyStatus::Delivered)).await;
    let log = sim.sim.notify_log();
    let attempts: Vec<(u32, Option<u16>, bool)> = log.iter().map(|a| (a.attempt, a.http_status, a.accepted)).collect();
    assert_eq!(attempts, [(1, Some(200), false), (2, Some(500), false), (3, Some(200), false), (4, Some(200), true)]);
    assert!(log[0].reply.contains("FAIL"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.count(), 4, "no more deliveries after acceptance");
    sim.shutdown().await;
}

#[tokio::test]
async fn notify_faults_drop_duplicate_concurrent_and_amount() {
    let sim = start(fast()).await;
    let m = merchant(SignType::Md5);
    let pay = |no: &'static str, rx_url: String| {
        let sim = &sim;
        let m = &m;
        async move {
            let p = prepay(sim, m, no, "100", &rx_url).await;
            sim.sim.pay(&p, Outcome::Ok).await.unwrap();
        }
    };

    let dropped = receiver(vec![(200, NOTIFY_OK)]).await;
    sim.sim.set_faults(Faults { drop_notify_rate: 1.0, ..Faults::default() });
    pay("FD1", dropped.url.clone()).await;
    let view = sim.sim.order("FD1").unwrap();
    assert_eq!(view.notify_status, NotifyStatus::Dropped);
    assert_eq!(view.notify_attempts[0].copy, "dropped");

    let dup = receiver(vec![(200, NOTIFY_OK)]).await;
    sim.sim.set_faults(Faults { duplicate_notifies: 2, ..Faults::default() });
    pay("FD2", dup.url.clone()).await;
    let got = dup.wait_for(3).await;
    assert!(got.iter().all(|g| g.body == got[0].body));

    let conc = receiver(vec![(200, NOTIFY_OK)]).await;
    sim.sim.set_faults(Faults { concurrent_notifies: 3, ..Faults::default() });
    pay("FD3", conc.url.clone()).await;
    conc.wait_for(3).await;

    let delta = receiver(vec![(200, NOTIFY_OK)]).await;
    sim.sim.set_faults(Faults { notify_amount_delta: 1, ..Faults::default() });
    pay("FD4", delta.url.clone()).await;
    let got = delta.wait_for(1).await;
    let n = parse_payment_notify(got[0].body.as_bytes(), &m).expect("still correctly signed");
    assert_eq!((n.total_fee.get(), n.cash_fee.map(|f| f.get())), (101, Some(101)));

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(dropped.count(), 0);
    assert_eq!(dup.count(), 3);
    assert_eq!(conc.count(), 3);
    let copies: Vec<String> = sim.sim.order("FD2").unwrap().notify_attempts.iter().map(|a| a.copy.clone()).collect();
    assert_eq!(copies, ["first", "duplicate", "duplicate"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_control_api() {
    let sim = start(fast()).await;
    let own = sim.own_base();
    let c = http();
    let faults: Value = c.get(format!("{own}/control/faults")).send().await.unwrap().json().await.unwrap();
    assert_eq!(faults["system_error_rate"], 0.0);
    let r = c
        .post(format!("{own}/control/faults"))
        .json(&json!({ "slow_ms": 5, "bill_creating": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!((sim.sim.faults().slow_ms, sim.sim.faults().bill_creating), (5, true));
    let r = c.post(format!("{own}/control/faults")).json(&json!({ "garbled_rate": 3 })).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let before = sim.sim.now();
    let clock: Value = c
        .post(format!("{own}/control/clock"))
        .json(&json!({ "advance_seconds": 3600 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(clock["offset_seconds"].as_i64().unwrap() >= 3599, "{clock}");
    assert!(sim.sim.now() - before >= chrono::Duration::seconds(3600));

    let rx = receiver(vec![(200, NOTIFY_OK)]).await;
    let m = merchant(SignType::Md5);
    let p = prepay(&sim, &m, "CT1", "100", &rx.url).await;
    sim.sim.pay(&p, Outcome::Ok).await.unwrap();
    let f = call(
        &sim,
        "/secapi/pay/refund",
        &m,
        &[("out_trade_no", "CT1"), ("out_refund_no", "CT1-R"), ("total_fee", "100"), ("refund_fee", "100")],
    )
    .await;
    assert_eq!(result(&f), ("SUCCESS", "-"));
    let order: Value = c.get(format!("{own}/control/orders/CT1")).send().await.unwrap().json().await.unwrap();
    assert_eq!((order["state"].as_str(), order["total_fee"].as_i64()), (Some("REFUND"), Some(100)));
    assert_eq!(c.get(format!("{own}/control/orders/NOPE")).send().await.unwrap().status().as_u16(), 404);
    let settled: Value = c
        .post(format!("{own}/control/refunds/CT1-R/settle"))
        .json(&json!({ "status": "REFUNDCLOSE" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settled["status"], "REFUNDCLOSE");
    let r =
        c.post(format!("{own}/control/refunds/CT1-R/settle")).json(&json!({ "status": "MAYBE" })).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    rx.wait_for(1).await;
    let log: Value = c.get(format!("{own}/control/notifies")).send().await.unwrap().json().await.unwrap();
    assert!(!log.as_array().unwrap().is_empty());
    let r = c.post(format!("{own}/control/reset")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(sim.sim.order("CT1").is_none());
    assert!(sim.sim.now() - chrono::Utc::now() < chrono::Duration::seconds(60));
    sim.shutdown().await;
}

#[tokio::test]
async fn state_and_pending_notifies_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimulatorConfig { state_file: Some(dir.path().join("wxsim.json")), ..fast() };
    let rx = receiver(vec![(200, NOTIFY_FAIL), (200, NOTIFY_FAIL), (200, NOTIFY_FAIL), (200, NOTIFY_OK)]).await;
    let m = merchant(SignType::Md5);

    let first = start(config.clone()).await;
    first.sim.advance_clock(Duration::from_secs(600));
    let p = prepay(&first, &m, "ST1", "100", &rx.url).await;
    first.sim.pay(&p, Outcome::Ok).await.unwrap();
    rx.wait_for(2).await;
    // The receiver may see an attempt a moment before the simulator records its outcome.
    eventually("two recorded attempts", || first.sim.notify_log().len() >= 2).await;
    let saved = first.sim.notify_log().len();
    first.shutdown().await;
    let attempts_before = rx.count();

    let second = start(config).await;
    let order = second.sim.order("ST1").expect("the order was saved");
    assert_eq!((order.state.as_str(), order.prepay_id.as_str()), ("SUCCESS", p.as_str()));
    assert!(second.sim.now() - chrono::Utc::now() >= chrono::Duration::seconds(590), "the clock offset was saved");
    eventually("the resumed delivery", || {
        second.sim.order("ST1").is_some_and(|o| o.notify_status == NotifyStatus::Delivered)
    })
    .await;
    assert!(rx.count() > attempts_before);
    assert!(second.sim.notify_log().len() > saved, "earlier attempts were saved and new ones added");
    second.shutdown().await;
}
