//! Simulator settings: the merchants it knows, its timing rules, fault injection, TLS files.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SimulatorError;
use crate::wxpay::demo::{
    DEMO_API_KEY, DEMO_APP_SECRET, DEMO_APPID, DEMO_MCH_ID, DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET,
};
use crate::wxpay::sign::ApiKey;
use crate::wxpay::v3::{ApiV3Key, VerifyingKey};

/// An Official Account (appid) bound to a merchant account (mch_id). Several entries may share
/// one mch_id (several appids bound to one merchant); they must then share its API key.
#[derive(Clone, Debug)]
pub struct SimMerchant {
    pub appid: String,
    pub mch_id: String,
    pub api_key: ApiKey,
    pub app_secret: String,
}

impl SimMerchant {
    pub fn demo() -> SimMerchant {
        SimMerchant {
            appid: DEMO_APPID.into(),
            mch_id: DEMO_MCH_ID.into(),
            api_key: ApiKey::new(DEMO_API_KEY).expect("the demo key is 32 alphanumerics"),
            app_secret: DEMO_APP_SECRET.into(),
        }
    }

    /// The demo Mini Program, bound to the demo merchant.
    pub fn demo_mini_program() -> SimMerchant {
        SimMerchant { appid: DEMO_MINIPROGRAM_APPID.into(), app_secret: DEMO_MINIPROGRAM_SECRET.into(), ..Self::demo() }
    }
}

/// A merchant account that speaks API v3. Its appids are the [`SimMerchant`]s (Official Accounts
/// and Mini Programs) configured with the same `mch_id`.
#[derive(Clone, Debug)]
pub struct SimV3Merchant {
    pub mch_id: String,
    /// Encrypts notify resources and the certificates of `/v3/certificates`.
    pub apiv3_key: ApiV3Key,
    /// The serial of the merchant API certificate (`serial_no` of `Authorization`).
    pub serial_no: String,
    /// The merchant API public key (PEM): checks request signatures and RSA `paySign`s.
    pub public_key_pem: String,
    /// Notifies are signed with the WeChat Pay public key (`Wechatpay-Serial: PUB_KEY_ID_…`)
    /// instead of the platform certificate.
    pub public_key_mode: bool,
}

/// Faults injected into the simulator's behaviour. All off by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability that an API call answers a signed SYSTEMERROR without changing anything.
    pub system_error_rate: f64,
    /// Probability that an API call is processed normally but answered only after `slow_ms`.
    pub slow_rate: f64,
    pub slow_ms: u64,
    /// Probability that an API call is processed normally but answered with truncated XML.
    pub garbled_rate: f64,
    /// Probability that a notify (payment or refund) is never delivered at all.
    pub drop_notify_rate: f64,
    /// After a notify is accepted, send this many identical copies, one after another.
    pub duplicate_notifies: u32,
    /// Send this many identical copies at once for the first delivery attempt.
    pub concurrent_notifies: u32,
    /// Probability that a notify's first delivery is held back by a random time up to
    /// `late_notify_ms` (real time, not scaled): notifies sent after it, the queries the merchant
    /// makes meanwhile, and its refund's notify may all overtake it. This is how notifies arrive
    /// out of order.
    pub late_notify_rate: f64,
    pub late_notify_ms: u64,
    /// Added to `total_fee` and `cash_fee` in payment notifies (the notify stays correctly signed).
    pub notify_amount_delta: i64,
    /// Every downloadbill answers "Bill Creating" (v3: `STATEMENT_CREATING`).
    pub bill_creating: bool,
    /// Share of v3 answers and v3 notify deliveries whose `Wechatpay-Signature` is a deliberate
    /// `WECHATPAY/SIGNTEST/` probe. A notify refused for it is retried, correctly signed, on the
    /// usual schedule.
    pub v3_signtest_rate: f64,
    /// v3 notifies are signed as if WeChat's clock were this many seconds off (negative: behind),
    /// correctly otherwise: the merchant's five-minute window is what refuses them.
    pub v3_notify_clock_skew_seconds: i64,
    /// v3 notifies carry a ciphertext with one character changed, signed as sent: only the
    /// AES-GCM tag can tell.
    pub v3_tampered_ciphertext: bool,
}

impl Faults {
    /// Rates must be probabilities.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("system_error_rate", self.system_error_rate),
            ("slow_rate", self.slow_rate),
            ("garbled_rate", self.garbled_rate),
            ("drop_notify_rate", self.drop_notify_rate),
            ("late_notify_rate", self.late_notify_rate),
            ("v3_signtest_rate", self.v3_signtest_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1 (got {rate})"));
            }
        }
        if self.concurrent_notifies > 64 || self.duplicate_notifies > 64 {
            return Err("duplicate_notifies and concurrent_notifies must be at most 64".into());
        }
        if self.v3_notify_clock_skew_seconds.abs() > 86_400 {
            return Err("v3_notify_clock_skew_seconds must be within a day either way".into());
        }
        Ok(())
    }
}

/// Server certificate, key and (optionally) the CA that signs merchant client certificates.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    pub cert_pem_path: PathBuf,
    pub key_pem_path: PathBuf,
    /// When set, client certificates are requested (not required at the TLS layer) and the refund
    /// API refuses calls without one, the way WeChat's front end does.
    pub client_ca_pem_path: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    pub merchants: Vec<SimMerchant>,
    /// Mini Programs bound to a merchant account (same mch_id, same API key): their appids place
    /// JSAPI orders for the openids `jscode2session` gave them, and sign shoppers in only through
    /// `jscode2session` (their `app_secret` is the Mini Program's), never through OAuth.
    pub mini_programs: Vec<SimMerchant>,
    /// Merchant accounts that also speak API v3 (none by default).
    pub v3_merchants: Vec<SimV3Merchant>,
    /// Multiplies notify retry delays and the refund settle delay: 1.0 is real time, 0.001 is
    /// a thousand times faster.
    pub time_factor: f64,
    /// closeorder refuses orders younger than this (simulated clock).
    pub close_min_age: Duration,
    /// The least time between two refunds of one order (simulated clock).
    pub refund_min_interval: Duration,
    /// A new refund stays PROCESSING this long (scaled by `time_factor`, real time).
    pub refund_settle_delay: Duration,
    /// Limit of one notify delivery attempt (not scaled).
    pub notify_timeout: Duration,
    /// When set, an OAuth `redirect_uri` must have exactly this host.
    pub oauth_domain: Option<String>,
    /// When set (the simulator mounted inside the app), notifies go and OAuth redirects point
    /// only to this origin: the mounted simulator is public, and must be neither a proxy into
    /// the network nor an open redirect.
    pub callback_origin: Option<String>,
    /// When set, the state is loaded from and saved to this JSON file.
    pub state_file: Option<PathBuf>,
    pub faults: Faults,
    /// Seed of the fault dice, for reproducible runs.
    pub seed: Option<u64>,
    /// The Beijing hour from which yesterday's bill can be downloaded: 10, as at WeChat. A test
    /// that must reconcile yesterday at any time of day sets 0.
    pub bill_ready_hour: u32,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            merchants: vec![SimMerchant::demo()],
            mini_programs: vec![SimMerchant::demo_mini_program()],
            v3_merchants: Vec::new(),
            time_factor: 1.0,
            close_min_age: Duration::from_secs(5 * 60),
            refund_min_interval: Duration::from_secs(60),
            refund_settle_delay: Duration::from_secs(10),
            notify_timeout: Duration::from_secs(5),
            oauth_domain: None,
            callback_origin: None,
            state_file: None,
            faults: Faults::default(),
            seed: None,
            bill_ready_hour: 10,
        }
    }
}

impl SimulatorConfig {
    pub fn validate(&self) -> Result<(), SimulatorError> {
        let bad = |m: String| Err(SimulatorError::Config(m));
        if self.merchants.is_empty() {
            return bad("at least one merchant is needed".into());
        }
        let all: Vec<&SimMerchant> = self.merchants.iter().chain(&self.mini_programs).collect();
        for (i, m) in all.iter().enumerate() {
            if m.appid.is_empty() || m.mch_id.is_empty() {
                return bad(format!("merchant #{i} needs an appid and a mch_id"));
            }
            for other in &all[..i] {
                if other.mch_id == m.mch_id && other.api_key != m.api_key {
                    return bad(format!("mch_id {} is configured with two different API keys", m.mch_id));
                }
                if other.appid == m.appid && other.app_secret != m.app_secret {
                    return bad(format!("appid {} is configured with two different AppSecrets", m.appid));
                }
            }
        }
        if let Some(mp) = self.mini_programs.iter().find(|mp| self.merchant_for_appid(&mp.appid).is_some()) {
            return bad(format!("appid {} is configured as an Official Account and as a Mini Program", mp.appid));
        }
        self.validate_v3().map_err(SimulatorError::Config)?;
        check_time_factor(self.time_factor).map_err(SimulatorError::Config)?;
        self.faults.validate().map_err(SimulatorError::Config)
    }

    /// A v3 merchant needs appids (a v2 entry with its mch_id), a serial and a readable key.
    fn validate_v3(&self) -> Result<(), String> {
        for (i, m) in self.v3_merchants.iter().enumerate() {
            if !self.merchants.iter().chain(&self.mini_programs).any(|b| b.mch_id == m.mch_id) {
                return Err(format!("v3 merchant {:?} has no appid: add a merchant with this mch_id", m.mch_id));
            }
            if self.v3_merchants[..i].iter().any(|o| o.mch_id == m.mch_id) {
                return Err(format!("v3 merchant {:?} is configured twice", m.mch_id));
            }
            if m.serial_no.is_empty() {
                return Err(format!("v3 merchant {:?} needs its API certificate serial", m.mch_id));
            }
            VerifyingKey::from_pem(&m.public_key_pem)
                .map_err(|e| format!("v3 merchant {:?}: public_key_pem: {e}", m.mch_id))?;
        }
        Ok(())
    }

    /// The v3 identity of a merchant account.
    pub(crate) fn v3_merchant(&self, mch_id: &str) -> Option<&SimV3Merchant> {
        self.v3_merchants.iter().find(|m| m.mch_id == mch_id)
    }

    /// Scales a delay of the real service by `time_factor`.
    pub fn scaled(&self, d: Duration) -> Duration {
        scale(d, self.time_factor)
    }

    /// Whether a notify may be sent to, or a shopper redirected to, `url`: always, unless
    /// [`callback_origin`](Self::callback_origin) is set and `url` is not on it.
    pub(crate) fn allows_callback(&self, url: &str) -> bool {
        let Some(allowed) = &self.callback_origin else { return true };
        match (url::Url::parse(url), url::Url::parse(allowed)) {
            (Ok(u), Ok(a)) => u.origin() == a.origin(),
            _ => false,
        }
    }

    /// The Official Account with this appid (OAuth, the JSAPI bridge).
    pub(crate) fn merchant_for_appid(&self, appid: &str) -> Option<&SimMerchant> {
        self.merchants.iter().find(|m| m.appid == appid)
    }

    /// The Mini Program with this appid (`jscode2session`).
    pub(crate) fn mini_program_for_appid(&self, appid: &str) -> Option<&SimMerchant> {
        self.mini_programs.iter().find(|m| m.appid == appid)
    }
}

/// A time factor must be a positive number, at most 1000.
pub(crate) fn check_time_factor(factor: f64) -> Result<(), String> {
    if factor.is_finite() && factor > 0.0 && factor <= 1000.0 {
        Ok(())
    } else {
        Err(format!("time_factor must be a positive number (got {factor})"))
    }
}

/// `d` multiplied by a time factor.
#[allow(clippy::float_arithmetic, reason = "the simulator's clock, never money")]
pub(crate) fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_scaling_works() {
        let mut c = SimulatorConfig::default();
        c.validate().unwrap();
        c.time_factor = 0.001;
        assert_eq!(c.scaled(Duration::from_secs(15)), Duration::from_millis(15));
        c.time_factor = 0.0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn fault_rates_are_probabilities() {
        assert!(Faults { slow_rate: 1.5, ..Faults::default() }.validate().is_err());
        assert!(Faults { garbled_rate: f64::NAN, ..Faults::default() }.validate().is_err());
        assert!(Faults { drop_notify_rate: 1.0, ..Faults::default() }.validate().is_ok());
        let partial: Faults = serde_json::from_str(r#"{"slow_ms": 5}"#).unwrap();
        assert_eq!(partial.slow_ms, 5);
        assert!(serde_json::from_str::<Faults>(r#"{"nope": 1}"#).is_err());
    }

    #[test]
    fn a_callback_origin_admits_only_itself() {
        let open = SimulatorConfig::default();
        assert!(open.allows_callback("http://10.0.0.1/anything"));
        let mounted = SimulatorConfig { callback_origin: Some("https://pay.shop.example".into()), ..open };
        assert!(mounted.allows_callback("https://pay.shop.example/wechat/notify"));
        assert!(mounted.allows_callback("https://PAY.shop.example:443/pay/oauth/callback"));
        for foreign in [
            "http://pay.shop.example/wechat/notify",
            "https://pay.shop.example:8443/wechat/notify",
            "https://pay.shop.example.evil.example/n",
            "https://evil.example/?https://pay.shop.example",
            "http://169.254.169.254/latest/meta-data/",
            "not a url",
        ] {
            assert!(!mounted.allows_callback(foreign), "{foreign}");
        }
    }

    #[test]
    fn mini_programs_share_their_merchants_key_and_no_appid() {
        let mut c = SimulatorConfig::default();
        c.validate().unwrap();
        assert!(c.mini_program_for_appid(DEMO_MINIPROGRAM_APPID).is_some());
        assert!(c.merchant_for_appid(DEMO_MINIPROGRAM_APPID).is_none(), "no OAuth for a Mini Program");
        c.mini_programs[0].api_key = ApiKey::new("00000000000000000000000000000000").unwrap();
        assert!(c.validate().is_err());
        let mut twice = SimulatorConfig::default();
        twice.mini_programs[0].appid = DEMO_APPID.into();
        twice.mini_programs[0].app_secret = DEMO_APP_SECRET.into();
        assert!(twice.validate().is_err());
    }

    #[test]
    fn v3_merchants_need_appids_a_serial_and_a_key() {
        let key = crate::wxpay::v3::MerchantKey::generate().unwrap();
        let v3 = SimV3Merchant {
            mch_id: DEMO_MCH_ID.into(),
            apiv3_key: ApiV3Key::new("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap(),
            serial_no: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
            public_key_pem: key.public_key_pem(),
            public_key_mode: false,
        };
        let ok = SimulatorConfig { v3_merchants: vec![v3.clone()], ..SimulatorConfig::default() };
        ok.validate().unwrap();
        assert!(ok.v3_merchant(DEMO_MCH_ID).is_some() && ok.v3_merchant("1").is_none());
        for bad in [
            SimV3Merchant { mch_id: "1900000109".into(), ..v3.clone() },
            SimV3Merchant { serial_no: String::new(), ..v3.clone() },
            SimV3Merchant { public_key_pem: key.to_pkcs8_pem(), ..v3.clone() },
        ] {
            let c = SimulatorConfig { v3_merchants: vec![bad], ..SimulatorConfig::default() };
            assert!(c.validate().is_err());
        }
        let twice = SimulatorConfig { v3_merchants: vec![v3.clone(), v3], ..SimulatorConfig::default() };
        assert!(twice.validate().is_err());
        assert!(Faults { v3_signtest_rate: 1.5, ..Faults::default() }.validate().is_err());
    }

    #[test]
    fn conflicting_keys_are_refused() {
        let mut c = SimulatorConfig::default();
        let mut second = SimMerchant::demo();
        second.appid = "wx0000000000000001".into();
        second.api_key = ApiKey::new("00000000000000000000000000000000").unwrap();
        c.merchants.push(second);
        assert!(c.validate().is_err());
    }
}
