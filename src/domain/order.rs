//! The order state machine: `CREATED → PAYING → PAID | CLOSED | PAYERROR`.
//!
//! Every change, whether it comes from a notify, an `orderquery`, a `closeorder` or later a bill
//! row, is an [`Event`] fed to [`transition`]; its [`Transition`] is then applied by one guarded
//! UPDATE whose `WHERE state = <from>` makes concurrent applications safe.

use std::fmt;

/// Where an order stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderState {
    /// Created by the merchant; no prepay yet.
    Created,
    /// A prepay was issued; the shopper may be paying.
    Paying,
    /// WeChat confirmed the payment.
    Paid,
    /// Closed (expired, cancelled, or closed at WeChat). A payment may still arrive: see
    /// [`Transition::paid_after_close`].
    Closed,
    /// WeChat reported the payment failed; the shopper may try again.
    PayError,
}

impl OrderState {
    pub const ALL: [OrderState; 5] =
        [OrderState::Created, OrderState::Paying, OrderState::Paid, OrderState::Closed, OrderState::PayError];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Created => "CREATED",
            OrderState::Paying => "PAYING",
            OrderState::Paid => "PAID",
            OrderState::Closed => "CLOSED",
            OrderState::PayError => "PAYERROR",
        }
    }

    pub fn parse(s: &str) -> Option<OrderState> {
        OrderState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the shopper can still pay this order.
    pub fn is_payable(self) -> bool {
        matches!(self, OrderState::Created | OrderState::Paying | OrderState::PayError)
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which truth source confirmed a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentSource {
    Notify,
    Query,
    Bill,
}

impl PaymentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentSource::Notify => "notify",
            PaymentSource::Query => "query",
            PaymentSource::Bill => "bill",
        }
    }
}

/// Something that happened to an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `unifiedorder` returned a prepay (new or renewed).
    PrepayIssued,
    /// A verified source says the order is paid with this WeChat transaction. Amounts were
    /// checked before the event was made.
    PaymentConfirmed { transaction_id: String, source: PaymentSource },
    /// WeChat says the payment failed (`trade_state=PAYERROR`).
    PaymentFailed,
    /// The order is closed: `closeorder` succeeded, WeChat reports CLOSED, or it never reached
    /// WeChat and expired.
    Closed,
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::PrepayIssued => "prepay_issued",
            Event::PaymentConfirmed { .. } => "payment_confirmed",
            Event::PaymentFailed => "payment_failed",
            Event::Closed => "closed",
        }
    }
}

/// The change an event makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: OrderState,
    pub to: OrderState,
    /// Real money arrived for an order we had closed: record it and raise an exception.
    pub paid_after_close: bool,
}

/// Why an event changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Already in the state the event leads to (a duplicate notify, a repeated query).
    AlreadyDone,
    /// A second, different transaction for a paid order: a double payment to investigate.
    ConflictingPayment { recorded: String, received: String },
    /// The event cannot happen in this state (closing a paid order, a prepay on a closed one).
    NotAllowed { state: OrderState, event: &'static str },
}

/// The transition function. `recorded_transaction` is the transaction id stored on the order,
/// if any.
pub fn transition(
    state: OrderState,
    recorded_transaction: Option<&str>,
    event: &Event,
) -> Result<Transition, Rejection> {
    use OrderState::*;
    let to = |to: OrderState| Ok(Transition { from: state, to, paid_after_close: false });
    let not_allowed = || Err(Rejection::NotAllowed { state, event: event.kind() });
    match (state, event) {
        (Created | Paying | PayError, Event::PrepayIssued) => to(Paying),
        (Paid | Closed, Event::PrepayIssued) => not_allowed(),

        (Created | Paying | PayError, Event::PaymentConfirmed { .. }) => to(Paid),
        (Closed, Event::PaymentConfirmed { .. }) => Ok(Transition { from: Closed, to: Paid, paid_after_close: true }),
        (Paid, Event::PaymentConfirmed { transaction_id, .. }) => match recorded_transaction {
            Some(recorded) if recorded != transaction_id => {
                Err(Rejection::ConflictingPayment { recorded: recorded.to_owned(), received: transaction_id.clone() })
            }
            _ => Err(Rejection::AlreadyDone),
        },

        (Paying, Event::PaymentFailed) => to(PayError),
        (PayError, Event::PaymentFailed) => Err(Rejection::AlreadyDone),
        (Created | Paid | Closed, Event::PaymentFailed) => not_allowed(),

        (Created | Paying | PayError, Event::Closed) => to(Closed),
        (Closed, Event::Closed) => Err(Rejection::AlreadyDone),
        (Paid, Event::Closed) => not_allowed(),
    }
}

#[cfg(test)]
mod tests {
    use super::OrderState::*;
    use super::*;

    fn confirmed(id: &str) -> Event {
        Event::PaymentConfirmed { transaction_id: id.into(), source: PaymentSource::Notify }
    }

    /// Every (state, event) pair and its expected outcome: `Ok(to)`, or the rejection.
    #[test]
    fn every_state_and_event() {
        #[derive(Debug)]
        enum Want {
            To(OrderState),
            PaidAfterClose,
            Done,
            NotAllowed,
        }
        use Want::*;
        let events = [Event::PrepayIssued, confirmed("T1"), Event::PaymentFailed, Event::Closed];
        let table: [(OrderState, [Want; 4]); 5] = [
            (Created, [To(Paying), To(Paid), NotAllowed, To(Closed)]),
            (Paying, [To(Paying), To(Paid), To(PayError), To(Closed)]),
            (Paid, [NotAllowed, Done, NotAllowed, NotAllowed]),
            (Closed, [NotAllowed, PaidAfterClose, NotAllowed, Done]),
            (PayError, [To(Paying), To(Paid), Done, To(Closed)]),
        ];
        for (state, wants) in table {
            for (event, want) in events.iter().zip(wants) {
                let got = transition(state, Some("T1").filter(|_| state == Paid), event);
                let ok = match (&want, &got) {
                    (To(to), Ok(t)) => t.to == *to && t.from == state && !t.paid_after_close,
                    (PaidAfterClose, Ok(t)) => t.to == Paid && t.paid_after_close,
                    (Done, Err(Rejection::AlreadyDone)) => true,
                    (NotAllowed, Err(Rejection::NotAllowed { state: s, .. })) => *s == state,
                    _ => false,
                };
                assert!(ok, "{state} + {event:?}: wanted {want:?}, got {got:?}");
            }
        }
    }

    #[test]
    fn a_second_transaction_on_a_paid_order_is_a_conflict() {
        assert_eq!(
            transition(Paid, Some("T1"), &confirmed("T2")),
            Err(Rejection::ConflictingPayment { recorded: "T1".into(), received: "T2".into() })
        );
        assert_eq!(transition(Paid, Some("T1"), &confirmed("T1")), Err(Rejection::AlreadyDone));
    }

    #[test]
    fn states_round_trip() {
        for s in OrderState::ALL {
            assert_eq!(OrderState::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderState::parse("paid"), None);
        assert!(PayError.is_payable() && !Closed.is_payable() && !Paid.is_payable());
    }
}
