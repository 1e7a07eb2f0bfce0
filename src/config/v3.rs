//! API v3 settings (`WECHAT_API_VERSION=v3`): the APIv3 key, the merchant API private key and its
//! certificate's serial, and how WeChat is verified (the WeChat Pay public key with its ID, or
//! platform certificates downloaded from WeChat). In simulator mode the demo merchant's key pair
//! is made at first start and kept in `data/`.

use std::sync::Arc;

use super::{ConfigError, RawSettings, Secret, invalid};
use crate::wxpay::demo::{DEMO_APIV3_KEY, DEMO_V3_KEY_PATH};
use crate::wxpay::v3::{ApiV3Key, MerchantKey, VerifyingKey};

/// Which WeChat Pay API the merchant is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    V2,
    V3,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V2 => "v2",
            ApiVersion::V3 => "v3",
        }
    }

    pub(super) fn from_raw(raw: &RawSettings) -> Result<ApiVersion, ConfigError> {
        match raw.wechat_api_version.trim().to_ascii_lowercase().as_str() {
            "" | "v2" | "2" => Ok(ApiVersion::V2),
            "v3" | "3" => Ok(ApiVersion::V3),
            other => Err(invalid("WECHAT_API_VERSION", format!("must be v2 or v3, not {other:?}"))),
        }
    }
}

/// How WeChat's answers and notifies are verified.
#[derive(Clone, Debug)]
pub enum PlatformVerification {
    /// `WECHAT_PLATFORM_PUBLIC_KEY` and `WECHAT_PLATFORM_PUBLIC_KEY_ID`.
    PublicKey { id: String, key: VerifyingKey },
    /// Neither set: platform certificates from `/v3/certificates`.
    Certificates,
}

/// The v3 credentials in force.
#[derive(Clone, Debug)]
pub struct V3Settings {
    pub apiv3_key: ApiV3Key,
    pub merchant_key: Arc<MerchantKey>,
    /// The merchant API certificate's serial, upper-case hex.
    pub merchant_serial_no: String,
    pub platform: PlatformVerification,
}

impl V3Settings {
    /// The v3 settings for `WECHAT_API_VERSION=v3`, each variable checked and named when wrong.
    pub(super) fn from_raw(raw: &RawSettings, simulator: bool) -> Result<V3Settings, ConfigError> {
        let required = |value: Option<&Secret>, var: &'static str| -> Result<String, ConfigError> {
            value.map(|s| s.expose().to_owned()).ok_or(ConfigError::Missing { var })
        };
        let apiv3_key = match &raw.wechat_apiv3_key {
            None if simulator => DEMO_APIV3_KEY.to_owned(),
            other => required(other.as_ref(), "WECHAT_APIV3_KEY")?,
        };
        let apiv3_key = ApiV3Key::new(&apiv3_key).map_err(|e| invalid("WECHAT_APIV3_KEY", e))?;
        let (merchant_key, serial) = match (&raw.wechat_mch_private_key, &raw.wechat_mch_serial_no) {
            (None, None) if simulator => {
                let key = demo_merchant_key().map_err(|e| invalid("WECHAT_MCH_PRIVATE_KEY", e))?;
                let serial = demo_serial(&key);
                (key, serial)
            }
            (key, serial) => {
                let pem = required(key.as_ref(), "WECHAT_MCH_PRIVATE_KEY")?;
                let key = MerchantKey::from_pem(&pem).map_err(|e| {
                    invalid(
                        "WECHAT_MCH_PRIVATE_KEY",
                        format!("{e} (give apiclient_key.pem, or its path in WECHAT_MCH_PRIVATE_KEY_FILE)"),
                    )
                })?;
                let serial = serial.clone().ok_or(ConfigError::Missing { var: "WECHAT_MCH_SERIAL_NO" })?;
                (key, check_serial(&serial)?)
            }
        };
        Ok(V3Settings {
            apiv3_key,
            merchant_key: Arc::new(merchant_key),
            merchant_serial_no: serial,
            platform: platform_verification(raw)?,
        })
    }
}

impl V3Settings {
    /// A 32-character key for what the APIv2 key also signs (OAuth states), derived from the
    /// APIv3 key for merchants on v3 only, who have no APIv2 key to give.
    pub fn derived_state_key(&self) -> crate::wxpay::ApiKey {
        use sha2::Digest;
        let digest =
            sha2::Sha256::digest([b"wechat-checkout state key v1:".as_slice(), self.apiv3_key.expose()].concat());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        crate::wxpay::ApiKey::new(&hex).expect("32 hex digits are a valid key")
    }
}

/// The merchant certificate serial: hex, as the merchant platform shows it (upper-cased here).
fn check_serial(serial: &str) -> Result<String, ConfigError> {
    let serial = serial.trim();
    if serial.is_empty() || serial.len() > 64 || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            "WECHAT_MCH_SERIAL_NO",
            "must be the merchant API certificate's serial number in hex (商户API证书序列号)",
        ));
    }
    Ok(serial.to_ascii_uppercase())
}

fn platform_verification(raw: &RawSettings) -> Result<PlatformVerification, ConfigError> {
    match (&raw.wechat_platform_public_key, &raw.wechat_platform_public_key_id) {
        (None, None) => Ok(PlatformVerification::Certificates),
        (Some(_), None) => Err(invalid(
            "WECHAT_PLATFORM_PUBLIC_KEY_ID",
            "is required with WECHAT_PLATFORM_PUBLIC_KEY (set both for the WeChat Pay public key, or neither for platform certificates)",
        )),
        (None, Some(_)) => Err(invalid(
            "WECHAT_PLATFORM_PUBLIC_KEY",
            "is required with WECHAT_PLATFORM_PUBLIC_KEY_ID (set both for the WeChat Pay public key, or neither for platform certificates)",
        )),
        (Some(pem), Some(id)) => {
            let digits = id.strip_prefix("PUB_KEY_ID_").unwrap_or("");
            if digits.is_empty() || digits.len() > 64 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(
                    "WECHAT_PLATFORM_PUBLIC_KEY_ID",
                    "must be PUB_KEY_ID_ followed by digits, exactly as the merchant platform shows it (keep the prefix)",
                ));
            }
            let key = VerifyingKey::from_pem(pem.expose()).map_err(|e| {
                invalid(
                    "WECHAT_PLATFORM_PUBLIC_KEY",
                    format!("{e} (give pub_key.pem, or its path in WECHAT_PLATFORM_PUBLIC_KEY_FILE)"),
                )
            })?;
            Ok(PlatformVerification::PublicKey { id: id.clone(), key })
        }
    }
}

/// The demo merchant's key: read from `data/`, or made and kept there at first start (written to
/// a temporary file and renamed, so two processes starting at once never read half a key).
fn demo_merchant_key() -> Result<MerchantKey, String> {
    let path = std::path::Path::new(DEMO_V3_KEY_PATH);
    if let Ok(pem) = std::fs::read_to_string(path) {
        return MerchantKey::from_pem(&pem)
            .map_err(|e| format!("{}: {e} (delete it to make a new one)", path.display()));
    }
    let key = MerchantKey::generate().map_err(|e| e.to_string())?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".wechat-v3-demo-key.{}.tmp", std::process::id()));
    super::write_private(&tmp, &key.to_pkcs8_pem()).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::warn!(path = %path.display(), "made the demo merchant's API v3 key pair (simulator mode)");
    Ok(key)
}

/// A stable serial for the demo key: the first 20 bytes of the SHA-256 of its public key, as a
/// certificate serial would look.
pub fn demo_serial(key: &MerchantKey) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.public_key_pem().as_bytes())[..20].iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_v3() -> RawSettings {
        RawSettings {
            wechat_api_version: "v3".into(),
            wechat_apiv3_key: Some(Secret::new("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb")),
            wechat_mch_private_key: Some(Secret::new(MerchantKey::generate().unwrap().to_pkcs8_pem())),
            wechat_mch_serial_no: Some("408b07e79b8269fec3d5d3e6ab8ed163a6a380db".into()),
            ..RawSettings::default()
        }
    }

    fn problem(raw: &RawSettings) -> String {
        V3Settings::from_raw(raw, false).unwrap_err().to_string()
    }

    #[test]
    fn a_complete_v3_merchant() {
        let v3 = V3Settings::from_raw(&raw_v3(), false).unwrap();
        assert_eq!(v3.merchant_serial_no, "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB");
        assert!(matches!(v3.platform, PlatformVerification::Certificates));
        assert_eq!(ApiVersion::from_raw(&raw_v3()).unwrap(), ApiVersion::V3);
    }

    #[test]
    fn each_problem_names_its_variable() {
        let mut raw = raw_v3();
        raw.wechat_api_version = "v4".into();
        assert!(ApiVersion::from_raw(&raw).unwrap_err().to_string().starts_with("WECHAT_API_VERSION"));
        type Change = Box<dyn Fn(&mut RawSettings)>;
        let cases: Vec<(&str, Change)> = vec![
            ("WECHAT_APIV3_KEY", Box::new(|r| r.wechat_apiv3_key = None)),
            ("WECHAT_APIV3_KEY", Box::new(|r| r.wechat_apiv3_key = Some(Secret::new("short")))),
            ("WECHAT_MCH_PRIVATE_KEY", Box::new(|r| r.wechat_mch_private_key = None)),
            (
                "WECHAT_MCH_PRIVATE_KEY",
                Box::new(|r| {
                    r.wechat_mch_private_key =
                        Some(Secret::new("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"))
                }),
            ),
            ("WECHAT_MCH_SERIAL_NO", Box::new(|r| r.wechat_mch_serial_no = None)),
            ("WECHAT_MCH_SERIAL_NO", Box::new(|r| r.wechat_mch_serial_no = Some("not hex!".into()))),
            ("WECHAT_PLATFORM_PUBLIC_KEY_ID", Box::new(|r| r.wechat_platform_public_key = Some(Secret::new("x")))),
            (
                "WECHAT_PLATFORM_PUBLIC_KEY",
                Box::new(|r| r.wechat_platform_public_key_id = Some("PUB_KEY_ID_01".into())),
            ),
            (
                "WECHAT_PLATFORM_PUBLIC_KEY_ID",
                Box::new(|r| {
                    r.wechat_platform_public_key = Some(Secret::new("x"));
                    r.wechat_platform_public_key_id = Some("0114232134912410000000000000".into());
                }),
            ),
            (
                "WECHAT_PLATFORM_PUBLIC_KEY",
                Box::new(|r| {
                    r.wechat_platform_public_key = Some(Secret::new("not a pem"));
                    r.wechat_platform_public_key_id = Some("PUB_KEY_ID_0114232134912410000000000000".into());
                }),
            ),
        ];
        for (var, change) in cases {
            let mut raw = raw_v3();
            change(&mut raw);
            let message = problem(&raw);
            assert!(message.starts_with(var), "{var}: {message}");
        }
    }

    #[test]
    fn the_public_key_mode() {
        let key = MerchantKey::generate().unwrap();
        let mut raw = raw_v3();
        raw.wechat_platform_public_key = Some(Secret::new(key.public_key_pem()));
        raw.wechat_platform_public_key_id = Some("PUB_KEY_ID_0114232134912410000000000000".into());
        let v3 = V3Settings::from_raw(&raw, false).unwrap();
        assert!(matches!(v3.platform, PlatformVerification::PublicKey { ref id, .. } if id.starts_with("PUB_KEY_ID_")));
    }
}
