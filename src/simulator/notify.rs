//! Notify delivery, payment and refund alike: building the messages (the payment notify signed
//! without `sign_type`, the refund notify with an encrypted `req_info`), POSTing them on
//! WeChat's retry schedule (scaled by `time_factor`), the drop/duplicate/concurrent/late faults, and
//! the attempt log.

use std::time::Duration;

use rocket::futures::future::join_all;

use super::Simulator;
use super::faults::NotifyPlan;
use super::model::{NotifyAttempt, NotifyJob, NotifyStatus, OrderKey, SimOrder, SimRefund, SimRefundStatus};
use super::state::SimState;
use crate::wxpay::money::Fen;
use crate::wxpay::nonce::nonce_str;
use crate::wxpay::refund_notify::encrypt_req_info;
use crate::wxpay::sign::{self, ApiKey, SignType};
use crate::wxpay::time;
use crate::wxpay::xml::{self, Fields};

/// WeChat's retry delays after the first attempt: 15 retries over about 24 hours.
pub const RETRY_SCHEDULE: [Duration; 15] = [
    Duration::from_secs(15),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(3 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(20 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(6 * 3600),
];

/// The delay before attempt `n` (0 = the first, immediate attempt); None once retries are over.
pub(crate) fn delay_before(n: u32) -> Option<Duration> {
    match n {
        0 => Some(Duration::ZERO),
        n => RETRY_SCHEDULE.get(n as usize - 1).copied(),
    }
}

/// Which notify a delivery task carries.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Payment(OrderKey),
    Refund(OrderKey, String),
}

fn job_mut<'a>(state: &'a mut SimState, target: &Target) -> Option<&'a mut NotifyJob> {
    match target {
        Target::Payment(key) => state.orders.get_mut(key).map(|o| &mut o.notify),
        Target::Refund(key, no) => state
            .orders
            .get_mut(key)
            .and_then(|o| o.refunds.iter_mut().find(|r| &r.out_refund_no == no))
            .map(|r| &mut r.notify),
    }
}

/// The payment notify: signed with the order's algorithm but, like WeChat's, without `sign_type`.
pub(crate) fn payment_body(order: &SimOrder, key: &ApiKey, amount_delta: i64) -> String {
    let amount = Fen::new(order.total_fee.get().saturating_add(amount_delta)).to_string();
    let mut f = Fields::new();
    f.insert("appid", order.appid.clone());
    f.insert("mch_id", order.mch_id.clone());
    if let Some(device) = &order.device_info {
        f.insert("device_info", device.clone());
    }
    f.insert("nonce_str", nonce_str());
    f.insert("result_code", "SUCCESS");
    f.insert("return_code", "SUCCESS");
    f.insert("openid", order.openid.clone().unwrap_or_default());
    f.insert("is_subscribe", "N");
    f.insert("trade_type", order.trade_type.clone());
    f.insert("bank_type", order.bank_type.clone().unwrap_or_else(|| "OTHERS".into()));
    f.insert("total_fee", amount.clone());
    f.insert("fee_type", "CNY");
    f.insert("cash_fee", amount);
    f.insert("transaction_id", order.transaction_id.clone().unwrap_or_default());
    f.insert("out_trade_no", order.out_trade_no.clone());
    if let Some(attach) = &order.attach {
        f.insert("attach", attach.clone());
    }
    f.insert("time_end", order.time_end.map(time::format_compact).unwrap_or_default());
    let sign_type = SignType::parse(&order.sign_type).unwrap_or_default();
    f.insert("sign", sign::sign(f.pairs(), key, sign_type));
    f.to_xml()
}

/// The refund notify: an unsigned outer message around the AES-encrypted `<root>` document.
pub(crate) fn refund_body(order: &SimOrder, refund: &SimRefund, key: &ApiKey) -> String {
    let total = order.total_fee.to_string();
    let fee = refund.refund_fee.to_string();
    let success_time = match refund.status {
        SimRefundStatus::Success => refund.success_time.map(time::format_dashed).unwrap_or_default(),
        _ => String::new(),
    };
    let root = xml::write_document(
        "root",
        [
            ("transaction_id", order.transaction_id.as_deref().unwrap_or_default()),
            ("out_trade_no", order.out_trade_no.as_str()),
            ("refund_id", refund.refund_id.as_str()),
            ("out_refund_no", refund.out_refund_no.as_str()),
            ("total_fee", total.as_str()),
            ("settlement_total_fee", total.as_str()),
            ("refund_fee", fee.as_str()),
            ("settlement_refund_fee", fee.as_str()),
            ("refund_status", refund.status.as_str()),
            ("success_time", success_time.as_str()),
            ("refund_recv_accout", "支付用户零钱"),
            ("refund_account", refund.refund_account.as_str()),
            ("refund_request_source", "API"),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty()),
    );
    let req_info = encrypt_req_info(&root, key);
    let nonce = nonce_str();
    xml::write_document(
        "xml",
        [
            ("return_code", "SUCCESS"),
            ("appid", order.appid.as_str()),
            ("mch_id", order.mch_id.as_str()),
            ("nonce_str", nonce.as_str()),
            ("req_info", req_info.as_str()),
        ],
    )
}

/// A new job for `body`, or a dropped one when the fault dice say so.
pub(crate) fn new_job(url: &str, body: String, plan: NotifyPlan) -> NotifyJob {
    NotifyJob {
        id: rand::random(),
        status: if plan.dropped { NotifyStatus::Dropped } else { NotifyStatus::Pending },
        url: url.to_owned(),
        body,
        next_attempt: 0,
        duplicates: plan.duplicates,
        concurrent: plan.concurrent,
        first_delay_ms: plan.late.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

/// Records the fact that a dropped notify was swallowed, so tests can see it.
pub(crate) fn dropped_attempt(sim_now: chrono::DateTime<chrono::Utc>, target: &Target, url: &str) -> NotifyAttempt {
    attempt_record(target, 0, "dropped", sim_now, url, Sent::default())
}

#[derive(Default)]
struct Sent {
    http_status: Option<u16>,
    error: Option<String>,
    reply: String,
    accepted: bool,
}

fn attempt_record(
    target: &Target,
    attempt: u32,
    copy: &str,
    at: chrono::DateTime<chrono::Utc>,
    url: &str,
    sent: Sent,
) -> NotifyAttempt {
    let (kind, key, no) = match target {
        Target::Payment(key) => ("payment", key, None),
        Target::Refund(key, no) => ("refund", key, Some(no.clone())),
    };
    NotifyAttempt {
        kind: kind.into(),
        mch_id: key.0.clone(),
        out_trade_no: key.1.clone(),
        out_refund_no: no,
        attempt,
        copy: copy.into(),
        at,
        url: url.into(),
        http_status: sent.http_status,
        error: sent.error,
        reply: sent.reply,
        accepted: sent.accepted,
    }
}

/// Delivered iff HTTP 200 and an XML body with return_code SUCCESS.
fn accepts(status: u16, body: &[u8]) -> bool {
    status == 200 && xml::parse(body).is_ok_and(|f| f.get("return_code") == Some("SUCCESS"))
}

async fn send(http: &reqwest::Client, url: &str, body: &str) -> Sent {
    let reply = http.post(url).header(reqwest::header::CONTENT_TYPE, "text/xml").body(body.to_owned()).send().await;
    let mut resp = match reply {
        Ok(r) => r,
        Err(e) => return Sent { error: Some(error_text(&e)), ..Sent::default() },
    };
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if bytes.len() < 64 * 1024 => bytes.extend_from_slice(&chunk),
            Ok(Some(_)) => break,
            Ok(None) => break,
            Err(e) => {
                return Sent { http_status: Some(status), error: Some(error_text(&e)), ..Sent::default() };
            }
        }
    }
    Sent {
        http_status: Some(status),
        error: None,
        reply: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        accepted: accepts(status, &bytes),
    }
}

fn error_text(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() { "timeout".to_owned() } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// Starts (or resumes) the delivery of the target's pending notify in the background, unless a
/// task already delivers that very job.
pub(crate) fn spawn_delivery(sim: &Simulator, target: Target) {
    let Some(job_id) = sim.read(|s| job_ref(s, &target).map(|j| j.id)) else { return };
    let Some(claim) = sim.claim_job(job_id) else { return };
    let generation = sim.generation();
    let task_sim = sim.clone();
    sim.spawn(async move {
        let _claim = claim;
        deliver(task_sim, target, job_id, generation).await;
    });
}

async fn deliver(sim: Simulator, target: Target, job_id: u64, generation: u64) {
    loop {
        let Some(job) = sim.read(|s| job_ref(s, &target).cloned()) else {
            return;
        };
        // A newer notify for the same target (a re-settled refund) has its own task.
        if job.id != job_id || job.status != NotifyStatus::Pending {
            return;
        }
        let Some(delay) = delay_before(job.next_attempt) else {
            sim.write(|s| {
                job_mut(s, &target).into_iter().filter(|j| j.id == job_id).for_each(|j| j.status = NotifyStatus::GaveUp)
            });
            return;
        };
        // A late first delivery (the fault) is held back in real time; retries follow WeChat's
        // schedule at the time factor.
        let wait = match job.next_attempt {
            0 => Duration::from_millis(job.first_delay_ms),
            _ => sim.scaled(delay),
        };
        if !sim.sleep_unless_stopped(wait, generation).await {
            return;
        }
        let first = job.next_attempt == 0;
        let copies = if first { job.concurrent.max(1) } else { 1 };
        let at = sim.now();
        let results = join_all((0..copies).map(|_| send(sim.http(), &job.url, &job.body))).await;
        if sim.generation() != generation {
            return;
        }
        let accepted = results.iter().any(|r| r.accepted);
        let number = job.next_attempt + 1;
        sim.write(|s| {
            for (i, sent) in results.into_iter().enumerate() {
                let copy = match (first, i) {
                    (true, 0) => "first",
                    (true, _) => "concurrent",
                    (false, _) => "retry",
                };
                s.log_attempt(attempt_record(&target, number, copy, at, &job.url, sent));
            }
            if let Some(j) = job_mut(s, &target).filter(|j| j.id == job_id) {
                j.next_attempt = number;
                if accepted {
                    j.status = NotifyStatus::Delivered;
                } else if delay_before(number).is_none() {
                    j.status = NotifyStatus::GaveUp;
                }
            }
        });
        if accepted {
            for _ in 0..job.duplicates {
                let at = sim.now();
                let sent = send(sim.http(), &job.url, &job.body).await;
                if sim.generation() != generation {
                    return;
                }
                sim.write(|s| s.log_attempt(attempt_record(&target, number, "duplicate", at, &job.url, sent)));
            }
            return;
        }
    }
}

fn job_ref<'a>(state: &'a SimState, target: &Target) -> Option<&'a NotifyJob> {
    match target {
        Target::Payment(key) => state.orders.get(key).map(|o| &o.notify),
        Target::Refund(key, no) => {
            state.orders.get(key).and_then(|o| o.refunds.iter().find(|r| &r.out_refund_no == no)).map(|r| &r.notify)
        }
    }
}

/// Restarts every pending delivery (after loading a state file).
pub(crate) fn resume_all(sim: &Simulator) {
    let targets: Vec<Target> = sim.read(|s| {
        let mut t = Vec::new();
        for (key, order) in &s.orders {
            if order.notify.status == NotifyStatus::Pending {
                t.push(Target::Payment(key.clone()));
            }
            for r in &order.refunds {
                if r.notify.status == NotifyStatus::Pending {
                    t.push(Target::Refund(key.clone(), r.out_refund_no.clone()));
                }
            }
        }
        t
    });
    for target in targets {
        spawn_delivery(sim, target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_wechats() {
        assert_eq!(delay_before(0), Some(Duration::ZERO));
        assert_eq!(delay_before(1), Some(Duration::from_secs(15)));
        assert_eq!(delay_before(4), Some(Duration::from_secs(180)));
        assert_eq!(delay_before(15), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(delay_before(16), None);
        let total: Duration = RETRY_SCHEDULE.iter().sum();
        assert_eq!(total, Duration::from_secs(24 * 3600 + 4 * 60));
    }

    #[test]
    fn acceptance_needs_200_and_success_xml() {
        let ok = crate::wxpay::notify::SUCCESS_REPLY.as_bytes();
        assert!(accepts(200, ok));
        assert!(!accepts(500, ok));
        assert!(!accepts(200, b"SUCCESS"));
        assert!(!accepts(200, b"<xml><return_code>FAIL</return_code></xml>"));
        assert!(accepts(200, b"<xml><return_code>SUCCESS</return_code></xml>"));
    }
}
