//! WeChat Pay API v3 over the same state as v2 (orders, payments, refunds, bills): a protocol
//! layer that checks a request as WeChat does (`auth`), reads its JSON strictly (`request`),
//! runs the shared business operation (`crate::simulator::api`'s protocol-neutral functions) and
//! answers v3 JSON with v3 codes and HTTP statuses, signed by the simulator's platform identity
//! (`platform`, `answer`). Orders and refunds created through v3 get v3 notifies (`notify`); the
//! fake bridge checks their RSA `paySign`.

mod answer;
mod auth;
mod bills;
mod notify;
mod orders;
mod platform;
mod refunds;
mod request;
mod routes;

pub(crate) use bills::BillFile;
pub(crate) use notify::{payment_envelope, refund_envelope, sign_notify};
pub use platform::V3PlatformInfo;
pub(crate) use platform::{PersistedPlatform, Platform};
pub(crate) use routes::{control_routes, routes};
