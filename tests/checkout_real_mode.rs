//! The product with the simulator switched off, talking to a separate WeChat Pay simulator over
//! HTTP exactly as it would to WeChat: the open-in-WeChat page outside WeChat, OAuth with a
//! signed single-use state, the pay flow, and ORDERPAID confirmed by orderquery.

mod common;

use common::app::TestApp;
use common::{demo_merchant, fast_config, gateway, start_simulator};
use wechat_checkout::simulator::{DEMO_API_KEY, DEMO_APP_SECRET, DEMO_APPID, DEMO_MCH_ID, Faults, Outcome};
use wechat_checkout::wxpay::unified_order::UnifiedOrder;
use wechat_checkout::wxpay::{Fen, PayGateway, SignType};

const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323b) NetType/WIFI Language/zh_CN";

fn wechat_browser() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(WECHAT_UA)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn real_mode_against_a_separate_simulator() {
    let sim = start_simulator(fast_config()).await;
    let base = sim.api_base();
    let dir = tempfile::tempdir().unwrap();
    let mut app = TestApp::start(common::app::TestDb::sqlite(&dir), Some(dir), |f| {
        f.merge(("simulator", "off"))
            .merge(("wechat_appid", DEMO_APPID))
            .merge(("wechat_mch_id", DEMO_MCH_ID))
            .merge(("wechat_api_key", DEMO_API_KEY))
            .merge(("wechat_app_secret", DEMO_APP_SECRET))
            .merge(("wechat_sign_type", "HMAC-SHA256"))
            .merge(("wechat_api_base", base.clone()))
            .merge(("wechat_open_base", base.clone()))
            .merge(("wechat_sns_base", base.clone()))
    })
    .await;

    let order = app.create_order("REAL-1", 2500).await;
    let no = order["out_trade_no"].as_str().unwrap().to_owned();

    // Outside WeChat: a page that says so, with a QR code of the link. No OAuth redirect.
    let page = app.http.get(app.url(&format!("/pay/{no}"))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let html = page.text().await.unwrap();
    assert!(html.contains("请在微信中打开") && html.contains("<svg"), "{html}");
    assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");

    // Inside WeChat: redirected to OAuth at the (simulated) open platform, with a signed state.
    app.http = wechat_browser();
    let to_oauth = app.http.get(app.url(&format!("/pay/{no}"))).send().await.unwrap();
    assert_eq!(to_oauth.status(), 303);
    let authorize = to_oauth.headers()["location"].to_str().unwrap().to_owned();
    assert!(authorize.starts_with(&format!("{base}/connect/oauth2/authorize?appid={DEMO_APPID}")), "{authorize}");
    assert!(authorize.contains("scope=snsapi_base") && authorize.ends_with("#wechat_redirect"));
    let back = app.http.get(authorize.split('#').next().unwrap()).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with(&app.url("/pay/oauth/callback?")), "{callback}");

    // A tampered state is refused; the genuine one signs the shopper in once; a replay is refused.
    let tampered = callback.replacen("state=WC", "state=WD", 1);
    let refused = app.http.get(&tampered).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    let signed_in = app.http.get(&callback).send().await.unwrap();
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], format!("/pay/{no}").as_str());
    let replay = app.http.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 422);
    assert!(replay.text().await.unwrap().contains("重新打开支付链接"));

    // Pay: HMAC parameters, the simulator's notify (without sign_type) marks the order paid.
    let jsapi = app.jsapi(&no).await;
    assert_eq!(jsapi["params"]["signType"], "HMAC-SHA256");
    assert_eq!(jsapi["params"]["paySign"].as_str().unwrap().len(), 64);
    sim.sim.pay(&common::app::prepay_id(&jsapi), Outcome::Ok).await.unwrap();
    assert!(app.wait_for_state(&no, "PAID").await);

    // ORDERPAID: the order was paid at WeChat under this number (its notify lost) before our
    // unifiedorder; the checkout confirms with orderquery and shows it paid.
    sim.sim.set_faults(Faults { drop_notify_rate: 1.0, ..Faults::default() });
    let other = app.create_order("REAL-2", 300).await;
    let other_no = other["out_trade_no"].as_str().unwrap().to_owned();
    let direct = gateway(&sim, demo_merchant(SignType::HmacSha256));
    let prepay = direct
        .unified_order(&UnifiedOrder::jsapi(
            "另一处下单",
            &other_no,
            Fen::new(300),
            "10.0.0.1",
            app.url("/wechat/notify"),
            "oOther",
        ))
        .await
        .unwrap();
    sim.sim.pay(&prepay.prepay_id, Outcome::Ok).await.unwrap();
    app.follow(&app.url(&format!("/pay/{other_no}"))).await;
    let res =
        app.http.post(app.url(&format!("/pay/{other_no}/jsapi"))).header("Origin", &app.base_url).send().await.unwrap();
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["state"], "PAID", "{body}");
    assert_eq!(app.order(&other_no).await["state"], "PAID");

    // A cross-site POST is refused before anything happens.
    let cross = app
        .http
        .post(app.url(&format!("/pay/{no}/jsapi")))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);

    app.stop().await;
    sim.shutdown().await;
}
