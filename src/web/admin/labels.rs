//! The console's Chinese names for the domain's words, and the badge class each state wears.
//! Every vocabulary is matched exhaustively, so a new variant cannot reach a page unnamed; stored
//! text this build does not know is shown as it is.

use crate::domain::webhook::{WebhookEventType, WebhookState};
use crate::domain::{AuditAction, ExceptionKind, NotifyKind, NotifyVerdict, OrderState, RefundState, Role};

pub fn order_state(state: OrderState) -> &'static str {
    match state {
        OrderState::Created => "待支付",
        OrderState::Paying => "支付中",
        OrderState::Paid => "已支付",
        OrderState::Closed => "已关闭",
        OrderState::PayError => "支付失败",
    }
}

/// CSS class of an order's state badge.
pub fn order_state_class(state: OrderState) -> &'static str {
    match state {
        OrderState::Paid => "ok",
        OrderState::Created | OrderState::Paying => "wait",
        OrderState::Closed => "muted",
        OrderState::PayError => "bad",
    }
}

pub fn refund_state(state: RefundState) -> &'static str {
    match state {
        RefundState::Pending => "待提交",
        RefundState::Processing => "退款处理中",
        RefundState::Success => "退款成功",
        RefundState::Change => "退款异常",
        RefundState::Closed => "退款关闭",
        RefundState::Failed => "退款失败",
    }
}

pub fn refund_state_class(state: RefundState) -> &'static str {
    match state {
        RefundState::Success => "ok",
        RefundState::Pending | RefundState::Processing => "wait",
        RefundState::Change | RefundState::Failed => "bad",
        RefundState::Closed => "muted",
    }
}

pub fn role(role: Role) -> &'static str {
    match role {
        Role::Viewer => "只读",
        Role::Operator => "操作员",
        Role::Admin => "管理员",
    }
}

pub fn exception_kind(kind: ExceptionKind) -> &'static str {
    match kind {
        ExceptionKind::AmountMismatch => "金额不符",
        ExceptionKind::UnknownOrder => "未知订单",
        ExceptionKind::PaidAfterClose => "关单后支付",
        ExceptionKind::ConflictingPayment => "重复支付",
        ExceptionKind::PrepayRefused => "下单被拒",
        ExceptionKind::RefundChange => "退款异常",
        ExceptionKind::UnknownRefund => "未知退款",
        ExceptionKind::RefundMismatch => "退款信息不符",
        ExceptionKind::RefundConflict => "退款状态冲突",
        ExceptionKind::ReconcilePaidNotLocal => "对账：我方未支付",
        ExceptionKind::ReconcileMissingAtWechat => "对账：我方有微信无",
        ExceptionKind::ReconcileRefundMissingAtWechat => "对账：退款我方有微信无",
    }
}

/// The name of a stored exception kind.
pub fn exception_kind_text(kind: &str) -> &'static str {
    ExceptionKind::parse(kind).map_or("其他异常", exception_kind)
}

/// The name and badge class of a notify verdict.
pub fn verdict(verdict: NotifyVerdict) -> (&'static str, &'static str) {
    use NotifyVerdict as V;
    match verdict {
        V::Pending => ("处理中", "wait"),
        V::Paid => ("已入账", "ok"),
        V::Duplicate => ("重复通知", "muted"),
        V::PaidAfterClose => ("关单后支付", "bad"),
        V::UnknownOrder => ("未知订单", "bad"),
        V::AmountMismatch => ("金额不符", "bad"),
        V::ConflictingPayment => ("重复支付", "bad"),
        V::Refused => ("状态不允许", "bad"),
        V::PaymentFailed => ("支付失败", "wait"),
        V::BadXml => ("XML 错误", "bad"),
        V::BadSignature => ("签名错误", "bad"),
        V::ForeignMerchant => ("商户不符", "bad"),
        V::ReturnFail => ("通信失败", "bad"),
        V::BadField => ("字段错误", "bad"),
        V::DecryptFailed => ("解密失败", "bad"),
        V::TooLarge => ("请求过大", "bad"),
        V::Error => ("处理出错", "bad"),
        V::RefundSuccess => ("退款成功", "ok"),
        V::RefundProcessing => ("退款处理中", "wait"),
        V::RefundChange => ("退款异常", "bad"),
        V::RefundClosed => ("退款关闭", "muted"),
        V::RefundFailed => ("退款失败", "bad"),
        V::UnknownRefund => ("未知退款", "bad"),
        V::RefundMismatch => ("退款信息不符", "bad"),
        V::RefundConflict => ("退款状态冲突", "bad"),
    }
}

/// The name of a stored verdict (unknown ones by their code) and its badge class.
pub fn verdict_text(stored: &str) -> (&str, &'static str) {
    match NotifyVerdict::parse(stored) {
        Some(v) => verdict(v),
        None => (stored, "muted"),
    }
}

pub fn notify_kind(kind: NotifyKind) -> &'static str {
    match kind {
        NotifyKind::Payment => "支付通知",
        NotifyKind::Refund => "退款通知",
    }
}

/// The name of a stored notify kind (unknown ones by their code).
pub fn notify_kind_text(stored: &str) -> &str {
    match NotifyKind::parse(stored) {
        Some(k) => notify_kind(k),
        None => stored,
    }
}

pub fn audit_action(action: AuditAction) -> &'static str {
    use AuditAction as A;
    match action {
        A::Login => "登录",
        A::LoginFailed => "登录失败",
        A::Logout => "退出登录",
        A::PasswordChanged => "修改密码",
        A::Requery => "重新查询订单",
        A::Close => "关闭订单",
        A::Refund => "退款",
        A::RefundRefused => "退款被拒",
        A::RefundRetry => "重试退款",
        A::RefundResubmitted => "重新提交退款",
        A::NotifyReprocess => "重新处理通知",
        A::ExceptionResolved => "处理异常",
        A::OrdersExported => "导出订单",
        A::UserCreated => "新建用户",
        A::UserRoleChanged => "修改角色",
        A::UserDisabled => "停用用户",
        A::UserEnabled => "启用用户",
        A::UserUnlocked => "解除锁定",
        A::UserPasswordReset => "重置密码",
        A::TokenCreated => "新建 API 令牌",
        A::TokenRevoked => "撤销 API 令牌",
        A::ReconciliationRun => "运行对账",
        A::WebhookResend => "重发 Webhook",
        A::OrderCreated => "接口创建订单",
    }
}

/// The name of a stored audit action, if it is one we know.
pub fn audit_action_text(stored: &str) -> Option<&'static str> {
    AuditAction::parse(stored).map(audit_action)
}

pub fn webhook_state(state: WebhookState) -> &'static str {
    match state {
        WebhookState::Pending => "待投递",
        WebhookState::Delivered => "已送达",
        WebhookState::Failed => "投递失败",
    }
}

pub fn webhook_state_class(state: WebhookState) -> &'static str {
    match state {
        WebhookState::Pending => "wait",
        WebhookState::Delivered => "ok",
        WebhookState::Failed => "bad",
    }
}

/// The name of a stored webhook event type.
pub fn webhook_type_text(stored: &str) -> &'static str {
    match WebhookEventType::parse(stored) {
        Some(WebhookEventType::OrderPaid) => "订单已支付",
        Some(WebhookEventType::OrderRefunded) => "退款成功",
        Some(WebhookEventType::OrderClosed) => "订单已关闭",
        Some(WebhookEventType::OrderPaymentFailed) => "支付失败",
        Some(WebhookEventType::RefundFailed) => "退款失败",
        None => "其他事件",
    }
}

/// A role as pages show it: its code for forms and its name for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleName(pub Role);

impl RoleName {
    pub fn as_str(&self) -> &'static str {
        self.0.as_str()
    }

    pub fn label(&self) -> &'static str {
        role(self.0)
    }
}
