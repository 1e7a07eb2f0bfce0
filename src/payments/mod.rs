//! Use cases of the money: create an order, issue the JSAPI parameters, apply notifies and query
//! results, close, refund, reconcile, and what the console reads about them. Handlers and jobs
//! call these; these call `db/` for storage and `wxpay/` for WeChat. Every state change is one
//! function that does its writes, its audit row and its outbox event in one transaction.

pub mod alerts;
pub mod apply;
pub mod apply_batch;
pub mod certificate_cache;
pub mod close;
pub mod console;
pub mod create;
pub mod idempotency;
pub mod liveness;
pub mod merchant_reads;
pub mod mini_program;
pub mod notify;
pub mod notify_v3;
pub mod notify_writer;
pub mod order_view;
pub mod outbox;
pub mod prepay;
pub mod query;
pub mod readiness;
pub mod reconcile;
pub mod refund;
pub mod refund_notify;
pub mod refused;
pub mod shopper;
pub mod staff_actions;
pub mod webhook_address;

use std::sync::Arc;

use crate::config::AppConfig;
use crate::db::Db;
use crate::domain::PaymentApp;
use crate::wxpay::notify::NotifyError;
use crate::wxpay::v3::client::V3PayGateway;
use crate::wxpay::{Merchant, PayGateway};

/// How long a claimed row stays ours: longer than any single piece of work (a WeChat call with its
/// retries), short enough that a crashed instance's rows are picked up soon. Jobs claim orders,
/// refunds and webhook events for this long; a reconciliation run renews it while it lasts.
pub const LEASE: chrono::Duration = chrono::Duration::seconds(60);

/// Everything the use cases need, shared by all requests.
#[derive(Clone)]
pub struct Payments {
    pub db: Db,
    pub gateway: Arc<dyn PayGateway>,
    pub merchant: Merchant,
    pub config: Arc<AppConfig>,
    pub notify_writer: notify_writer::NotifyWriter,
    pub outbox: outbox::WebhookOutbox,
    /// When this process last asked WeChat for a status poll (kept in memory: polls write nothing).
    pub query_throttle: Arc<query::QueryThrottle>,
    /// Rate limits and counters of refused notify deliveries, for this process.
    pub refused: Arc<refused::RefusedGate>,
    /// Heartbeats of the notify writer threads and the background jobs, for `/readyz`.
    pub liveness: Arc<liveness::Liveness>,
    /// The v3 client, when the merchant is on API v3 (`gateway` is then the same client): it
    /// verifies v3 notifies and signs the RSA `paySign`.
    pub v3: Option<Arc<V3PayGateway>>,
}

impl Payments {
    /// Assembles the use cases and starts the notify writer on `db`.
    pub fn new(db: Db, gateway: Arc<dyn PayGateway>, merchant: Merchant, config: Arc<AppConfig>) -> Payments {
        let outbox = outbox::WebhookOutbox::new(config.clone());
        let liveness = Arc::new(liveness::Liveness::default());
        let notify_writer = notify_writer::NotifyWriter::start(db.clone(), outbox.clone(), &liveness);
        let query_throttle = Arc::new(query::QueryThrottle::default());
        let refused = Arc::new(refused::RefusedGate::default());
        Payments { db, gateway, merchant, config, notify_writer, outbox, query_throttle, refused, liveness, v3: None }
    }

    /// The same use cases on API v3: `v3` becomes the gateway too.
    pub fn with_v3(self, v3: Arc<V3PayGateway>) -> Payments {
        Payments { gateway: v3.clone(), v3: Some(v3), ..self }
    }

    /// Parses a notify addressed to one of our apps: the Official Account's appid, or the Mini
    /// Program's (a payment made in the Mini Program is notified under its appid; same mch_id,
    /// same key). Any other appid stays a foreign merchant.
    pub(crate) fn parse_for_our_apps<T>(
        &self,
        body: &[u8],
        parse: impl Fn(&[u8], &Merchant) -> Result<T, NotifyError>,
    ) -> Result<T, NotifyError> {
        match parse(body, &self.merchant) {
            Err(NotifyError::ForeignMerchant { field: "appid", got }) => {
                match self.merchant_for(PaymentApp::MiniProgram) {
                    Ok(mini) if mini.appid == got => parse(body, &mini),
                    _ => Err(NotifyError::ForeignMerchant { field: "appid", got }),
                }
            }
            other => other,
        }
    }

    /// Whether the database answers and takes writes, for the health endpoint. The detail is
    /// logged here; the endpoint (public) tells only which of the two fails.
    pub async fn check_database(&self) -> Result<(), DatabaseDown> {
        use crate::db::health::Health;
        match self.db.health().await {
            Health::Ok => Ok(()),
            Health::Unreachable(detail) => {
                tracing::warn!(%detail, "health check: the database is unreachable");
                Err(DatabaseDown::Unreachable)
            }
            Health::WritesFailing(detail) => {
                tracing::warn!(%detail, "health check: the database answers but refuses writes");
                Err(DatabaseDown::WritesFailing)
            }
        }
    }
}

/// Why the database is not healthy. While it is, payment notifies are answered FAIL (WeChat
/// retries them) and pages that need it answer 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseDown {
    /// No connection within the health check's wait, or `SELECT 1` failed.
    Unreachable,
    /// It answers, but writes fail (a full disk, an I/O error, a read-only database).
    WritesFailing,
}

impl DatabaseDown {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseDown::Unreachable => "unreachable",
            DatabaseDown::WritesFailing => "writes_failing",
        }
    }
}
