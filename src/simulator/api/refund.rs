//! `/secapi/pay/refund` and `/pay/refundquery`: refund arithmetic and limits, idempotency by
//! out_refund_no, settlement after a delay (or forced by a test), and the refund notify.
//!
//! Refunds in REFUNDCLOSE give their amount back to the order (it may be refunded again);
//! PROCESSING, SUCCESS and CHANGE refunds count against the total.

use chrono::{DateTime, Utc};

use super::envelope::{ApiRequest, BizError, BizFields};
use super::query::find_order;
use super::trade::{OrderRef, RefundDraft, apply_refund};
use crate::simulator::model::{ApiVersion, OrderKey, RefundView, SimOrder, SimRefund, SimRefundStatus};
use crate::simulator::notify::{self, Target};
use crate::simulator::notify_body;
use crate::simulator::sim::clock;
use crate::simulator::{SimError, Simulator};
use crate::wxpay::money::Fen;
use crate::wxpay::time;
use crate::wxpay::types::{RefundStatus, is_valid_merchant_no};
use crate::wxpay::unified_order::validate_notify_url;

pub(crate) const MAX_REFUNDS: usize = 50;
pub(crate) const AMOUNTS_DIFFER: &str = "订单金额或退款金额与之前请求不一致，请核实后再试";

pub(crate) fn param(des: impl Into<String>) -> BizError {
    BizError::new("PARAM_ERROR", des)
}

/// Whether a new refund of `refund_fee` may be made on this paid order now.
pub(crate) fn check_new_refund(
    order: &SimOrder,
    total_fee: Fen,
    refund_fee: Fen,
    now: DateTime<Utc>,
    min_interval: chrono::Duration,
) -> Result<(), BizError> {
    if total_fee != order.total_fee {
        return Err(param(AMOUNTS_DIFFER));
    }
    if order.time_end.is_some_and(|paid| now - paid > chrono::Duration::days(365)) {
        return Err(BizError::new("TRADE_OVERDUE", "订单已经超过退款期限"));
    }
    let refunded = order.refunded();
    if refunded >= order.total_fee {
        return Err(BizError::new("ERROR", "订单已全额退款"));
    }
    if refunded.checked_add(refund_fee).is_none_or(|sum| sum > order.total_fee) {
        return Err(BizError::new("ERROR", "累计退款金额大于支付金额"));
    }
    if order.refunds.len() >= MAX_REFUNDS {
        return Err(BizError::new("ERROR", "订单已经超过可退款的最大次数（50次）"));
    }
    if let Some(last) = order.refunds.iter().map(|r| r.created_at).max()
        && now - last < min_interval
    {
        return Err(BizError::new("INVALID_REQ_TOO_MUCH", "同一笔订单两次退款之间须间隔至少1分钟，请稍后再试"));
    }
    Ok(())
}

fn refund_reply(order: &SimOrder, refund: &SimRefund) -> BizFields {
    vec![
        ("transaction_id", order.transaction_id.clone().unwrap_or_default()),
        ("out_trade_no", order.out_trade_no.clone()),
        ("out_refund_no", refund.out_refund_no.clone()),
        ("refund_id", refund.refund_id.clone()),
        ("refund_fee", refund.refund_fee.to_string()),
        ("settlement_refund_fee", refund.refund_fee.to_string()),
        ("total_fee", order.total_fee.to_string()),
        ("settlement_total_fee", order.total_fee.to_string()),
        ("fee_type", "CNY".into()),
        ("cash_fee", order.total_fee.to_string()),
        ("cash_fee_type", "CNY".into()),
        ("cash_refund_fee", refund.refund_fee.to_string()),
        ("coupon_refund_fee", "0".into()),
        ("coupon_refund_count", "0".into()),
    ]
}

fn positive_fen(req: &ApiRequest, name: &str) -> Result<Fen, BizError> {
    let raw = req.require(name)?;
    Fen::parse_api(raw)
        .ok()
        .filter(|f| f.is_positive())
        .ok_or_else(|| param(format!("{name}参数格式错误：必须是以分为单位的正整数，收到{raw:?}")))
}

pub(crate) fn refund(sim: &Simulator, req: &ApiRequest) -> Result<BizFields, BizError> {
    let out_refund_no = req.require("out_refund_no")?;
    if req.get("transaction_id").is_none() && req.get("out_trade_no").is_none() {
        return Err(BizError::new("LACK_PARAMS", "缺少参数out_trade_no或transaction_id"));
    }
    req.require("total_fee")?;
    req.require("refund_fee")?;
    if !is_valid_merchant_no(out_refund_no, 64) {
        return Err(param(format!("out_refund_no参数格式错误：1至64位字母、数字或_-|*@，收到{out_refund_no:?}")));
    }
    let total_fee = positive_fen(req, "total_fee")?;
    let refund_fee = positive_fen(req, "refund_fee")?;
    let account = req.get("refund_account").unwrap_or("REFUND_SOURCE_UNSETTLED_FUNDS").to_owned();
    if !matches!(account.as_str(), "REFUND_SOURCE_UNSETTLED_FUNDS" | "REFUND_SOURCE_RECHARGE_FUNDS") {
        return Err(param(format!("refund_account参数错误：{account:?}")));
    }
    if req.get("refund_fee_type").is_some_and(|t| t != "CNY") {
        return Err(param("refund_fee_type参数错误：仅支持CNY"));
    }
    if req.get("refund_desc").is_some_and(|d| d.len() > 80) {
        return Err(param("refund_desc参数长度有误：最多80字节"));
    }
    let notify_url = req.get("notify_url").map(str::to_owned);
    if notify_url.as_deref().is_some_and(|u| validate_notify_url(u).is_err()) {
        return Err(param("notify_url参数格式错误：须为不带参数的绝对http(s)地址"));
    }
    if notify_url.as_deref().is_some_and(|u| !sim.config().allows_callback(u)) {
        return Err(param("notify_url参数错误：模拟器只向本应用自己的地址发送通知"));
    }
    let order = match req.get("transaction_id") {
        Some(tx) => OrderRef::Transaction(tx),
        None => OrderRef::OutTradeNo(req.get("out_trade_no").unwrap_or_default()),
    };
    let draft = RefundDraft {
        mch_id: req.merchant.mch_id.clone(),
        out_refund_no: out_refund_no.to_owned(),
        total_fee,
        refund_fee,
        account,
        desc: req.get("refund_desc").map(str::to_owned),
        notify_url,
        api: ApiVersion::V2,
    };
    let done = apply_refund(sim, order, draft)?;
    Ok(refund_reply(&done.order, &done.refund))
}

/// After `refund_settle_delay × time_factor`, a refund still PROCESSING succeeds.
pub(crate) fn schedule_settlement(sim: &Simulator, key: OrderKey, out_refund_no: String) {
    let delay = sim.scaled(sim.config().refund_settle_delay);
    let generation = sim.generation();
    let task_sim = sim.clone();
    sim.spawn(async move {
        if task_sim.sleep_unless_stopped(delay, generation).await {
            let _ = settle(&task_sim, &key, &out_refund_no, SimRefundStatus::Success, true);
        }
    });
}

/// Restarts the settlement of every PROCESSING refund (after loading a state file).
pub(crate) fn resume_settlements(sim: &Simulator) {
    let pending: Vec<(OrderKey, String)> = sim.read(|s| {
        s.orders
            .iter()
            .flat_map(|(k, o)| {
                o.refunds
                    .iter()
                    .filter(|r| r.status == SimRefundStatus::Processing)
                    .map(move |r| (k.clone(), r.out_refund_no.clone()))
            })
            .collect()
    });
    for (key, no) in pending {
        schedule_settlement(sim, key, no);
    }
}

/// Sets a refund's outcome and starts its refund notify when it has a notify_url.
fn settle(
    sim: &Simulator,
    key: &OrderKey,
    out_refund_no: &str,
    status: SimRefundStatus,
    only_if_processing: bool,
) -> Result<RefundView, SimError> {
    let (view, deliver) = sim.write(|state| {
        let now = clock(state.clock_offset_ms);
        let order = state.orders.get_mut(key).ok_or(SimError::UnknownRefund)?;
        let index =
            order.refunds.iter().position(|r| r.out_refund_no == out_refund_no).ok_or(SimError::UnknownRefund)?;
        if only_if_processing && order.refunds[index].status != SimRefundStatus::Processing {
            return Ok((order.refunds[index].view(), None));
        }
        order.refunds[index].status = status;
        order.refunds[index].success_time = (status == SimRefundStatus::Success).then_some(now);
        let target = Target::Refund(key.clone(), out_refund_no.to_owned());
        let mut deliver = None;
        let refund = &order.refunds[index];
        let api = refund.api;
        if let Some(url) = refund.notify_url.clone()
            && status != SimRefundStatus::Processing
            && let Some(body) = notify_body::refund_notify(sim, order, refund, now)
        {
            let job = notify::new_job(&url, body, sim.roll_notify(), api);
            let dropped = job.status == crate::simulator::model::NotifyStatus::Dropped;
            order.refunds[index].notify = job;
            if dropped {
                state.log_attempt(notify::dropped_attempt(now, &target, &url, api));
            } else {
                deliver = Some(target);
            }
        }
        let view = state.orders.get(key).map(|o| o.refunds[index].view()).ok_or(SimError::UnknownRefund)?;
        Ok((view, deliver))
    })?;
    if let Some(target) = deliver {
        notify::spawn_delivery(sim, target);
    }
    Ok(view)
}

impl Simulator {
    /// Forces a refund's outcome (SUCCESS, CHANGE or REFUNDCLOSE; PROCESSING puts it back) and
    /// sends its refund notify when the refund request carried a notify_url.
    pub async fn settle_refund(&self, out_refund_no: &str, status: RefundStatus) -> Result<RefundView, SimError> {
        self.settle_refund_now(out_refund_no, status)
    }

    /// [`Simulator::settle_refund`] for synchronous callers (the control route).
    pub(crate) fn settle_refund_now(&self, out_refund_no: &str, status: RefundStatus) -> Result<RefundView, SimError> {
        let status = SimRefundStatus::from_wire(status).ok_or(SimError::UnsupportedStatus(status.to_string()))?;
        let key = self
            .read(|s| {
                let mut keys: Vec<_> = s.refund_index.iter().filter(|((_, no), _)| no == out_refund_no).collect();
                keys.sort();
                keys.first().map(|(_, k)| (*k).clone())
            })
            .ok_or(SimError::UnknownRefund)?;
        settle(self, &key, out_refund_no, status, false)
    }
}

pub(crate) fn refund_query(sim: &Simulator, req: &ApiRequest) -> Result<Vec<(String, String)>, BizError> {
    let offset: usize = match req.get("offset") {
        None => 0,
        Some(raw) => raw.parse().map_err(|_| param(format!("offset参数格式错误：{raw:?}")))?,
    };
    let not_found = || BizError::new("REFUNDNOTEXIST", "not exist");
    sim.read(|state| {
        let mch_id = req.merchant.mch_id.clone();
        let (key, only): (OrderKey, Option<String>) = if let Some(id) = req.get("refund_id") {
            let (k, no) = state.refund_id_index.get(&(mch_id, id.to_owned())).ok_or_else(not_found)?;
            (k.clone(), Some(no.clone()))
        } else if let Some(no) = req.get("out_refund_no") {
            let k = state.refund_index.get(&(mch_id, no.to_owned())).ok_or_else(not_found)?;
            (k.clone(), Some(no.to_owned()))
        } else if req.get("transaction_id").is_some() || req.get("out_trade_no").is_some() {
            (find_order(state, req).map_err(|_| not_found())?, None)
        } else {
            return Err(BizError::new("LACK_PARAMS", "缺少参数refund_id、out_refund_no、transaction_id或out_trade_no"));
        };
        let order = state.orders.get(&key).ok_or_else(not_found)?;
        let selected: Vec<&SimRefund> = match &only {
            Some(no) => order.refunds.iter().filter(|r| &r.out_refund_no == no).collect(),
            None => order.refunds.iter().skip(offset).take(10).collect(),
        };
        if selected.is_empty() {
            return Err(not_found());
        }
        let mut f: Vec<(String, String)> = vec![
            ("transaction_id".into(), order.transaction_id.clone().unwrap_or_default()),
            ("out_trade_no".into(), order.out_trade_no.clone()),
            ("total_fee".into(), order.total_fee.to_string()),
            ("settlement_total_fee".into(), order.total_fee.to_string()),
            ("fee_type".into(), "CNY".into()),
            ("cash_fee".into(), order.total_fee.to_string()),
            ("refund_count".into(), selected.len().to_string()),
        ];
        if only.is_none() {
            f.push(("total_refund_count".into(), order.refunds.len().to_string()));
        }
        for (n, r) in selected.iter().enumerate() {
            let mut put = |name: &str, v: String| f.push((format!("{name}_{n}"), v));
            put("out_refund_no", r.out_refund_no.clone());
            put("refund_id", r.refund_id.clone());
            put("refund_channel", "ORIGINAL".into());
            put("refund_fee", r.refund_fee.to_string());
            put("settlement_refund_fee", r.refund_fee.to_string());
            put("refund_status", r.status.as_str().into());
            put("refund_account", r.refund_account.clone());
            put("refund_recv_accout", "支付用户零钱".into());
            if r.status == SimRefundStatus::Success {
                put("refund_success_time", r.success_time.map(time::format_dashed).unwrap_or_default());
            }
        }
        Ok(f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::model::{NotifyJob, OrderState};
    use chrono::Duration;

    fn paid(total: i64) -> SimOrder {
        let now = Utc::now();
        SimOrder {
            appid: "wx".into(),
            mch_id: "m".into(),
            out_trade_no: "o".into(),
            body: "b".into(),
            attach: None,
            device_info: None,
            total_fee: Fen::new(total),
            fee_type: "CNY".into(),
            trade_type: "JSAPI".into(),
            openid: None,
            notify_url: String::new(),
            sign_type: "MD5".into(),
            time_expire: None,
            request: Default::default(),
            created_at: now,
            prepay_id: "wx1".into(),
            prepay_created_at: now,
            state: OrderState::Success,
            transaction_id: Some("42".into()),
            time_end: Some(now),
            bank_type: None,
            closed_at: None,
            refunds: vec![],
            notify: NotifyJob::default(),
            api: ApiVersion::V2,
        }
    }

    fn add(order: &mut SimOrder, fee: i64, status: SimRefundStatus, at: DateTime<Utc>) {
        order.refunds.push(SimRefund {
            out_refund_no: format!("r{}", order.refunds.len()),
            refund_id: "50".into(),
            refund_fee: Fen::new(fee),
            status,
            refund_account: String::new(),
            refund_desc: None,
            notify_url: None,
            created_at: at,
            success_time: None,
            notify: NotifyJob::default(),
            api: ApiVersion::V2,
        });
    }

    fn code(o: &SimOrder, total: i64, fee: i64, now: DateTime<Utc>) -> Option<&'static str> {
        check_new_refund(o, Fen::new(total), Fen::new(fee), now, Duration::seconds(60)).err().map(|e| e.code)
    }

    #[test]
    fn refund_arithmetic() {
        let now = Utc::now();
        let mut o = paid(100);
        assert_eq!(code(&o, 100, 100, now), None);
        assert_eq!(code(&o, 99, 10, now), Some("PARAM_ERROR"));
        assert_eq!(code(&o, 100, 101, now), Some("ERROR"));
        add(&mut o, 60, SimRefundStatus::Success, now - Duration::minutes(5));
        assert_eq!(code(&o, 100, 40, now), None);
        assert_eq!(code(&o, 100, 41, now), Some("ERROR"));
        add(&mut o, 30, SimRefundStatus::RefundClose, now - Duration::minutes(4));
        assert_eq!(o.refunded(), Fen::new(60), "a closed refund gives its amount back");
        add(&mut o, 40, SimRefundStatus::Processing, now - Duration::seconds(10));
        assert_eq!(code(&o, 100, 1, now), Some("ERROR"));
        let e = check_new_refund(&o, Fen::new(100), Fen::new(1), now, Duration::seconds(60)).unwrap_err();
        assert_eq!(e.des, "订单已全额退款");
    }

    #[test]
    fn refund_limits_in_time_and_count() {
        let now = Utc::now();
        let mut o = paid(1000);
        add(&mut o, 1, SimRefundStatus::Success, now - Duration::seconds(30));
        assert_eq!(code(&o, 1000, 1, now), Some("INVALID_REQ_TOO_MUCH"));
        assert_eq!(code(&o, 1000, 1, now + Duration::seconds(31)), None);
        for _ in 1..MAX_REFUNDS {
            add(&mut o, 1, SimRefundStatus::Success, now - Duration::hours(1));
        }
        assert_eq!(code(&o, 1000, 1, now + Duration::hours(1)), Some("ERROR"));
        let mut old = paid(100);
        old.time_end = Some(now - Duration::days(366));
        assert_eq!(code(&old, 100, 1, now), Some("TRADE_OVERDUE"));
    }
}
