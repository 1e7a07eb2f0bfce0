//! Between the product's protocol-neutral calls and v3 bodies: a [`UnifiedOrder`] becomes a JSAPI
//! prepay request, and every v3 answer is read into the same reply types (through the same
//! `from_fields` checks) that v2 answers are, so nothing above the seam knows the version.

use crate::wxpay::error::WxError;
use crate::wxpay::order_query::OrderQueryReply;
use crate::wxpay::refund::{Refund, RefundQueryReply, RefundReply};
use crate::wxpay::time::{format_compact, format_dashed};
use crate::wxpay::types::OrderRef;
use crate::wxpay::unified_order::UnifiedOrder;
use crate::wxpay::xml::Fields;

use super::models::{
    OrderAmount, Payer, PrepayRequest, RefundObject, RefundRequest, RefundRequestAmount, SceneInfo, Transaction,
    format_time, parse_time,
};

/// The identity answers are checked against: our mchid and the appids bound to it.
pub struct Ours<'a> {
    pub mchid: &'a str,
    pub appids: &'a [String],
}

impl Ours<'_> {
    fn check(&self, mchid: &str, appid: Option<&str>) -> Result<(), WxError> {
        if mchid != self.mchid {
            return Err(WxError::ForeignReply { field: "mchid", got: mchid.to_owned() });
        }
        match appid {
            Some(a) if !self.appids.iter().any(|ours| ours == a) => {
                Err(WxError::ForeignReply { field: "appid", got: a.to_owned() })
            }
            _ => Ok(()),
        }
    }
}

/// The JSAPI prepay body for `req`, paid in `appid`.
pub fn prepay_request(req: &UnifiedOrder, appid: &str, mchid: &str) -> Result<PrepayRequest, WxError> {
    let openid =
        req.openid.clone().ok_or_else(|| WxError::InvalidRequest("a JSAPI prepay needs the payer's openid".into()))?;
    Ok(PrepayRequest {
        appid: appid.to_owned(),
        mchid: mchid.to_owned(),
        description: req.body.clone(),
        out_trade_no: req.out_trade_no.clone(),
        time_expire: req.time_expire.map(format_time),
        attach: req.attach.clone(),
        notify_url: req.notify_url.clone(),
        goods_tag: req.goods_tag.clone(),
        amount: OrderAmount { total: req.total_fee.get(), currency: Some("CNY".into()) },
        payer: Payer { openid },
        scene_info: Some(SceneInfo { payer_client_ip: req.spbill_create_ip.clone(), device_id: None }),
    })
}

pub fn refund_request(req: &Refund) -> RefundRequest {
    let (transaction_id, out_trade_no) = match &req.order {
        OrderRef::TransactionId(t) => (Some(t.clone()), None),
        OrderRef::OutTradeNo(o) => (None, Some(o.clone())),
    };
    RefundRequest {
        transaction_id,
        out_trade_no,
        out_refund_no: req.out_refund_no.clone(),
        reason: req.refund_desc.clone(),
        notify_url: req.notify_url.clone(),
        // v2's `REFUND_SOURCE_RECHARGE_FUNDS` draws on the available balance, v3's `AVAILABLE`.
        funds_account: req.refund_account.as_ref().map(|_| "AVAILABLE".to_owned()),
        amount: RefundRequestAmount {
            refund: req.refund_fee.get(),
            total: req.total_fee.get(),
            currency: "CNY".into(),
        },
    }
}

fn put(fields: &mut Fields, key: &str, value: Option<impl ToString>) {
    if let Some(v) = value {
        fields.insert(key, v.to_string());
    }
}

fn time_field(field: &str, value: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, WxError> {
    value.map(|t| parse_time(t).ok_or_else(|| WxError::bad_field(field, format!("not RFC 3339: {t:?}")))).transpose()
}

/// A Transaction (query answer), read as an orderquery reply.
pub fn order_query_reply(t: Transaction, ours: &Ours<'_>) -> Result<OrderQueryReply, WxError> {
    ours.check(&t.mchid, Some(&t.appid))?;
    let mut f = Fields::new();
    f.insert("trade_state", t.trade_state.clone());
    put(&mut f, "trade_state_desc", t.trade_state_desc.as_ref());
    f.insert("out_trade_no", t.out_trade_no.clone());
    put(&mut f, "transaction_id", t.transaction_id.as_ref());
    let amount = t.amount.unwrap_or_default();
    put(&mut f, "total_fee", amount.total);
    put(&mut f, "cash_fee", amount.payer_total);
    put(&mut f, "fee_type", amount.currency.as_ref());
    put(&mut f, "openid", t.payer.map(|p| p.openid));
    put(&mut f, "trade_type", t.trade_type.as_ref());
    put(&mut f, "bank_type", t.bank_type.as_ref());
    put(&mut f, "attach", t.attach.as_ref());
    put(&mut f, "time_end", time_field("success_time", t.success_time.as_deref())?.map(format_compact));
    f.insert("mch_id", t.mchid);
    f.insert("appid", t.appid);
    OrderQueryReply::from_fields(f)
}

/// v3 refund states by their v2 names (`CLOSED` is v2's `REFUNDCLOSE`, `ABNORMAL` its `CHANGE`).
pub fn refund_status_v2(status: &str) -> &str {
    match status {
        "CLOSED" => "REFUNDCLOSE",
        "ABNORMAL" => "CHANGE",
        other => other,
    }
}

fn refund_fields(r: &RefundObject) -> Result<Fields, WxError> {
    let mut f = Fields::new();
    f.insert("transaction_id", r.transaction_id.clone());
    f.insert("out_trade_no", r.out_trade_no.clone());
    f.insert("out_refund_no", r.out_refund_no.clone());
    f.insert("refund_id", r.refund_id.clone());
    f.insert("refund_fee", r.amount.refund.to_string());
    f.insert("total_fee", r.amount.total.to_string());
    put(&mut f, "cash_fee", r.amount.payer_total);
    put(&mut f, "cash_refund_fee", r.amount.payer_refund);
    f.insert("refund_status", refund_status_v2(&r.status).to_owned());
    put(&mut f, "success_time", time_field("success_time", r.success_time.as_deref())?.map(format_dashed));
    Ok(f)
}

/// A Refund object (refund create answer), read as a refund reply.
pub fn refund_reply(r: RefundObject) -> Result<RefundReply, WxError> {
    RefundReply::from_fields(refund_fields(&r)?)
}

/// A Refund object (refund query answer), read as a refundquery reply about that one refund.
pub fn refund_query_reply(r: RefundObject) -> Result<RefundQueryReply, WxError> {
    let mut f = refund_fields(&r)?;
    f.insert("refund_count", "1");
    f.insert("out_refund_no_0", r.out_refund_no.clone());
    f.insert("refund_id_0", r.refund_id.clone());
    put(&mut f, "refund_channel_0", r.channel.as_ref());
    f.insert("refund_fee_0", r.amount.refund.to_string());
    put(&mut f, "settlement_refund_fee_0", r.amount.settlement_refund);
    f.insert("refund_status_0", refund_status_v2(&r.status).to_owned());
    put(&mut f, "refund_account_0", r.funds_account.as_ref());
    put(&mut f, "refund_recv_accout_0", r.user_received_account.as_ref());
    put(&mut f, "refund_success_time_0", time_field("success_time", r.success_time.as_deref())?.map(format_dashed));
    RefundQueryReply::from_fields(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::Fen;
    use crate::wxpay::types::{RefundStatus, TradeState};

    const OURS: Ours<'static> = Ours { mchid: "16", appids: &[] };

    #[test]
    fn a_real_success_answer_reads_as_a_paid_order() {
        let body = r#"{"transaction_id":"4200001863202305068344507881","amount":{"currency":"CNY","payer_currency":"CNY","payer_total":1,"total":1},"mchid":"16","trade_state":"SUCCESS","bank_type":"OTHERS","promotion_detail":[],"success_time":"2023-05-06T15:17:31+08:00","payer":{"openid":"oPuGI5"},"out_trade_no":"o1","appid":"wx1","trade_state_desc":"支付成功","trade_type":"JSAPI","attach":"5_21"}"#;
        let appids = ["wx1".to_owned()];
        let reply =
            order_query_reply(serde_json::from_str(body).unwrap(), &Ours { mchid: "16", appids: &appids }).unwrap();
        assert_eq!(reply.trade_state, TradeState::Success);
        let paid = reply.payment().unwrap();
        assert_eq!((paid.transaction_id.as_str(), paid.total_fee), ("4200001863202305068344507881", Fen::new(1)));
        assert_eq!(paid.time_end.unwrap().to_rfc3339(), "2023-05-06T07:17:31+00:00");
    }

    #[test]
    fn foreign_and_incomplete_answers_are_refused() {
        let t =
            Transaction { mchid: "17".into(), appid: "wx1".into(), trade_state: "NOTPAY".into(), ..Default::default() };
        assert!(matches!(order_query_reply(t, &OURS), Err(WxError::ForeignReply { field: "mchid", .. })));
        let appids = ["wx1".to_owned()];
        let t =
            Transaction { mchid: "16".into(), appid: "wx2".into(), trade_state: "NOTPAY".into(), ..Default::default() };
        let ours = Ours { mchid: "16", appids: &appids };
        assert!(matches!(order_query_reply(t, &ours), Err(WxError::ForeignReply { field: "appid", .. })));
        let t = Transaction {
            mchid: "16".into(),
            appid: "wx1".into(),
            trade_state: "SUCCESS".into(),
            ..Default::default()
        };
        assert!(matches!(order_query_reply(t, &ours), Err(WxError::BadReplyField { .. })));
    }

    #[test]
    fn a_real_refund_answer_reads() {
        let body = r#"{"amount":{"currency":"CNY","discount_refund":0,"from":[],"payer_refund":10,"payer_total":10,"refund":10,"refund_fee":0,"settlement_refund":10,"settlement_total":10,"total":10},"channel":"ORIGINAL","create_time":"2024-07-31T16:55:39+08:00","funds_account":"AVAILABLE","out_refund_no":"r1","out_trade_no":"o1","promotion_detail":[],"refund_id":"50303400132024073135461150169","status":"PROCESSING","transaction_id":"4200002346202407227299244938","user_received_account":"支付用户零钱"}"#;
        let object: RefundObject = serde_json::from_str(body).unwrap();
        let reply = refund_reply(object.clone()).unwrap();
        assert_eq!((reply.refund_fee, reply.total_fee), (Fen::new(10), Fen::new(10)));
        let mut done = object;
        done.status = "ABNORMAL".into();
        let q = refund_query_reply(done).unwrap();
        assert_eq!(q.refunds[0].status, RefundStatus::Change);
        assert_eq!(q.refunds[0].recv_account.as_deref(), Some("支付用户零钱"));
    }
}
