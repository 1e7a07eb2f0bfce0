//! The merchant credentials in force: whether the simulator stands in for WeChat, the demo
//! merchant and the simulator's URLs in that mode, real credentials and production hosts
//! otherwise.

use std::path::PathBuf;

use super::urls::validate_base;
use super::{ConfigError, RawSettings, Secret, invalid};
use crate::wxpay::demo::{DEMO_API_KEY, DEMO_APP_SECRET, DEMO_APPID, DEMO_MCH_ID};
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
}

/// Whether the simulator stands in for WeChat: as `SIMULATOR` says, or, when it says `auto` or
/// nothing, exactly when no credential is given.
pub(super) fn simulator_mode(raw: &RawSettings) -> Result<bool, ConfigError> {
    let credentials_given = raw.wechat_appid.is_some()
        || raw.wechat_mch_id.is_some()
        || raw.wechat_api_key.is_some()
        || raw.wechat_app_secret.is_some();
    match raw.simulator.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("auto") => Ok(!credentials_given),
        Some("on" | "true" | "1" | "yes") => Ok(true),
        Some("off" | "false" | "0" | "no") => Ok(false),
        Some(other) => Err(invalid("SIMULATOR", format!("must be on or off, not {other:?}"))),
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
        let wechat =
            if simulator { Self::simulated(raw, sign_type, public_base_url)? } else { Self::real(raw, sign_type)? };
        let wechat = wechat.with_checked_bases()?;
        if wechat.cert_pem.is_some() != wechat.key_pem.is_some() {
            return Err(invalid("WECHAT_CERT_PEM", "WECHAT_CERT_PEM and WECHAT_KEY_PEM go together"));
        }
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
        })
    }

    /// Real mode: every credential is required and must look right, and WeChat's production
    /// hosts are the default.
    fn real(raw: &RawSettings, sign_type: SignType) -> Result<WechatSettings, ConfigError> {
        let Credentials { appid, mch_id, app_secret, api_key } = Credentials::checked(raw)?;
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
    /// appid, mch_id, AppSecret and API key, each required and checked in that order.
    fn checked(raw: &RawSettings) -> Result<Credentials, ConfigError> {
        let appid = raw.wechat_appid.clone().ok_or(ConfigError::Missing { var: "WECHAT_APPID" })?;
        if !appid.starts_with("wx") || appid.len() != 18 || !appid.bytes().all(|b| b.is_ascii_alphanumeric()) {
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
        let api_key = raw.wechat_api_key.as_ref().ok_or(ConfigError::Missing { var: "WECHAT_API_KEY" })?;
        let api_key = ApiKey::new(api_key.expose()).map_err(|e| invalid("WECHAT_API_KEY", e.to_string()))?;
        if api_key.expose() == app_secret.expose() {
            return Err(invalid("WECHAT_API_KEY", "is the AppSecret; the APIv2 key is a different 32-character key"));
        }
        Ok(Credentials { appid, mch_id, app_secret, api_key })
    }
}
