//! The merchant credentials in force: whether the simulator stands in for WeChat, the demo
//! merchant and the simulator's URLs in that mode, real credentials and production hosts
//! otherwise.

use std::path::PathBuf;

use super::mini_program::{MiniProgramSettings, is_appid};
use super::urls::validate_base;
use super::v3::{ApiVersion, V3Settings};
use super::{ConfigError, RawSettings, Secret, invalid};
use crate::wxpay::demo::{
    DEMO_API_KEY, DEMO_APIV3_KEY, DEMO_APP_SECRET, DEMO_APPID, DEMO_MCH_ID, DEMO_MINIPROGRAM_APPID,
    DEMO_MINIPROGRAM_SECRET,
};
use crate::wxpay::{ApiKey, SignType};

/// The merchant credentials in force, real or the simulator's.
#[derive(Debug, Clone)]
pub struct WechatSettings {
    pub appid: String,
    pub app_secret: Secret,
    pub mch_id: String,
    pub api_key: ApiKey,
    pub sign_type: SignType,
    pub api_base: String,
    pub api_backup_base: Option<String>,
    pub open_base: String,
    pub sns_base: String,
    pub cert_pem: Option<PathBuf>,
    pub key_pem: Option<PathBuf>,
    pub cert_p12: Option<PathBuf>,
    /// The Mini Program bound to the merchant, when payments are taken for one.
    pub mini_program: Option<MiniProgramSettings>,
    /// `WECHAT_API_VERSION`: v2 (the default) or v3.
    pub api_version: ApiVersion,
    /// The v3 credentials, present exactly when `api_version` is v3.
    pub v3: Option<V3Settings>,
}

/// The one message for a server that would have to guess: no credentials and not on loopback.
pub(super) const NO_CREDENTIALS: &str = "no WeChat Pay credentials are set and the server is not on a loopback address: \
set WECHAT_APPID, WECHAT_MCH_ID, WECHAT_API_KEY and WECHAT_APP_SECRET to take real payments, or SIMULATOR=on to \
serve the simulator on purpose (no real money moves, and anyone can mark an order paid)";

/// Whether the simulator stands in for WeChat.
///
/// `SIMULATOR=on` asks for it, and is refused beside real credentials: a real merchant must
/// never be mounted next to a fake WeChat that anyone can drive. `off` never. Unset (or `auto`),
/// it switches on by itself only for a demo nobody else can reach: no credential given, the
/// server listening on a loopback address and `PUBLIC_BASE_URL` on loopback. On any other
/// address an unset mode with no credentials refuses to start, since an env file that failed to
/// load must not turn production into a simulator.
pub(super) fn simulator_mode(raw: &RawSettings, public_base_url: &str) -> Result<bool, ConfigError> {
    match raw.simulator.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("auto") if credentials_given(raw) => Ok(false),
        None | Some("") | Some("auto") if listens_on_loopback(raw) && is_loopback_url(public_base_url) => Ok(true),
        None | Some("") | Some("auto") => Err(invalid("SIMULATOR", NO_CREDENTIALS)),
        Some("on" | "true" | "1" | "yes") => match real_credential(raw) {
            Some(var) => Err(invalid(
                "SIMULATOR",
                format!(
                    "SIMULATOR=on cannot be combined with real credentials ({var} is set): remove them, or set SIMULATOR=off"
                ),
            )),
            None => Ok(true),
        },
        Some("off" | "false" | "0" | "no") => Ok(false),
        Some(other) => Err(invalid("SIMULATOR", format!("must be on or off, not {other:?}"))),
    }
}

fn credentials_given(raw: &RawSettings) -> bool {
    raw.wechat_appid.is_some()
        || raw.wechat_mch_id.is_some()
        || raw.wechat_api_key.is_some()
        || raw.wechat_app_secret.is_some()
        || raw.wechat_miniprogram_appid.is_some()
        || raw.wechat_miniprogram_secret.is_some()
        || raw.wechat_apiv3_key.is_some()
        || raw.wechat_mch_private_key.is_some()
        || raw.wechat_mch_serial_no.is_some()
}

/// The first credential that is set to something other than the simulator's public demo value.
fn real_credential(raw: &RawSettings) -> Option<&'static str> {
    let differs = |given: Option<&str>, demo: &str| given.is_some_and(|v| v != demo);
    [
        ("WECHAT_APPID", differs(raw.wechat_appid.as_deref(), DEMO_APPID)),
        ("WECHAT_MCH_ID", differs(raw.wechat_mch_id.as_deref(), DEMO_MCH_ID)),
        ("WECHAT_API_KEY", differs(raw.wechat_api_key.as_ref().map(Secret::expose), DEMO_API_KEY)),
        ("WECHAT_APP_SECRET", differs(raw.wechat_app_secret.as_ref().map(Secret::expose), DEMO_APP_SECRET)),
        ("WECHAT_MINIPROGRAM_APPID", differs(raw.wechat_miniprogram_appid.as_deref(), DEMO_MINIPROGRAM_APPID)),
        (
            "WECHAT_MINIPROGRAM_SECRET",
            differs(raw.wechat_miniprogram_secret.as_ref().map(Secret::expose), DEMO_MINIPROGRAM_SECRET),
        ),
        ("WECHAT_APIV3_KEY", differs(raw.wechat_apiv3_key.as_ref().map(Secret::expose), DEMO_APIV3_KEY)),
        // The demo merchant's key is made at first start and never configured.
        ("WECHAT_MCH_PRIVATE_KEY", raw.wechat_mch_private_key.is_some()),
        ("WECHAT_MCH_SERIAL_NO", raw.wechat_mch_serial_no.is_some()),
    ]
    .into_iter()
    .find_map(|(var, real)| real.then_some(var))
}

/// Rocket's listen address (its default is 127.0.0.1) is a loopback address.
fn listens_on_loopback(raw: &RawSettings) -> bool {
    match raw.address.as_deref() {
        None => true,
        Some(a) => a.trim().parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
    }
}

/// The URL's host is a loopback address or `localhost`.
fn is_loopback_url(base: &str) -> bool {
    match url::Url::parse(base).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl WechatSettings {
    /// The settings for `simulator` mode or real credentials, with every base URL checked.
    pub(super) fn from_raw(
        raw: &RawSettings,
        simulator: bool,
        public_base_url: &str,
    ) -> Result<WechatSettings, ConfigError> {
        let sign_type = SignType::parse(&raw.wechat_sign_type)
            .ok_or_else(|| invalid("WECHAT_SIGN_TYPE", "must be MD5 or HMAC-SHA256"))?;
        let api_version = ApiVersion::from_raw(raw)?;
        let v3 = match api_version {
            ApiVersion::V2 => None,
            ApiVersion::V3 => Some(V3Settings::from_raw(raw, simulator)?),
        };
        let wechat = if simulator {
            Self::simulated(raw, sign_type, public_base_url)?
        } else {
            Self::real(raw, sign_type, v3.as_ref())?
        };
        let mut wechat = WechatSettings { api_version, v3, ..wechat.with_checked_bases()? };
        if wechat.cert_pem.is_some() != wechat.key_pem.is_some() {
            return Err(invalid("WECHAT_CERT_PEM", "WECHAT_CERT_PEM and WECHAT_KEY_PEM go together"));
        }
        wechat.mini_program = MiniProgramSettings::from_raw(raw, simulator, &wechat.appid)?;
        Ok(wechat)
    }

    /// Simulator mode: what is given is used, the demo merchant and the simulator mounted under
    /// our own base URL fill in the rest.
    fn simulated(raw: &RawSettings, sign_type: SignType, public_base_url: &str) -> Result<WechatSettings, ConfigError> {
        let sim_base = format!("{public_base_url}/simulator");
        Ok(WechatSettings {
            appid: raw.wechat_appid.clone().unwrap_or_else(|| DEMO_APPID.into()),
            app_secret: raw.wechat_app_secret.clone().unwrap_or_else(|| Secret::new(DEMO_APP_SECRET)),
            mch_id: raw.wechat_mch_id.clone().unwrap_or_else(|| DEMO_MCH_ID.into()),
            api_key: ApiKey::new(raw.wechat_api_key.as_ref().map_or(DEMO_API_KEY, Secret::expose))
                .map_err(|e| invalid("WECHAT_API_KEY", e.to_string()))?,
            sign_type,
            api_base: raw.wechat_api_base.clone().unwrap_or_else(|| sim_base.clone()),
            api_backup_base: raw.wechat_api_backup_base.clone(),
            open_base: raw.wechat_open_base.clone().unwrap_or_else(|| sim_base.clone()),
            sns_base: raw.wechat_sns_base.clone().unwrap_or(sim_base),
            cert_pem: raw.wechat_cert_pem.clone(),
            key_pem: raw.wechat_key_pem.clone(),
            cert_p12: raw.wechat_cert_p12.clone(),
            mini_program: None,
            api_version: ApiVersion::V2,
            v3: None,
        })
    }

    /// Real mode: every credential is required and must look right, and WeChat's production
    /// hosts are the default.
    fn real(raw: &RawSettings, sign_type: SignType, v3: Option<&V3Settings>) -> Result<WechatSettings, ConfigError> {
        let Credentials { appid, mch_id, app_secret, api_key } = Credentials::checked(raw, v3)?;
        let (api_base, backup) = match &raw.wechat_api_base {
            Some(base) => (base.clone(), raw.wechat_api_backup_base.clone()),
            None => (
                crate::wxpay::client::PRODUCTION_BASE.to_owned(),
                raw.wechat_api_backup_base.clone().or_else(|| Some(crate::wxpay::client::BACKUP_BASE.to_owned())),
            ),
        };
        Ok(WechatSettings {
            appid,
            app_secret,
            mch_id,
            api_key,
            sign_type,
            api_base,
            api_backup_base: backup,
            open_base: raw.wechat_open_base.clone().unwrap_or_else(|| crate::wxpay::oauth::PRODUCTION_OPEN_BASE.into()),
            sns_base: raw.wechat_sns_base.clone().unwrap_or_else(|| crate::wxpay::oauth::PRODUCTION_SNS_BASE.into()),
            cert_pem: raw.wechat_cert_pem.clone(),
            key_pem: raw.wechat_key_pem.clone(),
            cert_p12: raw.wechat_cert_p12.clone(),
            mini_program: None,
            api_version: ApiVersion::V2,
            v3: None,
        })
    }

    /// The same settings with every base URL checked and its trailing slashes removed.
    fn with_checked_bases(self) -> Result<WechatSettings, ConfigError> {
        Ok(WechatSettings {
            api_base: validate_base("WECHAT_API_BASE", &self.api_base)?,
            open_base: validate_base("WECHAT_OPEN_BASE", &self.open_base)?,
            sns_base: validate_base("WECHAT_SNS_BASE", &self.sns_base)?,
            api_backup_base: match self.api_backup_base {
                Some(b) => Some(validate_base("WECHAT_API_BACKUP_BASE", &b)?),
                None => None,
            },
            ..self
        })
    }
}

/// The four credentials real mode requires.
struct Credentials {
    appid: String,
    mch_id: String,
    app_secret: Secret,
    api_key: ApiKey,
}

impl Credentials {
    /// appid, mch_id, AppSecret and API key, each required and checked in that order. Under v3
    /// the APIv2 key is optional: without it, the key that signs OAuth states (its one other use)
    /// is derived from the APIv3 key.
    fn checked(raw: &RawSettings, v3: Option<&V3Settings>) -> Result<Credentials, ConfigError> {
        let appid = raw.wechat_appid.clone().ok_or(ConfigError::Missing { var: "WECHAT_APPID" })?;
        if !is_appid(&appid) {
            return Err(invalid("WECHAT_APPID", "must look like wx followed by 16 letters or digits"));
        }
        let mch_id = raw.wechat_mch_id.clone().ok_or(ConfigError::Missing { var: "WECHAT_MCH_ID" })?;
        if mch_id.is_empty() || mch_id.len() > 32 || !mch_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("WECHAT_MCH_ID", "must be the numeric merchant id"));
        }
        let app_secret = raw.wechat_app_secret.clone().ok_or(ConfigError::Missing { var: "WECHAT_APP_SECRET" })?;
        if app_secret.expose().len() != 32 || !app_secret.expose().bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid("WECHAT_APP_SECRET", "must be the 32-character Official Account AppSecret"));
        }
        let api_key = match (&raw.wechat_api_key, v3) {
            (None, Some(v3)) => v3.derived_state_key(),
            (key, _) => {
                let key = key.as_ref().ok_or(ConfigError::Missing { var: "WECHAT_API_KEY" })?;
                ApiKey::new(key.expose()).map_err(|e| invalid("WECHAT_API_KEY", e.to_string()))?
            }
        };
        if api_key.expose() == app_secret.expose() {
            return Err(invalid("WECHAT_API_KEY", "is the AppSecret; the APIv2 key is a different 32-character key"));
        }
        Ok(Credentials { appid, mch_id, app_secret, api_key })
    }
}
