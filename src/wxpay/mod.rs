//! WeChat Pay for JSAPI payments, API v2 (XML, MD5 / HMAC-SHA256; the modules here) and API v3
//! (JSON, RSA-SHA256, AES-256-GCM; [`v3`]): the protocols and nothing else.
//!
//! No Rocket, no Diesel, no knowledge of our orders: this module could be published as its own
//! crate. [`PayGateway`] is the seam the rest of the product calls through, whichever version is
//! behind it.

pub mod bill;
pub mod client;
pub mod demo;
pub mod download_bill;
pub mod err_code;
pub mod error;
pub mod gateway;
pub mod jsapi;
pub mod merchant;
pub mod mini_program;
pub mod money;
pub mod nonce;
pub mod notify;
pub mod oauth;
pub mod order_query;
pub mod refund;
pub mod refund_notify;
pub mod reply;
pub mod sign;
pub mod time;
pub mod tls;
pub mod transport;
pub mod types;
pub mod unified_order;
pub mod v3;
pub mod xml;

pub use client::{GatewayConfig, HttpPayGateway};
pub use err_code::{ErrAction, ErrCode};
pub use error::WxError;
pub use gateway::PayGateway;
pub use merchant::Merchant;
pub use money::Fen;
pub use sign::{ApiKey, SignType};
pub use xml::Fields;
