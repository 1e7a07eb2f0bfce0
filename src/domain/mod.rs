//! The pure core: order states and the one transition function every state change goes
//! through, money, and identifiers. No I/O.

pub mod ids;
pub mod order;

pub use crate::wxpay::money::Fen;
pub use order::{Event, OrderState, PaymentSource, Rejection, Transition, transition};
