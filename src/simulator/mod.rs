//! A faithful WeChat Pay simulator, served over HTTP: the v2 XML API (unifiedorder,
//! orderquery, closeorder, refund, refundquery, downloadbill) and, over the same state and rules,
//! the v3 JSON API (JSAPI prepay, query, close, refund, certificates, trade bill; see `v3`),
//! Official Account OAuth, Mini Program sign-in (`jscode2session`, with a control endpoint
//! playing `wx.login`), the JSAPI bridge with a pay sheet, payment and refund notifies with
//! WeChat's retry schedule, and fault injection. It is a test double that never accepts what
//! WeChat would refuse.
//!
//! Use it standalone (`wechat-checkout simulator`, see [`run_standalone`]), mounted inside a
//! Rocket ([`mount`]), or launched on a free port by tests ([`launch`]).
//!
//! Choices where WeChat's documentation is silent are documented in the module that makes them:
//! closeorder's 5-minute rule (`api::query`), refund certificate checks (`api::routes`), what
//! counts against a refundable total (`api::refund`), the bridge's wording (`bridge`), and the v3
//! statuses the reference leaves open (`v3::orders`, `v3::refunds`, `v3::bills`).

pub mod bill_text;

mod api;
mod bridge;
mod cli;
mod config;
mod control;
mod faults;
mod ids;
mod mini_program;
mod model;
mod notify;
mod notify_body;
mod oauth;
mod server;
mod shopper;
mod sim;
mod state;
mod v3;
mod web;

use serde::Serialize;
use thiserror::Error;

/// The demo merchant the simulator knows by default (defined with the protocol, where the
/// configuration can reach it too).
pub use crate::wxpay::demo::{DEMO_API_KEY, DEMO_APP_SECRET, DEMO_APPID, DEMO_MCH_ID};
pub use cli::{SimulatorArgs, run_standalone};
pub use config::{Faults, SimMerchant, SimV3Merchant, SimulatorConfig, TlsOptions};
pub use model::{ApiVersion, NotifyAttempt, NotifyStatus, RefundView, SimOrderView, SimRefundStatus};
pub use notify::RETRY_SCHEDULE;
pub use server::{OWN_BASE, SimulatorHandle, launch, mount};
pub use shopper::{Outcome, PayResult};
pub use sim::Simulator;
pub use v3::V3PlatformInfo;

/// Why the simulator could not start.
#[derive(Debug, Error)]
pub enum SimulatorError {
    #[error("simulator configuration: {0}")]
    Config(String),
    #[error("simulator state: {0}")]
    State(String),
    #[error("simulator server: {0}")]
    Launch(String),
}

/// Why a shopper action or a forced refund outcome was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize)]
pub enum SimError {
    #[error("unknown prepay_id")]
    UnknownPrepay,
    #[error("the prepay_id has expired (2 hours) or was replaced, or the order's time_expire has passed")]
    PrepayExpired,
    #[error("the order is closed")]
    OrderClosed,
    #[error("the order is already paid")]
    AlreadyPaid,
    #[error("unknown out_refund_no")]
    UnknownRefund,
    #[error("a refund cannot be set to {0}")]
    UnsupportedStatus(String),
}

impl SimError {
    /// The HTTP status of the shopper and control routes for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            SimError::UnknownPrepay | SimError::UnknownRefund => 404,
            SimError::PrepayExpired => 410,
            SimError::OrderClosed | SimError::AlreadyPaid => 409,
            SimError::UnsupportedStatus(_) => 400,
        }
    }

    /// A stable machine-readable name.
    pub fn code(&self) -> &'static str {
        match self {
            SimError::UnknownPrepay => "UNKNOWN_PREPAY",
            SimError::PrepayExpired => "PREPAY_EXPIRED",
            SimError::OrderClosed => "ORDER_CLOSED",
            SimError::AlreadyPaid => "ALREADY_PAID",
            SimError::UnknownRefund => "UNKNOWN_REFUND",
            SimError::UnsupportedStatus(_) => "UNSUPPORTED_STATUS",
        }
    }
}
