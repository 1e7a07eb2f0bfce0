//! WeChat Pay API v3 (JSON, RSA-SHA256 signatures, AES-256-GCM notifies): the protocol and
//! nothing else, behind the same [`PayGateway`](super::PayGateway) seam as v2.

pub mod aead;
pub mod authorization;
pub mod bill_download;
pub mod certificate_refresh;
pub mod certificates;
pub mod client;
pub mod convert;
pub mod errors;
pub mod jsapi;
pub mod keys;
pub mod models;
pub mod notify;
pub mod platform_keys;
pub mod verify;

pub use aead::ApiV3Key;
pub use authorization::RequestSigner;
pub use keys::{MerchantKey, VerifyingKey};
