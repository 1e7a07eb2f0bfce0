//! The Mini Program the checkout takes payments for (`WECHAT_MINIPROGRAM_APPID` and
//! `WECHAT_MINIPROGRAM_SECRET`): both or neither. In simulator mode the simulator's public demo
//! Mini Program stands in when neither is given; with real credentials it is off unless set.

use super::{ConfigError, RawSettings, Secret, invalid};
use crate::wxpay::demo::{DEMO_MINIPROGRAM_APPID, DEMO_MINIPROGRAM_SECRET};

/// A Mini Program bound to the merchant's mch_id: its appid (prepays for it are issued under
/// it) and its AppSecret (only `jscode2session` uses it).
#[derive(Debug, Clone)]
pub struct MiniProgramSettings {
    pub appid: String,
    pub secret: Secret,
}

/// WeChat appids are `wx` followed by 16 letters or digits.
pub(super) fn is_appid(s: &str) -> bool {
    s.starts_with("wx") && s.len() == 18 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl MiniProgramSettings {
    /// The Mini Program in force: the one configured, the demo one in simulator mode, or none.
    /// `official_appid` is `WECHAT_APPID` in force, which the Mini Program's must differ from.
    pub(super) fn from_raw(
        raw: &RawSettings,
        simulator: bool,
        official_appid: &str,
    ) -> Result<Option<MiniProgramSettings>, ConfigError> {
        let (appid, secret) = match (&raw.wechat_miniprogram_appid, &raw.wechat_miniprogram_secret) {
            (None, None) if simulator => {
                return Ok(Some(MiniProgramSettings {
                    appid: DEMO_MINIPROGRAM_APPID.into(),
                    secret: Secret::new(DEMO_MINIPROGRAM_SECRET),
                }));
            }
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(invalid(
                    "WECHAT_MINIPROGRAM_SECRET",
                    "is required with WECHAT_MINIPROGRAM_APPID (set both to take Mini Program payments, or neither)",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "WECHAT_MINIPROGRAM_APPID",
                    "is required with WECHAT_MINIPROGRAM_SECRET (set both to take Mini Program payments, or neither)",
                ));
            }
            (Some(appid), Some(secret)) => (appid, secret),
        };
        if !is_appid(appid) {
            return Err(invalid("WECHAT_MINIPROGRAM_APPID", "must look like wx followed by 16 letters or digits"));
        }
        if appid == official_appid {
            return Err(invalid(
                "WECHAT_MINIPROGRAM_APPID",
                "is WECHAT_APPID; the Mini Program has an appid of its own (its console, 开发管理 → 开发设置)",
            ));
        }
        if secret.expose().len() != 32 || !secret.expose().bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid("WECHAT_MINIPROGRAM_SECRET", "must be the Mini Program's 32-character AppSecret"));
        }
        Ok(Some(MiniProgramSettings { appid: appid.clone(), secret: secret.clone() }))
    }
}
