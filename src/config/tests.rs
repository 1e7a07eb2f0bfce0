//! Validation as a whole: which mode the settings select, which hosts follow, and which
//! variable each problem names.

use super::*;

fn real() -> RawSettings {
    RawSettings {
        simulator: Some("off".into()),
        wechat_appid: Some("wx2421b1c4370ec43b".into()),
        wechat_mch_id: Some("10000100".into()),
        wechat_api_key: Some(Secret::new("192006250b4c09247ec02edce69f6a2d")),
        wechat_app_secret: Some(Secret::new("0123456789abcdef0123456789abcdef")),
        ..RawSettings::default()
    }
}

fn problem(raw: RawSettings) -> String {
    AppConfig::validate(raw).unwrap_err().to_string()
}

#[test]
fn no_credentials_means_simulator_mode() {
    let c = AppConfig::validate(RawSettings::default()).unwrap();
    assert!(c.simulator);
    assert_eq!(c.wechat.api_base, "http://127.0.0.1:8000/simulator");
    assert_eq!(c.notify_url(), "http://127.0.0.1:8000/wechat/notify");
}

#[test]
fn real_credentials_use_production_hosts() {
    let c = AppConfig::validate(real()).unwrap();
    assert!(!c.simulator);
    assert_eq!(c.wechat.api_base, "https://api.mch.weixin.qq.com");
    assert_eq!(c.wechat.api_backup_base.as_deref(), Some("https://api2.mch.weixin.qq.com"));
    assert!(!format!("{c:?}").contains("192006250b4c09247ec02edce69f6a2d"), "secrets never print");
}

#[test]
fn webhook_url_follows_the_same_rule_as_an_orders_own() {
    let with = |url: &str| RawSettings { webhook_url: Some(url.into()), ..RawSettings::default() };
    let c = AppConfig::validate(with("https://merchant.example/hooks?shop=7")).unwrap();
    assert_eq!(c.jobs.webhook_url.as_deref(), Some("https://merchant.example/hooks?shop=7"));
    for bad in ["merchant.example/hooks", "https://user:pw@merchant.example/h", "https://merchant.example/h#x"] {
        assert!(problem(with(bad)).contains("WEBHOOK_URL"), "{bad}");
    }
}

#[test]
fn each_missing_or_malformed_credential_is_named() {
    for (var, mutate) in [
        ("WECHAT_APPID", (|r: &mut RawSettings| r.wechat_appid = None) as fn(&mut RawSettings)),
        ("WECHAT_MCH_ID", |r| r.wechat_mch_id = None),
        ("WECHAT_API_KEY", |r| r.wechat_api_key = None),
        ("WECHAT_APP_SECRET", |r| r.wechat_app_secret = None),
        ("WECHAT_APPID", |r| r.wechat_appid = Some("not-an-appid".into())),
        ("WECHAT_MCH_ID", |r| r.wechat_mch_id = Some("12ab".into())),
        ("WECHAT_API_KEY", |r| r.wechat_api_key = Some(Secret::new("short"))),
        ("WECHAT_API_KEY", |r| r.wechat_api_key = Some(Secret::new("0123456789abcdef0123456789abcdef"))),
        ("WECHAT_SIGN_TYPE", |r| r.wechat_sign_type = "SHA1".into()),
        ("PUBLIC_BASE_URL", |r| r.public_base_url = "example.com".into()),
        ("SIMULATOR", |r| r.simulator = Some("maybe".into())),
        ("MAX_ORDER_FEN", |r| r.max_order_fen = 0),
    ] {
        let mut raw = real();
        mutate(&mut raw);
        let msg = problem(raw);
        assert!(msg.starts_with(var), "{var}: {msg}");
    }
}
