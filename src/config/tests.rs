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
fn return_urls_take_the_webhook_form_and_leave_the_appended_parameters_free() {
    for ok in ["https://shop.example/done", "http://127.0.0.1:9000/back?from=wechat&q=a%20b", "https://shop.example/?"]
    {
        assert_eq!(return_url_problem(ok), None, "{ok}");
    }
    for (bad, says) in [
        ("shop.example/done", "absolute"),
        ("javascript:alert(1)", "absolute"),
        ("https://u:p@shop.example/", "user name"),
        ("https://shop.example/#top", "fragment"),
        ("https://shop.example/a b", "spaces"),
        ("https://shop.example/?out_trade_no=1", "out_trade_no"),
        ("https://shop.example/?a=1&merchant_order_id=2", "merchant_order_id"),
    ] {
        let problem = return_url_problem(bad).unwrap_or_default();
        assert!(problem.contains(says), "{bad}: {problem}");
    }
    assert!(return_url_problem(&format!("https://shop.example/{}", "p".repeat(500))).unwrap().contains("512"));
    // RETURN_URL_HOSTS is checked at start-up, naming itself.
    let hosts = |v: &str| RawSettings { return_url_hosts: Some(v.into()), ..RawSettings::default() };
    assert!(problem(hosts("https://shop.example")).starts_with("RETURN_URL_HOSTS: "));
    assert!(AppConfig::validate(hosts("shop.example, *.shop.example")).unwrap().return_url_hosts.is_restricted());
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
        ("PUBLIC_BASE_URL", |r| r.public_base_url = Some("example.com".into())),
        ("SIMULATOR", |r| r.simulator = Some("maybe".into())),
        ("MAX_ORDER_FEN", |r| r.max_order_fen = 0),
    ] {
        let mut raw = real();
        mutate(&mut raw);
        let msg = problem(raw);
        assert!(msg.starts_with(var), "{var}: {msg}");
    }
}

#[test]
fn the_simulator_switches_on_by_itself_only_on_loopback() {
    let on = |address: Option<&str>, base: &str| RawSettings {
        address: address.map(str::to_owned),
        public_base_url: Some(base.into()),
        ..RawSettings::default()
    };
    for (address, base) in [
        (None, "http://127.0.0.1:8000"),
        (Some("127.0.0.1"), "http://localhost:8000"),
        (Some("::1"), "http://[::1]:8000"),
    ] {
        assert!(AppConfig::validate(on(address, base)).unwrap().simulator, "{address:?} {base}");
    }
    for (address, base) in [
        (Some("0.0.0.0"), "http://127.0.0.1:8000"),
        (Some("192.168.1.5"), "http://127.0.0.1:8000"),
        (None, "https://pay.shop.example"),
        (Some("0.0.0.0"), "https://pay.shop.example"),
    ] {
        let msg = problem(on(address, base));
        assert!(msg.starts_with("SIMULATOR"), "{msg}");
        for named in ["SIMULATOR=on", "WECHAT_APPID", "WECHAT_MCH_ID", "WECHAT_API_KEY", "WECHAT_APP_SECRET"] {
            assert!(msg.contains(named), "{address:?} {base}: {msg}");
        }
    }
    // Asked for explicitly, it runs anywhere: a public demo is a choice, not an accident.
    let public = RawSettings { simulator: Some("on".into()), ..on(Some("0.0.0.0"), "https://demo.shop.example") };
    assert!(AppConfig::validate(public).unwrap().simulator);
}

#[test]
fn the_simulator_is_refused_beside_real_credentials() {
    let mut raw = real();
    raw.simulator = Some("on".into());
    let msg = problem(raw);
    assert!(msg.starts_with("SIMULATOR: SIMULATOR=on cannot be combined with real credentials"), "{msg}");
    // The demo merchant's own values are not real credentials.
    let demo = RawSettings {
        simulator: Some("on".into()),
        wechat_appid: Some(crate::wxpay::demo::DEMO_APPID.into()),
        wechat_api_key: Some(Secret::new(crate::wxpay::demo::DEMO_API_KEY)),
        ..RawSettings::default()
    };
    assert!(AppConfig::validate(demo).unwrap().simulator);
    for only in ["appid", "key"] {
        let mut raw = RawSettings { simulator: Some("on".into()), ..RawSettings::default() };
        match only {
            "appid" => raw.wechat_appid = Some("wx2421b1c4370ec43b".into()),
            _ => raw.wechat_api_key = Some(Secret::new("a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5")),
        }
        assert!(problem(raw).contains("cannot be combined with real credentials"), "{only}");
    }
}

#[test]
fn debug_output_redacts_every_secret() {
    let raw = RawSettings {
        database_url: DatabaseUrl::new("postgres://shop:db-pass-123@db/pay"),
        api_token: Some(Secret::new("api-token-0123456789abcdefgh")),
        webhook_secret: Some(Secret::new("whsec-0123456789abcdef")),
        admin_password: Some(Secret::new("admin-pass-0123")),
        ..real()
    };
    let printed = format!("{raw:?} {:?}", AppConfig::validate(raw.clone()).unwrap());
    for secret in [
        "db-pass-123",
        "api-token-0123456789abcdefgh",
        "whsec-0123456789abcdef",
        "admin-pass-0123",
        "192006250b4c09247ec02edce69f6a2d",
        "0123456789abcdef0123456789abcdef",
    ] {
        assert!(!printed.contains(secret), "{secret} printed");
    }
}

#[test]
fn the_mini_program_takes_both_variables_or_neither() {
    use crate::wxpay::demo::{DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET};
    // Real credentials: off unless configured.
    assert!(AppConfig::validate(real()).unwrap().wechat.mini_program.is_none());
    let with = |appid: Option<&str>, secret: Option<&str>| RawSettings {
        wechat_miniprogram_appid: appid.map(str::to_owned),
        wechat_miniprogram_secret: secret.map(Secret::new),
        ..real()
    };
    let on = AppConfig::validate(with(Some("wx8888888888888888"), Some("abcdef0123456789abcdef0123456789"))).unwrap();
    let mp = on.wechat.mini_program.expect("configured");
    assert_eq!((mp.appid.as_str(), mp.secret.expose()), ("wx8888888888888888", "abcdef0123456789abcdef0123456789"));
    for (appid, secret, var, says) in [
        (Some("wx8888888888888888"), None, "WECHAT_MINIPROGRAM_SECRET", "is required with WECHAT_MINIPROGRAM_APPID"),
        (None, Some("abcdef0123456789abcdef0123456789"), "WECHAT_MINIPROGRAM_APPID", "is required with"),
        (Some("wx888"), Some("abcdef0123456789abcdef0123456789"), "WECHAT_MINIPROGRAM_APPID", "wx followed by 16"),
        (Some("mp8888888888888888"), Some("abcdef0123456789abcdef0123456789"), "WECHAT_MINIPROGRAM_APPID", "wx"),
        (
            Some("wx2421b1c4370ec43b"),
            Some("abcdef0123456789abcdef0123456789"),
            "WECHAT_MINIPROGRAM_APPID",
            "is WECHAT_APPID",
        ),
        (Some("wx8888888888888888"), Some("short"), "WECHAT_MINIPROGRAM_SECRET", "32-character"),
    ] {
        let msg = problem(with(appid, secret));
        assert!(msg.starts_with(&format!("{var}: ")) && msg.contains(says), "{appid:?} {secret:?}: {msg}");
    }
    // Simulator mode: the simulator's public demo Mini Program, with nothing configured.
    let demo = AppConfig::validate(RawSettings::default()).unwrap().wechat.mini_program.expect("the demo one");
    assert_eq!((demo.appid.as_str(), demo.secret.expose()), (DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET));
    // Its secret never prints.
    let printed = format!(
        "{:?}",
        AppConfig::validate(with(Some("wx8888888888888888"), Some("abcdef0123456789abcdef0123456789"))).unwrap()
    );
    assert!(!printed.contains("abcdef0123456789abcdef0123456789"), "{printed}");
}

#[test]
fn the_simulator_is_refused_beside_a_real_mini_program() {
    use crate::wxpay::demo::{DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET};
    let sim = |appid: &str, secret: &str| RawSettings {
        simulator: Some("on".into()),
        wechat_miniprogram_appid: Some(appid.into()),
        wechat_miniprogram_secret: Some(Secret::new(secret)),
        ..RawSettings::default()
    };
    assert!(AppConfig::validate(sim(DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET)).unwrap().simulator);
    let msg = problem(sim("wx8888888888888888", DEMO_MINIPROGRAM_SECRET));
    assert!(msg.contains("cannot be combined with real credentials (WECHAT_MINIPROGRAM_APPID is set)"), "{msg}");
    let msg = problem(sim(DEMO_MINIPROGRAM_APPID, "abcdef0123456789abcdef0123456789"));
    assert!(msg.contains("(WECHAT_MINIPROGRAM_SECRET is set)"), "{msg}");
    // Unset mode: a Mini Program credential is a credential, so real mode asks for the rest.
    let auto = RawSettings { simulator: None, ..sim(DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET) };
    assert!(problem(auto).starts_with("WECHAT_APPID"));
}
