//! The public demo merchant: the appid, mch_id and API key of WeChat Pay's own documentation
//! examples (its signature test vector), which the simulator plays and simulator mode uses.
//! They are published, so they are not secrets and must never be a real merchant's settings.
//!
//! They live here, at the bottom layer, because both the configuration (simulator mode's
//! defaults) and the simulator (its default merchant) need them, and neither may depend on the
//! other.

pub const DEMO_APPID: &str = "wxd930ea5d5a258f4f";
pub const DEMO_MCH_ID: &str = "10000100";
pub const DEMO_API_KEY: &str = "192006250b4c09247ec02edce69f6a2d";
/// The demo Official Account's AppSecret (only the OAuth code exchange uses it). The
/// documentation gives none, so this one is our own, and as public as the rest.
pub const DEMO_APP_SECRET: &str = "7c0b9a1f5e3d4c2b8a6f0e1d2c3b4a59";
/// The demo Mini Program bound to the demo merchant: its appid (a made-up one, shaped like
/// WeChat's) and AppSecret (only `jscode2session` uses it). Just as public as the rest.
pub const DEMO_MINIPROGRAM_APPID: &str = "wx5f1a7c3e9b2d4068";
pub const DEMO_MINIPROGRAM_SECRET: &str = "3e9d7b5a1c0f2e4d6b8a0c1e3f5d7b92";
/// The demo merchant's APIv3 key (API v3 only decrypts with it; as public as the rest).
pub const DEMO_APIV3_KEY: &str = "5e8c1d7a3f9b2e4c6a0d8f1b3e5c7a92";
/// Where the demo merchant's v3 API private key is made at first start and kept (simulator mode).
pub const DEMO_V3_KEY_PATH: &str = "data/wechat-v3-demo-merchant-key.pem";
