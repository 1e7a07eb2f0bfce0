//! The order: the entity every layer shares, its state machine (`transition`), and the rules a
//! page and a job both need (what may still be refunded, when WeChat lets it be closed, when its
//! prepay may be reused). Times are arguments, never read here.

mod transition;

use chrono::{DateTime, Duration, Utc};

use super::vocab::PaymentApp;
use crate::wxpay::money::Fen;
use crate::wxpay::sign::SignType;

pub use transition::{Event, OrderState, PaymentFacts, PaymentSource, Rejection, Transition, transition};

/// WeChat refuses `closeorder` this soon after `unifiedorder`.
pub const CLOSE_MIN_AGE: Duration = Duration::minutes(5);
/// A prepay_id lives 2 hours at WeChat; reuse it a little less, so the shopper never gets a dead one.
pub const PREPAY_REUSE: Duration = Duration::minutes(110);
/// WeChat wants `time_expire` at least a minute ahead: an order closer to its end is not offered.
pub const MIN_TIME_LEFT: Duration = Duration::seconds(60);

/// An order as the rest of the program sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub out_trade_no: String,
    pub merchant_order_id: String,
    pub amount: Fen,
    pub description: String,
    pub attach: Option<String>,
    pub state: OrderState,
    pub sign_type: SignType,
    /// The shopper the prepay was issued for; a prepay is bound to one openid.
    pub openid: Option<String>,
    /// The shopper's IP as sent with the first prepay; reused so a re-issued unifiedorder is
    /// byte-for-byte the same request, which WeChat requires.
    pub client_ip: Option<String>,
    pub prepay_id: Option<String>,
    pub prepay_created_at: Option<DateTime<Utc>>,
    /// The app the prepay was issued for; `None` on an order whose payment never started (and on
    /// prepays from before Mini Programs, which were all the Official Account's).
    pub prepay_app: Option<PaymentApp>,
    pub transaction_id: Option<String>,
    pub paid: Option<Fen>,
    pub paid_at: Option<DateTime<Utc>>,
    pub paid_after_close: bool,
    pub refunded: Fen,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub last_queried_at: Option<DateTime<Utc>>,
    /// Refunds requested and not failed or closed; never more than `paid`.
    pub refund_reserved: Fen,
    /// Where this order's webhooks go instead of the global `WEBHOOK_URL`.
    pub webhook_url: Option<String>,
    /// Where the shopper goes back to after the checkout (see [`Order::return_link`]).
    pub return_url: Option<String>,
}

/// What closing an order would take now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosePath {
    /// It is paid: nothing to close.
    Paid,
    /// It is closed already.
    AlreadyClosed,
    /// No prepay was ever handed out, so WeChat has nothing the shopper could pay: close here.
    Locally,
    /// The prepay is younger than [`CLOSE_MIN_AGE`]; WeChat would refuse for `wait` more.
    TooEarly { wait: Duration },
    /// `closeorder` at WeChat, then here.
    AtWechat,
}

impl Order {
    /// What may still be refunded: what was paid less every refund that holds a reservation.
    pub fn refundable(&self) -> Fen {
        self.paid.unwrap_or_default().checked_sub(self.refund_reserved).filter(|f| f.get() > 0).unwrap_or_default()
    }

    /// How a close would go at `now` (WeChat's 5-minute rule counted from the prepay).
    pub fn close_path(&self, now: DateTime<Utc>) -> ClosePath {
        match self.state {
            OrderState::Paid => ClosePath::Paid,
            OrderState::Closed => ClosePath::AlreadyClosed,
            OrderState::Created | OrderState::Paying | OrderState::PayError => match self.prepay_id {
                None => ClosePath::Locally,
                Some(_) => {
                    let age = now - self.prepay_created_at.unwrap_or(self.created_at);
                    if age < CLOSE_MIN_AGE {
                        ClosePath::TooEarly { wait: CLOSE_MIN_AGE - age }
                    } else {
                        ClosePath::AtWechat
                    }
                }
            },
        }
    }

    /// Still payable on paper but past its expiry: the shopper is told it has ended.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.state.is_payable() && self.expires_at <= now
    }

    /// Too close to its expiry for WeChat to accept a new prepay.
    pub fn too_late_to_pay(&self, now: DateTime<Utc>) -> bool {
        self.expires_at - now < MIN_TIME_LEFT
    }

    /// Whether a prepay was issued to another shopper than `openid`: a prepay is bound to one
    /// openid, so the first shopper to pay holds the order and this one cannot pay it.
    pub fn taken_by_another(&self, openid: &str) -> bool {
        self.openid.as_deref().is_some_and(|bound| bound != openid)
    }

    /// The app the order's payment was started in, when it is not `app`. WeChat ties an
    /// out_trade_no to the appid of its first unifiedorder (a second one under another appid is a
    /// different request, refused), and the openid it names belongs to that appid too: the order
    /// can only be paid in the app it was started in.
    pub fn started_in_other_app(&self, app: PaymentApp) -> Option<PaymentApp> {
        self.prepay_id.as_ref()?;
        let started = self.prepay_app.unwrap_or(PaymentApp::OfficialAccount);
        (started != app).then_some(started)
    }

    /// Where the shopper is sent back to, if the merchant gave a `return_url`: it, with
    /// `out_trade_no` and `merchant_order_id` appended to its query (form-encoded; the query it
    /// has is kept as written). Says nothing about payment: anyone can open it.
    pub fn return_link(&self) -> Option<String> {
        let mut url = url::Url::parse(self.return_url.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("out_trade_no", &self.out_trade_no)
            .append_pair("merchant_order_id", &self.merchant_order_id);
        Some(url.into())
    }

    /// The prepay the shopper may be handed again at `now`, if it is young enough.
    pub fn reusable_prepay(&self, now: DateTime<Utc>) -> Option<&str> {
        match (&self.prepay_id, self.prepay_created_at) {
            (Some(id), Some(created)) if now - created < PREPAY_REUSE => Some(id),
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    /// A CREATED order of 19.90 made at `at`, expiring two hours later.
    pub fn order(state: OrderState, at: DateTime<Utc>) -> Order {
        Order {
            out_trade_no: "WC1".into(),
            merchant_order_id: "M1".into(),
            amount: Fen::new(1990),
            description: "tea".into(),
            attach: None,
            state,
            sign_type: SignType::Md5,
            openid: None,
            client_ip: None,
            prepay_id: None,
            prepay_created_at: None,
            prepay_app: None,
            transaction_id: None,
            paid: None,
            paid_at: None,
            paid_after_close: false,
            refunded: Fen::ZERO,
            created_at: at,
            updated_at: at,
            expires_at: at + Duration::hours(2),
            closed_at: None,
            last_queried_at: None,
            refund_reserved: Fen::ZERO,
            webhook_url: None,
            return_url: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::order;
    use super::*;

    #[test]
    fn refundable_is_what_was_paid_less_what_is_reserved() {
        let now = Utc::now();
        let mut o = order(OrderState::Paid, now);
        o.paid = Some(Fen::new(1990));
        o.refund_reserved = Fen::new(500);
        assert_eq!(o.refundable(), Fen::new(1490));
        o.refund_reserved = Fen::new(1990);
        assert_eq!(o.refundable(), Fen::ZERO);
        assert_eq!(order(OrderState::Paying, now).refundable(), Fen::ZERO);
    }

    #[test]
    fn closing_follows_wechats_five_minute_rule() {
        let now = Utc::now();
        assert_eq!(order(OrderState::Paid, now).close_path(now), ClosePath::Paid);
        assert_eq!(order(OrderState::Closed, now).close_path(now), ClosePath::AlreadyClosed);
        let mut o = order(OrderState::Paying, now);
        assert_eq!(o.close_path(now), ClosePath::Locally);
        o.prepay_id = Some("wx1".into());
        o.prepay_created_at = Some(now - Duration::minutes(2));
        assert_eq!(o.close_path(now), ClosePath::TooEarly { wait: Duration::minutes(3) });
        o.prepay_created_at = Some(now - Duration::minutes(5));
        assert_eq!(o.close_path(now), ClosePath::AtWechat);
    }

    #[test]
    fn prepays_are_reused_under_110_minutes_and_orders_end_at_expiry() {
        let now = Utc::now();
        let mut o = order(OrderState::Paying, now);
        o.prepay_id = Some("wx1".into());
        o.prepay_created_at = Some(now - Duration::minutes(109));
        assert_eq!(o.reusable_prepay(now), Some("wx1"));
        o.prepay_created_at = Some(now - Duration::minutes(110));
        assert_eq!(o.reusable_prepay(now), None);
        assert!(!o.is_expired(now) && o.is_expired(now + Duration::hours(2)));
        assert!(o.too_late_to_pay(now + Duration::hours(2) - Duration::seconds(59)));
        assert!(!order(OrderState::Paid, now).is_expired(now + Duration::hours(3)));
    }

    #[test]
    fn the_first_shopper_to_pay_holds_the_order() {
        let mut o = order(OrderState::Created, Utc::now());
        assert!(!o.taken_by_another("oA"), "nobody holds a fresh order");
        o.openid = Some("oA".into());
        assert!(!o.taken_by_another("oA") && o.taken_by_another("oB"));
    }

    #[test]
    fn an_order_is_paid_in_the_app_its_payment_started_in() {
        let mut o = order(OrderState::Created, Utc::now());
        assert_eq!(o.started_in_other_app(PaymentApp::MiniProgram), None, "not started: any app");
        o.prepay_id = Some("wx1".into());
        // Prepays from before Mini Programs were the Official Account's.
        assert_eq!(o.started_in_other_app(PaymentApp::OfficialAccount), None);
        assert_eq!(o.started_in_other_app(PaymentApp::MiniProgram), Some(PaymentApp::OfficialAccount));
        o.prepay_app = Some(PaymentApp::MiniProgram);
        assert_eq!(o.started_in_other_app(PaymentApp::MiniProgram), None);
        assert_eq!(o.started_in_other_app(PaymentApp::OfficialAccount), Some(PaymentApp::MiniProgram));
    }

    #[test]
    fn the_return_link_appends_the_order_to_the_query_it_has() {
        let mut o = order(OrderState::Paid, Utc::now());
        assert_eq!(o.return_link(), None);
        o.merchant_order_id = "A|1 @x*".into();
        o.return_url = Some("https://shop.example/done".into());
        assert_eq!(
            o.return_link().unwrap(),
            "https://shop.example/done?out_trade_no=WC1&merchant_order_id=A%7C1+%40x*"
        );
        o.return_url = Some("https://shop.example/r?from=wx&q=a%20b".into());
        assert_eq!(
            o.return_link().unwrap(),
            "https://shop.example/r?from=wx&q=a%20b&out_trade_no=WC1&merchant_order_id=A%7C1+%40x*"
        );
        o.return_url = Some("http://shop.example:8080/?".into());
        assert_eq!(
            o.return_link().unwrap(),
            "http://shop.example:8080/?out_trade_no=WC1&merchant_order_id=A%7C1+%40x*"
        );
    }
}
