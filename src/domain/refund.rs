//! A refund: its states, the one transition function every outcome goes through (WeChat's
//! reply, refundquery, the refund notify, a definitive refusal), and what each change does to
//! the order's reserved and refunded amounts. The guarded UPDATE in `db::refunds` applies a
//! transition only while the refund is still in its `from` state.

use crate::domain::vocab::string_enum;
use chrono::{DateTime, Duration, Utc};

use crate::domain::vocab::TimelineKind;
use crate::wxpay::money::Fen;

/// A PENDING refund untouched this long has lost its sender (the request timed out or the
/// process died); it may be sent again. Longer than the client's retries of one call.
pub const SEND_STALE_AFTER: Duration = Duration::seconds(120);

string_enum! {
    /// Where a refund stands.
    pub enum RefundState {
        /// Recorded and reserved; WeChat has not (yet) confirmed it accepted the request. Safe to send
        /// again with the same `out_refund_no`.
        Pending = "PENDING",
        /// WeChat accepted it; the outcome comes from refundquery or the refund notify.
        Processing = "PROCESSING",
        /// The money went back to the shopper.
        Success = "SUCCESS",
        /// WeChat could not pay it out (e.g. a cancelled card): the money went back to the merchant
        /// account and staff must settle it offline. The amount stays reserved.
        Change = "CHANGE",
        /// WeChat closed the refund; nothing was paid and the reservation is released.
        Closed = "CLOSED",
        /// Refused by WeChat (or reported FAIL); nothing was paid and the reservation is released.
        Failed = "FAILED",
    }
}

impl RefundState {
    /// Whether the refund still holds part of the order's refundable amount.
    pub fn holds_reservation(self) -> bool {
        !matches!(self, RefundState::Closed | RefundState::Failed)
    }
}

/// A refund as the rest of the program sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub amount: Fen,
    pub reason: String,
    pub state: RefundState,
    pub refund_id: Option<String>,
    pub requested_by: String,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub succeeded_at: Option<DateTime<Utc>>,
}

impl Refund {
    /// A PENDING refund whose last send failed, or went silent long enough that its sender is
    /// presumed dead: it may be sent again (with the same number) or asked about.
    pub fn may_resend(&self, now: DateTime<Utc>) -> bool {
        self.state == RefundState::Pending && (self.last_error.is_some() || self.updated_at < now - SEND_STALE_AFTER)
    }
}

/// Something that happened to a refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundEvent {
    /// WeChat accepted the request (its reply, or `PROCESSING` from a query or notify).
    Accepted,
    /// `SUCCESS`: the money reached the shopper.
    Succeeded,
    /// `REFUNDCLOSE`.
    Closed,
    /// `FAIL` reported by a query or notify.
    Failed,
    /// `CHANGE`: paid out to nowhere; back on the merchant account.
    Changed,
    /// WeChat refused our request for good (a business error that no retry changes).
    SendRefused,
}

impl RefundEvent {
    pub const ALL: [RefundEvent; 6] = [
        RefundEvent::Accepted,
        RefundEvent::Succeeded,
        RefundEvent::Closed,
        RefundEvent::Failed,
        RefundEvent::Changed,
        RefundEvent::SendRefused,
    ];
}

/// What a transition does to the order's amounts besides moving the refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationEffect {
    /// Nothing: the amount stays reserved.
    Keep,
    /// The refund is paid: count it as refunded (within its reservation).
    CountRefunded,
    /// Nothing was paid: give the reservation back.
    Release,
    /// The reservation stays and staff must settle the money offline: raise an exception.
    KeepAndRaise,
}

/// The change an event makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefundTransition {
    pub from: RefundState,
    pub to: RefundState,
    pub effect: ReservationEffect,
}

impl RefundTransition {
    /// The timeline entry the change writes.
    pub fn timeline_kind(&self) -> TimelineKind {
        match self.to {
            RefundState::Processing => TimelineKind::RefundAccepted,
            RefundState::Success => TimelineKind::RefundSucceeded,
            RefundState::Change => TimelineKind::RefundChange,
            RefundState::Closed => TimelineKind::RefundClosed,
            RefundState::Failed | RefundState::Pending => TimelineKind::RefundFailed,
        }
    }
}

/// Why an event changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundRejection {
    /// Already there, or past it (a repeated notify; `PROCESSING` after the outcome).
    AlreadyDone,
    /// A refusal of a send that is no longer pending: someone else settled it meanwhile.
    Superseded,
    /// The report contradicts a final state we hold (SUCCESS for a closed refund…): staff must
    /// look, so an exception is raised.
    Conflict,
}

/// The refund transition function.
pub fn transition(state: RefundState, event: RefundEvent) -> Result<RefundTransition, RefundRejection> {
    use RefundState::*;
    let (from, to): (&[RefundState], RefundState) = match event {
        RefundEvent::Accepted => (&[Pending], Processing),
        // CHANGE can still end in SUCCESS when staff re-route the money in the merchant platform.
        RefundEvent::Succeeded => (&[Pending, Processing, Change], Success),
        RefundEvent::Closed => (&[Pending, Processing], Closed),
        RefundEvent::Failed => (&[Pending, Processing], Failed),
        RefundEvent::Changed => (&[Pending, Processing], Change),
        RefundEvent::SendRefused => (&[Pending], Failed),
    };
    if from.contains(&state) {
        let effect = match to {
            Success => ReservationEffect::CountRefunded,
            Closed | Failed => ReservationEffect::Release,
            Change => ReservationEffect::KeepAndRaise,
            Pending | Processing => ReservationEffect::Keep,
        };
        return Ok(RefundTransition { from: state, to, effect });
    }
    match event {
        RefundEvent::SendRefused => Err(RefundRejection::Superseded),
        _ if state == to || to == Processing => Err(RefundRejection::AlreadyDone),
        _ => Err(RefundRejection::Conflict),
    }
}

/// Where an order's refunds stand as a whole, for the order's badge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundProgress {
    /// A refund came back CHANGE: staff must act.
    Anomaly,
    /// Everything paid was refunded.
    Full,
    /// Some amount is reserved by refunds still under way.
    InProgress,
    /// Part of the payment was refunded; nothing is under way.
    Partial,
    None,
}

/// The refund progress of an order with these amounts and refunds.
pub fn progress(paid: Option<Fen>, refunded: Fen, reserved: Fen, refunds: &[Refund]) -> RefundProgress {
    if refunds.iter().any(|r| r.state == RefundState::Change) {
        RefundProgress::Anomaly
    } else if refunded.is_positive() && refunded >= paid.unwrap_or_default() {
        RefundProgress::Full
    } else if reserved > refunded {
        RefundProgress::InProgress
    } else if refunded.is_positive() {
        RefundProgress::Partial
    } else {
        RefundProgress::None
    }
}

#[cfg(test)]
mod tests {
    use super::RefundEvent::{Accepted, Changed, SendRefused, Succeeded};
    use super::RefundRejection::{AlreadyDone, Conflict, Superseded};
    use super::RefundState::*;
    use super::*;

    /// Every (state, event) pair: `To(state)` or the rejection.
    #[test]
    fn every_state_and_event() {
        #[derive(Debug)]
        enum Want {
            To(RefundState),
            No(RefundRejection),
        }
        use Want::*;
        let events = RefundEvent::ALL;
        assert_eq!(events, [Accepted, Succeeded, RefundEvent::Closed, RefundEvent::Failed, Changed, SendRefused]);
        let table: [(RefundState, [Want; 6]); 6] = [
            (Pending, [To(Processing), To(Success), To(Closed), To(Failed), To(Change), To(Failed)]),
            (Processing, [No(AlreadyDone), To(Success), To(Closed), To(Failed), To(Change), No(Superseded)]),
            (Success, [No(AlreadyDone), No(AlreadyDone), No(Conflict), No(Conflict), No(Conflict), No(Superseded)]),
            (Change, [No(AlreadyDone), To(Success), No(Conflict), No(Conflict), No(AlreadyDone), No(Superseded)]),
            (Closed, [No(AlreadyDone), No(Conflict), No(AlreadyDone), No(Conflict), No(Conflict), No(Superseded)]),
            (Failed, [No(AlreadyDone), No(Conflict), No(Conflict), No(AlreadyDone), No(Conflict), No(Superseded)]),
        ];
        for (state, wants) in table {
            for (event, want) in events.into_iter().zip(wants) {
                let got = transition(state, event);
                let ok = match (&want, &got) {
                    (To(to), Ok(t)) => t.to == *to && t.from == state,
                    (No(r), Err(got)) => r == got,
                    _ => false,
                };
                assert!(ok, "{state:?} + {event:?}: wanted {want:?}, got {got:?}");
            }
        }
    }

    #[test]
    fn each_end_state_has_its_effect_on_the_reservation() {
        let effect = |s, e| transition(s, e).unwrap().effect;
        assert_eq!(effect(Processing, Succeeded), ReservationEffect::CountRefunded);
        assert_eq!(effect(Processing, RefundEvent::Closed), ReservationEffect::Release);
        assert_eq!(effect(Pending, SendRefused), ReservationEffect::Release);
        assert_eq!(effect(Processing, Changed), ReservationEffect::KeepAndRaise);
        assert_eq!(effect(Pending, Accepted), ReservationEffect::Keep);
        for state in RefundState::ALL {
            assert_eq!(state.holds_reservation(), !matches!(state, Closed | Failed), "{state:?}");
        }
    }

    #[test]
    fn a_pending_refund_may_be_resent_after_an_error_or_silence() {
        let now = Utc::now();
        let mut r = Refund {
            out_refund_no: "R1".into(),
            out_trade_no: "WC1".into(),
            amount: Fen::new(100),
            reason: "退货".into(),
            state: Pending,
            refund_id: None,
            requested_by: "alice".into(),
            last_error: None,
            created_at: now,
            updated_at: now,
            succeeded_at: None,
        };
        assert!(!r.may_resend(now));
        assert!(r.may_resend(now + SEND_STALE_AFTER + Duration::seconds(1)));
        r.last_error = Some("SYSTEMERROR".into());
        assert!(r.may_resend(now));
        r.state = Processing;
        assert!(!r.may_resend(now));
        assert_eq!(progress(Some(Fen::new(100)), Fen::new(100), Fen::new(100), &[]), RefundProgress::Full);
        r.state = Change;
        assert_eq!(progress(Some(Fen::new(100)), Fen::ZERO, Fen::new(100), &[r]), RefundProgress::Anomaly);
    }
}
