//! The words that cross layers as enums, stored as the same strings they always were: what the
//! timeline records, where a fact came from, what a notify was judged, what staff did, what went
//! wrong for staff to see, and what a merchant webhook announces. A new word is a new variant
//! here, so a typo cannot reach the database.

/// Declares an enum stored (and matched) as fixed strings: `as_str`, `parse`, `ALL` and
/// `Display`. Unknown strings parse to `None`; readers of old rows keep the raw text.
macro_rules! string_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// What happened to an order, as its timeline (`order_events.kind`) records it.
    pub enum TimelineKind {
        Created = "created",
        PrepayIssued = "prepay_issued",
        Queried = "queried",
        PaymentConfirmed = "payment_confirmed",
        PaymentFailed = "payment_failed",
        Closed = "closed",
        CloseAttempted = "close_attempted",
        RefundRequested = "refund_requested",
        RefundAccepted = "refund_accepted",
        RefundSucceeded = "refund_succeeded",
        RefundClosed = "refund_closed",
        RefundFailed = "refund_failed",
        RefundChange = "refund_change",
        RefundQueried = "refund_queried",
    }
}

string_enum! {
    /// Who or what reported a timeline entry (`order_events.source`).
    pub enum TimelineSource {
        /// The merchant API.
        Api = "api",
        /// The shopper's checkout page.
        Checkout = "checkout",
        /// A notify from WeChat.
        Notify = "notify",
        /// An orderquery or refundquery we made.
        Query = "query",
        /// A closeorder we made.
        Close = "close",
        /// A staff member in the console.
        Admin = "admin",
        /// The reply to a refund request.
        Refund = "refund",
    }
}

string_enum! {
    /// Which of WeChat's notifies a delivery was (`notify_log.kind`).
    pub enum NotifyKind {
        Payment = "payment",
        Refund = "refund",
    }
}

string_enum! {
    /// What we made of one notify delivery (`notify_log.verdict`).
    pub enum NotifyVerdict {
        /// Written while the delivery is being handled; never committed.
        Pending = "pending",
        Paid = "paid",
        Duplicate = "duplicate",
        PaidAfterClose = "paid_after_close",
        UnknownOrder = "unknown_order",
        AmountMismatch = "amount_mismatch",
        ConflictingPayment = "conflicting_payment",
        Refused = "refused",
        PaymentFailed = "payment_failed",
        BadXml = "bad_xml",
        BadSignature = "bad_signature",
        ForeignMerchant = "foreign_merchant",
        ReturnFail = "return_fail",
        BadField = "bad_field",
        DecryptFailed = "decrypt_failed",
        TooLarge = "too_large",
        Error = "error",
        RefundSuccess = "refund_success",
        RefundProcessing = "refund_processing",
        RefundChange = "refund_change",
        RefundClosed = "refund_closed",
        RefundFailed = "refund_failed",
        UnknownRefund = "unknown_refund",
        RefundMismatch = "refund_mismatch",
        RefundConflict = "refund_conflict",
    }
}

impl NotifyVerdict {
    /// Deliveries refused before they were verified as WeChat's word about our merchant: anyone
    /// can send these, so they are stored bounded, kept off order timelines, and purged sooner.
    pub const UNVERIFIED: [NotifyVerdict; 7] = [
        NotifyVerdict::BadXml,
        NotifyVerdict::BadSignature,
        NotifyVerdict::ForeignMerchant,
        NotifyVerdict::ReturnFail,
        NotifyVerdict::BadField,
        NotifyVerdict::DecryptFailed,
        NotifyVerdict::TooLarge,
    ];

    pub fn is_unverified(self) -> bool {
        NotifyVerdict::UNVERIFIED.contains(&self)
    }
}

string_enum! {
    /// A situation the machines could not settle, waiting for a person (`exceptions.kind`).
    pub enum ExceptionKind {
        AmountMismatch = "amount_mismatch",
        UnknownOrder = "unknown_order",
        PaidAfterClose = "paid_after_close",
        ConflictingPayment = "conflicting_payment",
        PrepayRefused = "prepay_refused",
        RefundChange = "refund_change",
        UnknownRefund = "unknown_refund",
        RefundMismatch = "refund_mismatch",
        RefundConflict = "refund_conflict",
        ReconcilePaidNotLocal = "reconcile_paid_not_local",
        ReconcileMissingAtWechat = "reconcile_missing_at_wechat",
        ReconcileRefundMissingAtWechat = "reconcile_refund_missing_at_wechat",
    }
}

string_enum! {
    /// A staff action in the audit log (`audit_log.action`).
    pub enum AuditAction {
        Login = "login",
        LoginFailed = "login_failed",
        Logout = "logout",
        PasswordChanged = "password_changed",
        Requery = "requery",
        Close = "close",
        Refund = "refund",
        RefundRefused = "refund_refused",
        RefundRetry = "refund_retry",
        RefundResubmitted = "refund_resubmitted",
        NotifyReprocess = "notify_reprocess",
        ExceptionResolved = "exception_resolved",
        OrdersExported = "orders_exported",
        UserCreated = "user_created",
        UserRoleChanged = "user_role_changed",
        UserDisabled = "user_disabled",
        UserEnabled = "user_enabled",
        UserUnlocked = "user_unlocked",
        UserPasswordReset = "user_password_reset",
        TokenCreated = "token_created",
        TokenRevoked = "token_revoked",
        ReconciliationRun = "reconciliation_run",
        WebhookResend = "webhook_resend",
        /// An order created through the merchant API (the actor is `api:<token name>`).
        OrderCreated = "order_created",
    }
}

string_enum! {
    /// What a merchant API token may do. Each scope includes the ones before it: `read` reads,
    /// `write` also creates orders and closes them (and asks for their payment parameters),
    /// `refund` also moves money back.
    pub enum ApiScope {
        Read = "read",
        Write = "write",
        Refund = "refund",
    }
}

impl ApiScope {
    /// Whether a token of this scope may do what `needed` guards.
    pub fn allows(self, needed: ApiScope) -> bool {
        self.rank() >= needed.rank()
    }

    fn rank(self) -> u8 {
        match self {
            ApiScope::Read => 0,
            ApiScope::Write => 1,
            ApiScope::Refund => 2,
        }
    }
}

string_enum! {
    /// Which of the merchant's apps an order's prepay was issued for (`orders.prepay_app`): a
    /// prepay, like the openid it names, belongs to one appid.
    pub enum PaymentApp {
        /// The Official Account (`WECHAT_APPID`): our checkout page, or the merchant's own H5
        /// pages inside WeChat (`WeixinJSBridge`).
        OfficialAccount = "official_account",
        /// The Mini Program (`WECHAT_MINIPROGRAM_APPID`, `wx.requestPayment`).
        MiniProgram = "mini_program",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_round_trips_and_is_unique() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            text: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            let mut seen = std::collections::HashSet::new();
            for &v in all {
                assert_eq!(parse(text(v)), Some(v));
                assert!(seen.insert(text(v)), "{v:?} repeats {}", text(v));
            }
            assert_eq!(parse("no such word"), None);
        }
        check(&TimelineKind::ALL, TimelineKind::as_str, TimelineKind::parse);
        check(&TimelineSource::ALL, TimelineSource::as_str, TimelineSource::parse);
        check(&NotifyKind::ALL, NotifyKind::as_str, NotifyKind::parse);
        check(&NotifyVerdict::ALL, NotifyVerdict::as_str, NotifyVerdict::parse);
        check(&ExceptionKind::ALL, ExceptionKind::as_str, ExceptionKind::parse);
        check(&AuditAction::ALL, AuditAction::as_str, AuditAction::parse);
        check(&ApiScope::ALL, ApiScope::as_str, ApiScope::parse);
        check(&PaymentApp::ALL, PaymentApp::as_str, PaymentApp::parse);
    }

    #[test]
    fn each_api_scope_includes_the_ones_before_it() {
        use ApiScope::*;
        assert!(Refund.allows(Read) && Refund.allows(Write) && Refund.allows(Refund));
        assert!(Write.allows(Read) && Write.allows(Write) && !Write.allows(Refund));
        assert!(Read.allows(Read) && !Read.allows(Write) && !Read.allows(Refund));
    }
}
