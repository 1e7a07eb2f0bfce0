//! The actions on an order's page, each behind its role guard and [`AdminForm`], each audited,
//! each answered with a flash message and a redirect back to the order (post/redirect/get):
//! re-query (operators), close (operators), refund and refund retry (admins).

use rocket::form::FromForm;
use rocket::response::{Flash, Redirect};
use rocket::{State, post, routes};
use serde_json::json;

use super::login::CsrfOnly;
use super::order_detail::checked_no;
use super::session::{Admin, AdminForm, CsrfField, Operator, Staff};
use super::view::{state_label, yuan};
use crate::db::events;
use crate::domain::Fen;
use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::refund::{Actor, RefundRequest, RefundRequested, describe_app, state_label as refund_state_label};
use crate::wxpay::types::is_valid_merchant_no;

pub fn routes() -> Vec<rocket::Route> {
    routes![post_requery, post_close, post_refund, post_refund_retry]
}

fn actor(staff: &Staff) -> Actor {
    Actor { username: staff.username.clone(), remote_addr: staff.remote_addr.clone() }
}

fn to_order(no: &str) -> Redirect {
    Redirect::to(format!("/admin/orders/{no}"))
}

#[post("/admin/orders/<no>/requery", data = "<_form>")]
async fn post_requery(
    op: Operator,
    no: &str,
    _form: AdminForm<CsrfOnly>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let staff = op.0;
    let no = checked_no(no)?.to_owned();
    let before = payments.load(&no).await?;
    let (ok, mut message) = match payments.refresh_from_wechat(&no, true).await {
        Ok(after) => {
            let key = no.clone();
            let last = payments.db.read(move |c| events::latest_of_kind(c, &key, "queried")).await?;
            let said = last
                .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.detail).ok())
                .and_then(|d| d["trade_state"].as_str().or(d["result"].as_str()).map(str::to_owned))
                .unwrap_or_else(|| "（无结果）".into());
            let change = if after.state != before.state {
                format!("订单已标记为{}", state_label(after.state))
            } else {
                format!("订单状态未变（{}）", state_label(after.state))
            };
            (true, format!("微信支付返回 {said}，{change}"))
        }
        Err(e) => (false, format!("查询订单失败：{}", describe_app(&e))),
    };
    let refund_lines = match payments.sync_refunds(&no).await {
        Ok(lines) => lines,
        Err(e) => vec![format!("查询退款失败：{}", describe_app(&e))],
    };
    for line in &refund_lines {
        message.push('；');
        message.push_str(line);
    }
    let a = actor(&staff);
    let (key, detail) = (no.clone(), json!({ "ok": ok, "result": message }));
    payments.db.write(move |c| a.record(c, "requery", Some(&key), None, detail)).await?;
    Ok(if ok { Flash::success(to_order(&no), message) } else { Flash::error(to_order(&no), message) })
}

#[post("/admin/orders/<no>/close", data = "<_form>")]
async fn post_close(
    op: Operator,
    no: &str,
    _form: AdminForm<CsrfOnly>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let staff = op.0;
    let no = checked_no(no)?.to_owned();
    let outcome = payments.close_order(&no, Some(actor(&staff))).await?;
    let message = outcome.message();
    Ok(if outcome.is_success() { Flash::success(to_order(&no), message) } else { Flash::error(to_order(&no), message) })
}

#[derive(FromForm)]
struct RefundForm {
    #[field(default = String::new())]
    csrf: String,
    #[field(default = String::new())]
    out_refund_no: String,
    #[field(default = String::new())]
    amount: String,
    #[field(default = String::new())]
    reason: String,
    #[field(default = String::new())]
    confirm: String,
}

impl CsrfField for RefundForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Parses a yuan amount exactly (`19.9`, `¥1,234.50`): no floating point, at most two decimals.
pub fn parse_amount(input: &str) -> Option<Fen> {
    let cleaned: String = input.trim().trim_start_matches(['¥', '￥']).trim().chars().filter(|c| *c != ',').collect();
    if cleaned.is_empty() || cleaned.starts_with('-') {
        return None;
    }
    Fen::parse_yuan(&cleaned).ok().filter(|f| f.is_positive())
}

#[post("/admin/orders/<no>/refund", data = "<form>")]
async fn post_refund(
    admin: Admin,
    no: &str,
    form: AdminForm<RefundForm>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let staff = admin.0;
    let no = checked_no(no)?.to_owned();
    let form = form.0;
    let refuse = |m: String| Ok(Flash::error(to_order(&no), m));
    if form.confirm != "yes" {
        return refuse("请勾选确认后再提交退款".into());
    }
    let Some(amount) = parse_amount(&form.amount) else {
        return refuse(format!("退款金额“{}”无效：请输入以元为单位、最多两位小数的正数", form.amount.trim()));
    };
    let req =
        RefundRequest { out_trade_no: no.clone(), out_refund_no: form.out_refund_no, amount, reason: form.reason };
    match payments.request_refund(req, actor(&staff)).await {
        Ok(done) => Ok(refund_flash(&no, &done)),
        Err(AppError::Invalid { message, .. } | AppError::Conflict(message)) => refuse(message),
        Err(e) => Err(e),
    }
}

#[post("/admin/orders/<no>/refunds/<out_refund_no>/retry", data = "<_form>")]
async fn post_refund_retry(
    admin: Admin,
    no: &str,
    out_refund_no: &str,
    _form: AdminForm<CsrfOnly>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let staff = admin.0;
    let no = checked_no(no)?.to_owned();
    if !is_valid_merchant_no(out_refund_no, 64) {
        return Err(AppError::NotFound("refund"));
    }
    match payments.retry_refund(&no, out_refund_no, actor(&staff)).await {
        Ok(done) => Ok(refund_flash(&no, &done)),
        Err(AppError::Invalid { message, .. } | AppError::Conflict(message)) => {
            Ok(Flash::error(to_order(&no), message))
        }
        Err(e) => Err(e),
    }
}

fn refund_flash(no: &str, done: &RefundRequested) -> Flash<Redirect> {
    let to = to_order(no);
    match done {
        RefundRequested::Accepted(r) => Flash::success(
            to,
            format!(
                "退款 {}（{}）已提交，微信支付已受理，当前状态：{}",
                r.out_refund_no,
                yuan(r.amount),
                refund_state_label(r.state)
            ),
        ),
        RefundRequested::Pending { refund, error } => Flash::warning(
            to,
            format!(
                "退款 {}（{}）未得到微信支付确认：{error}。金额已保留，可点击“重试”用同一退款单号重新提交",
                refund.out_refund_no,
                yuan(refund.amount)
            ),
        ),
        RefundRequested::Refused { refund, error } => {
            Flash::error(to, format!("微信支付拒绝退款 {}：{error}。已释放该笔金额", refund.out_refund_no))
        }
        RefundRequested::AlreadyRequested(r) => Flash::warning(
            to,
            format!("退款 {} 已提交过（当前状态：{}），未重复退款", r.out_refund_no, refund_state_label(r.state)),
        ),
        RefundRequested::InFlight(r) => Flash::warning(to, format!("退款 {} 正在提交中，未重复提交", r.out_refund_no)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(parse_amount("19.9"), Some(Fen::new(1990)));
        assert_eq!(parse_amount(" ¥1,234.50 "), Some(Fen::new(123_450)));
        assert_eq!(parse_amount("0.01"), Some(Fen::new(1)));
        for bad in ["", "0", "0.00", "-1", "1.001", "1e2", "abc", "¥", "1.2.3"] {
            assert_eq!(parse_amount(bad), None, "{bad:?}");
        }
    }
}
