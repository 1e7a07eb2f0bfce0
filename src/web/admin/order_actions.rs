//! The actions on an order's page, each behind its role guard and [`AdminForm`], each audited,
//! each answered with a flash message and a redirect back to the order (post/redirect/get):
//! re-query (operators), close (operators), refund and refund retry (admins).

use rocket::form::FromForm;
use rocket::response::{Flash, Redirect};
use rocket::{State, post, routes};

use super::login::CsrfOnly;
use super::messages::{self, FlashKind};
use super::order_detail::checked_no;
use super::session::{AdminForm, CsrfField, Operator, Refunder};
use crate::domain::Fen;
use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::refund::RefundRequest;
use crate::wxpay::types::is_valid_merchant_no;

pub fn routes() -> Vec<rocket::Route> {
    routes![post_requery, post_close, post_refund, post_refund_retry]
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
    let no = checked_no(no)?.to_owned();
    let requeried = payments.requery(&no, &op.0.actor()).await?;
    let (ok, message) = messages::requeried(&requeried);
    Ok(if ok { Flash::success(to_order(&no), message) } else { Flash::error(to_order(&no), message) })
}

#[post("/admin/orders/<no>/close", data = "<_form>")]
async fn post_close(
    op: Operator,
    no: &str,
    _form: AdminForm<CsrfOnly>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let no = checked_no(no)?.to_owned();
    let outcome = payments.close_order(&no, Some(op.0.actor())).await?;
    let message = messages::close(&outcome);
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
    refunder: Refunder,
    no: &str,
    form: AdminForm<RefundForm>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let staff = refunder.0;
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
    match payments.request_refund(req, staff.actor()).await {
        Ok(done) => Ok(refund_flash(&no, &done)),
        Err(AppError::Invalid { message, .. } | AppError::Conflict(message)) => refuse(message),
        Err(e) => Err(e),
    }
}

#[post("/admin/orders/<no>/refunds/<out_refund_no>/retry", data = "<_form>")]
async fn post_refund_retry(
    refunder: Refunder,
    no: &str,
    out_refund_no: &str,
    _form: AdminForm<CsrfOnly>,
    payments: &State<Payments>,
) -> Result<Flash<Redirect>, AppError> {
    let staff = refunder.0;
    let no = checked_no(no)?.to_owned();
    if !is_valid_merchant_no(out_refund_no, 64) {
        return Err(AppError::NotFound("refund"));
    }
    match payments.retry_refund(&no, out_refund_no, staff.actor()).await {
        Ok(done) => Ok(refund_flash(&no, &done)),
        Err(AppError::Invalid { message, .. } | AppError::Conflict(message)) => {
            Ok(Flash::error(to_order(&no), message))
        }
        Err(e) => Err(e),
    }
}

fn refund_flash(no: &str, done: &crate::payments::refund::RefundRequested) -> Flash<Redirect> {
    let (kind, message) = messages::refund_requested(done);
    match kind {
        FlashKind::Success => Flash::success(to_order(no), message),
        FlashKind::Warning => Flash::warning(to_order(no), message),
        FlashKind::Error => Flash::error(to_order(no), message),
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
