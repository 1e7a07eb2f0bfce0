//! The pure core: the entities every layer shares (orders, refunds, staff, webhook events, the
//! records we keep), the rules a page and a job both need, the two state machines (an order's
//! and a refund's, each one transition function with a table test), and the typed vocabularies
//! that cross layers. No I/O: nothing here reads a clock, a database or the network; times come
//! in as arguments.

pub mod address;
pub mod figures;
pub mod ids;
pub mod listing;
pub mod order;
pub mod reconciliation;
pub mod records;
pub mod refund;
pub mod staff;
pub mod vocab;
pub mod webhook;

pub use crate::wxpay::money::Fen;
pub use order::{ClosePath, Event, Order, OrderState, PaymentFacts, PaymentSource, Rejection, Transition, transition};
pub use records::Actor;
pub use refund::{Refund, RefundState};
pub use staff::{Permission, Role, StaffUser};
pub use vocab::{
    ApiScope, AuditAction, ExceptionKind, NotifyKind, NotifyVerdict, PaymentApp, TimelineKind, TimelineSource,
};
