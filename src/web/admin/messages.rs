//! What staff read after an action on an order: one sentence per typed outcome of the use case
//! (a close, a refund request, a re-query and the refunds it checked); and the answers of the
//! sign-in page.

use super::labels;
use super::view::yuan;
use crate::domain::refund::RefundProgress;
use crate::payments::close::{CloseFailure, CloseOutcome};
use crate::payments::query::{QueryAnswer, Refreshed};
use crate::payments::refund::{RefundApplied, RefundRequested, RefundSync};
use crate::payments::staff_actions::Requeried;
use crate::staff::login::{LOCKOUT, MAX_FAILURES_PER_ACCOUNT};

pub fn close(outcome: &CloseOutcome) -> String {
    match outcome {
        CloseOutcome::Closed { at_wechat: true, .. } => "已在微信支付关闭订单，订单已标记为已关闭".into(),
        CloseOutcome::Closed { at_wechat: false, .. } => "订单未在微信支付下单，已在本地关闭".into(),
        CloseOutcome::AlreadyClosed(_) => "订单已经是关闭状态".into(),
        CloseOutcome::Paid(_) => "微信支付显示订单已支付，不能关闭；订单已标记为已支付".into(),
        CloseOutcome::TooEarly { wait, .. } => {
            format!("微信支付要求下单 5 分钟后才能关单，请约 {} 秒后再试（未调用微信支付）", wait.num_seconds().max(1))
        }
        CloseOutcome::Failed { why, .. } => format!("关单失败，订单未改变：{}", close_failure(why)),
    }
}

fn close_failure(why: &CloseFailure) -> String {
    match why {
        CloseFailure::Wechat(error) => error.clone(),
        CloseFailure::PaidButQueryFailed(error) => format!("微信支付返回 ORDERPAID，但查询订单失败：{error}"),
        CloseFailure::PaidButQueryShows(state) => format!("微信支付返回 ORDERPAID，查询结果为 {state}"),
        CloseFailure::NotClosable(state) => format!("订单状态为 {state}，不能关闭"),
    }
}

/// The flash after a refund request, and whether it went through.
pub fn refund_requested(done: &RefundRequested) -> (FlashKind, String) {
    match done {
        RefundRequested::Accepted(r) => (
            FlashKind::Success,
            format!(
                "退款 {}（{}）已提交，微信支付已受理，当前状态：{}",
                r.out_refund_no,
                yuan(r.amount),
                labels::refund_state(r.state)
            ),
        ),
        RefundRequested::Pending { refund, error } => (
            FlashKind::Warning,
            format!(
                "退款 {}（{}）未得到微信支付确认：{error}。金额已保留，可点击“重试”用同一退款单号重新提交",
                refund.out_refund_no,
                yuan(refund.amount)
            ),
        ),
        RefundRequested::Refused { refund, error } => {
            (FlashKind::Error, format!("微信支付拒绝退款 {}：{error}。已释放该笔金额", refund.out_refund_no))
        }
        RefundRequested::AlreadyRequested(r) => (
            FlashKind::Warning,
            format!("退款 {} 已提交过（当前状态：{}），未重复退款", r.out_refund_no, labels::refund_state(r.state)),
        ),
        RefundRequested::InFlight(r) => {
            (FlashKind::Warning, format!("退款 {} 正在提交中，未重复提交", r.out_refund_no))
        }
    }
}

/// How a flash message is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashKind {
    Success,
    Warning,
    Error,
}

/// The flash after a re-query, and whether the order query went through.
pub fn requeried(r: &Requeried) -> (bool, String) {
    let (ok, mut message) = match &r.order {
        Ok(Refreshed { order, answer }) => {
            let said = match answer {
                QueryAnswer::Trade { state, .. } => state.as_str(),
                QueryAnswer::NotExist => "ORDERNOTEXIST",
                QueryAnswer::Skipped => "（无结果）",
            };
            let change = if order.state != r.before.state {
                format!("订单已标记为{}", labels::order_state(order.state))
            } else {
                format!("订单状态未变（{}）", labels::order_state(order.state))
            };
            (true, format!("微信支付返回 {said}，{change}"))
        }
        Err(e) => (false, format!("查询订单失败：{}", e.staff_message())),
    };
    let lines = match &r.refunds {
        Ok(results) => results.iter().map(refund_synced).collect(),
        Err(e) => vec![format!("查询退款失败：{}", e.staff_message())],
    };
    for line in lines {
        message.push('；');
        message.push_str(&line);
    }
    (ok, message)
}

fn refund_synced(r: &RefundSync) -> String {
    match r {
        RefundSync::Reported { out_refund_no, status, applied } => {
            format!("退款 {out_refund_no} 微信支付返回 {status}{}", refund_applied(applied))
        }
        RefundSync::NotExist { out_refund_no } => format!("退款 {out_refund_no} 微信支付查无此退款"),
        RefundSync::Failed { out_refund_no, error } => {
            format!("退款 {out_refund_no} 查询失败：{}", error.staff_message())
        }
    }
}

fn refund_applied(applied: &RefundApplied) -> String {
    match applied {
        RefundApplied::Changed { refund, from } => {
            format!("，退款状态 {} → {}", labels::refund_state(*from), labels::refund_state(refund.state))
        }
        RefundApplied::AlreadyDone(r) => format!("，退款状态未变（{}）", labels::refund_state(r.state)),
        RefundApplied::Conflict(r) => format!("，与本地状态（{}）冲突，已记录异常", labels::refund_state(r.state)),
        RefundApplied::Unknown => "，本地无此退款".into(),
    }
}

/// The badge of an order's refunds as a whole.
pub fn refund_progress(progress: RefundProgress) -> (&'static str, &'static str) {
    match progress {
        RefundProgress::Anomaly => ("退款异常", "bad"),
        RefundProgress::Full => ("全额退款", "muted"),
        RefundProgress::InProgress => ("退款中", "wait"),
        RefundProgress::Partial => ("部分退款", "wait"),
        RefundProgress::None => ("无", "muted"),
    }
}

/// The answer to a refused sign-in. Unknown user, wrong password, locked and disabled account all
/// read the same (the page gives them one status too), so it never tells which usernames exist;
/// it says what may have happened instead.
pub fn sign_in_refused() -> String {
    format!(
        "用户名或密码错误，或账户已被锁定或停用。连续 {MAX_FAILURES_PER_ACCOUNT} 次密码错误会锁定账户 {} 分钟，\
         管理员可提前解锁",
        LOCKOUT.num_minutes()
    )
}

/// Too many tries from one address may say so: that reveals no account.
pub const SIGN_IN_RATE_LIMITED: &str = "尝试次数过多，请稍后再试";
