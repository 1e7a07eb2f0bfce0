//! Use cases: create an order, issue the JSAPI parameters, apply notifies and query results.
//! Handlers call these; these call `db/` for storage and `wxpay/` for WeChat.

pub mod apply;
pub mod close;
pub mod create;
pub mod notify;
pub mod notify_writer;
pub mod prepay;
pub mod query;
pub mod refund;
pub mod refund_notify;

use std::sync::Arc;

use crate::config::AppConfig;
use crate::db::Db;
use crate::wxpay::{Merchant, PayGateway};

/// Everything the use cases need, shared by all requests.
#[derive(Clone)]
pub struct Payments {
    pub db: Db,
    pub gateway: Arc<dyn PayGateway>,
    pub merchant: Merchant,
    pub config: Arc<AppConfig>,
    pub notify_writer: notify_writer::NotifyWriter,
}
