//! The WeChat Pay API v2 endpoints: protocol layer, business handlers, fault injection, and
//! the Rocket routes that serve them (POST XML in, `text/xml` out, HTTP 200 even for errors).
//! The business operations themselves (`trade`, the bill rows) are protocol-neutral: the v3
//! layer (`simulator::v3`) calls them too.

mod bill;
mod envelope;
mod query;
mod refund;
mod routes;
mod trade;
mod unified_order;

pub(crate) use bill::{check_day, day_bill};
pub(crate) use envelope::{BizError, ClientCert};
pub(crate) use query::trade_state_desc;
pub(crate) use refund::resume_settlements;
pub(crate) use routes::routes;
pub(crate) use trade::{OrderRef, RefundDraft, apply_refund, close, find, place_order};
pub(crate) use unified_order::{PREPAY_TTL, Reentry};

use super::Simulator;
use super::faults::ApiFaults;
use crate::wxpay::types::BillType;

/// The API paths the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ApiPath {
    UnifiedOrder,
    OrderQuery,
    CloseOrder,
    Refund,
    RefundQuery,
    DownloadBill,
}

/// What an API call answers before transport concerns (faults that delay or corrupt).
pub(crate) enum ApiOutcome {
    Xml(String),
    Bill { gzip: bool, bill_type: BillType, records: Vec<super::bill_text::BillRecord> },
}

/// Runs one API call: protocol layer, the injected SYSTEMERROR (which changes nothing), then
/// the business handler.
pub(crate) fn dispatch(
    sim: &Simulator,
    path: ApiPath,
    body: &[u8],
    cert: &ClientCert,
    faults: ApiFaults,
) -> ApiOutcome {
    let req = match envelope::open(sim, body, cert) {
        Ok(r) => r,
        Err(return_msg) => return ApiOutcome::Xml(envelope::protocol_fail(return_msg)),
    };
    if faults.system_error {
        return ApiOutcome::Xml(match path {
            // The bill API reports its transient failure in its own error format.
            ApiPath::DownloadBill => bill::error_doc("system error", "20003"),
            _ => req.failure(&BizError::new("SYSTEMERROR", "系统繁忙,请稍后再试")),
        });
    }
    let xml = match path {
        // Refused at the protocol layer, as WeChat does: an openid of another appid.
        ApiPath::UnifiedOrder
            if req.get("openid").is_some_and(|o| super::mini_program::openid_mismatch(sim, &req.merchant.appid, o)) =>
        {
            envelope::protocol_fail(super::mini_program::OPENID_MISMATCH)
        }
        ApiPath::UnifiedOrder => req.reply(unified_order::handle(sim, &req)),
        ApiPath::OrderQuery => req.reply(query::order_query(sim, &req)),
        ApiPath::CloseOrder => req.reply(query::close_order(sim, &req)),
        ApiPath::Refund => req.reply(refund::refund(sim, &req)),
        ApiPath::RefundQuery => req.reply(refund::refund_query(sim, &req)),
        ApiPath::DownloadBill => {
            return match bill::download_bill(sim, &req) {
                bill::BillAnswer::Error(xml) => ApiOutcome::Xml(xml),
                bill::BillAnswer::Bill { gzip, bill_type, records } => ApiOutcome::Bill { gzip, bill_type, records },
            };
        }
    };
    ApiOutcome::Xml(xml)
}
