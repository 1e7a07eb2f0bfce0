//! The order state machine: `CREATED → PAYING → PAID | CLOSED | PAYERROR`.
//!
//! Every change, whether it comes from a notify, an `orderquery` (the reconciler's included) or a
//! `closeorder`, is an [`Event`] fed to [`transition`]; its [`Transition`] is then applied by one
//! guarded UPDATE whose `WHERE state = <from>` makes concurrent applications safe. A payment
//! event carries its [`PaymentFacts`], and the amount check is part of the transition, so no
//! caller can record a payment without it.

use crate::domain::vocab::string_enum;

use chrono::{DateTime, Utc};

use super::Order;
use crate::domain::vocab::{TimelineKind, TimelineSource};
use crate::wxpay::money::Fen;

string_enum! {
    /// Where an order stands.
    pub enum OrderState {
        /// Created by the merchant; no prepay yet.
        Created = "CREATED",
        /// A prepay was issued; the shopper may be paying.
        Paying = "PAYING",
        /// WeChat confirmed the payment.
        Paid = "PAID",
        /// Closed (expired, cancelled, or closed at WeChat). A payment may still arrive: see
        /// [`Transition::paid_after_close`].
        Closed = "CLOSED",
        /// WeChat reported the payment failed; the shopper may try again.
        PayError = "PAYERROR",
    }
}

impl OrderState {
    /// Whether the shopper can still pay this order.
    pub fn is_payable(self) -> bool {
        matches!(self, OrderState::Created | OrderState::Paying | OrderState::PayError)
    }
}

/// Which truth source confirmed a payment: a verified notify, or a signed orderquery (the poller,
/// the status page, staff, and the reconciler, which confirms every payment the bill shows by
/// asking WeChat again).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentSource {
    Notify,
    Query,
}

impl PaymentSource {
    pub fn as_str(self) -> &'static str {
        self.timeline().as_str()
    }

    /// The timeline source a confirmation is recorded under.
    pub fn timeline(self) -> TimelineSource {
        match self {
            PaymentSource::Notify => TimelineSource::Notify,
            PaymentSource::Query => TimelineSource::Query,
        }
    }
}

/// What a verified source says about a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentFacts {
    pub transaction_id: String,
    pub total_fee: Fen,
    pub paid_at: DateTime<Utc>,
    pub source: PaymentSource,
}

/// Something that happened to an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `unifiedorder` returned a prepay (new or renewed).
    PrepayIssued,
    /// A verified source says the order is paid with this WeChat transaction, of this amount.
    PaymentConfirmed(PaymentFacts),
    /// WeChat says the payment failed (`trade_state=PAYERROR`).
    PaymentFailed,
    /// The order is closed: `closeorder` succeeded, WeChat reports CLOSED, or it never reached
    /// WeChat and expired.
    Closed,
}

impl Event {
    /// The timeline entry a change by this event writes.
    pub fn timeline_kind(&self) -> TimelineKind {
        match self {
            Event::PrepayIssued => TimelineKind::PrepayIssued,
            Event::PaymentConfirmed(_) => TimelineKind::PaymentConfirmed,
            Event::PaymentFailed => TimelineKind::PaymentFailed,
            Event::Closed => TimelineKind::Closed,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.timeline_kind().as_str()
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
    /// WeChat reports another amount than the order's: no payment is recorded, in any state.
    AmountMismatch { expected: Fen, reported: Fen },
}

/// The transition function: what `event` does to `order`.
pub fn transition(order: &Order, event: &Event) -> Result<Transition, Rejection> {
    use OrderState::*;
    let state = order.state;
    if let Event::PaymentConfirmed(facts) = event
        && facts.total_fee != order.amount
    {
        return Err(Rejection::AmountMismatch { expected: order.amount, reported: facts.total_fee });
    }
    let to = |to: OrderState| Ok(Transition { from: state, to, paid_after_close: false });
    let not_allowed = || Err(Rejection::NotAllowed { state, event: event.kind() });
    match (state, event) {
        (Created | Paying | PayError, Event::PrepayIssued) => to(Paying),
        (Paid | Closed, Event::PrepayIssued) => not_allowed(),

        (Created | Paying | PayError, Event::PaymentConfirmed(_)) => to(Paid),
        (Closed, Event::PaymentConfirmed(_)) => Ok(Transition { from: Closed, to: Paid, paid_after_close: true }),
        (Paid, Event::PaymentConfirmed(facts)) => match order.transaction_id.as_deref() {
            Some(recorded) if recorded != facts.transaction_id => Err(Rejection::ConflictingPayment {
                recorded: recorded.to_owned(),
                received: facts.transaction_id.clone(),
            }),
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
    use crate::domain::order::fixture;

    fn confirmed(id: &str) -> Event {
        confirmed_of(id, 1990)
    }

    fn confirmed_of(id: &str, fen: i64) -> Event {
        Event::PaymentConfirmed(PaymentFacts {
            transaction_id: id.into(),
            total_fee: Fen::new(fen),
            paid_at: Utc::now(),
            source: PaymentSource::Notify,
        })
    }

    /// An order in `state`; a paid one carries transaction `T1`.
    fn order(state: OrderState) -> Order {
        let mut o = fixture::order(state, Utc::now());
        if state == Paid {
            o.transaction_id = Some("T1".into());
        }
        o
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
                let got = transition(&order(state), event);
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
            transition(&order(Paid), &confirmed("T2")),
            Err(Rejection::ConflictingPayment { recorded: "T1".into(), received: "T2".into() })
        );
        assert_eq!(transition(&order(Paid), &confirmed("T1")), Err(Rejection::AlreadyDone));
    }

    #[test]
    fn a_payment_of_another_amount_is_refused_in_every_state() {
        for state in OrderState::ALL {
            assert_eq!(
                transition(&order(state), &confirmed_of("T1", 1)),
                Err(Rejection::AmountMismatch { expected: Fen::new(1990), reported: Fen::new(1) }),
                "{state}"
            );
        }
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
