//! Notify delivery, payment and refund alike, v2 and v3 alike (the messages are built by
//! [`super::notify_body`]): POSTing them on WeChat's retry schedule (scaled by `time_factor`), the
//! drop/duplicate/concurrent/late faults, and the attempt log. A v3 notify is signed afresh at each
//! attempt, since its timestamp must be the attempt's, and may carry a `WECHATPAY/SIGNTEST/` probe
//! (a fault): the merchant refuses it, and the retry is correctly signed. v2 is delivered when
//! answered 200 with `return_code` SUCCESS, v3 when answered 200 or 204 (the body does not matter).

use std::time::Duration;

use rocket::futures::future::join_all;

use super::Simulator;
use super::faults::NotifyPlan;
use super::model::{ApiVersion, NotifyAttempt, NotifyJob, NotifyStatus, OrderKey};
use super::state::SimState;
use super::v3;
use crate::wxpay::xml;

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

/// A new job for `body`, or a dropped one when the fault dice say so.
pub(crate) fn new_job(url: &str, body: String, plan: NotifyPlan, api: ApiVersion) -> NotifyJob {
    NotifyJob {
        id: rand::random(),
        status: if plan.dropped { NotifyStatus::Dropped } else { NotifyStatus::Pending },
        url: url.to_owned(),
        body,
        next_attempt: 0,
        duplicates: plan.duplicates,
        concurrent: plan.concurrent,
        first_delay_ms: plan.late.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        api,
    }
}

/// Records the fact that a dropped notify was swallowed, so tests can see it.
pub(crate) fn dropped_attempt(
    sim_now: chrono::DateTime<chrono::Utc>,
    target: &Target,
    url: &str,
    api: ApiVersion,
) -> NotifyAttempt {
    attempt_record(target, 0, "dropped", sim_now, url, Sent { api, ..Sent::default() })
}

#[derive(Default)]
struct Sent {
    http_status: Option<u16>,
    error: Option<String>,
    reply: String,
    accepted: bool,
    api: ApiVersion,
    probe: bool,
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
        api: sent.api,
        signature_probe: sent.probe,
    }
}

/// v2: delivered iff HTTP 200 and an XML body with return_code SUCCESS. v3: iff HTTP 200 or 204.
fn accepts(api: ApiVersion, status: u16, body: &[u8]) -> bool {
    match api {
        ApiVersion::V2 => status == 200 && xml::parse(body).is_ok_and(|f| f.get("return_code") == Some("SUCCESS")),
        ApiVersion::V3 => matches!(status, 200 | 204),
    }
}

/// One delivery of `job` (of the merchant `mch_id`).
async fn send(sim: &Simulator, mch_id: &str, job: &NotifyJob) -> Sent {
    let request = sim.http().post(&job.url);
    let (request, probe) = match job.api {
        ApiVersion::V2 => (request.body(job.body.clone()).header(reqwest::header::CONTENT_TYPE, "text/xml"), false),
        ApiVersion::V3 => v3::sign_notify(sim, mch_id, request, &job.body),
    };
    let (api, sent) = (job.api, Sent { api: job.api, probe, ..Sent::default() });
    let mut resp = match request.send().await {
        Ok(r) => r,
        Err(e) => return Sent { error: Some(error_text(&e)), ..sent },
    };
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if bytes.len() < 64 * 1024 => bytes.extend_from_slice(&chunk),
            Ok(Some(_)) => break,
            Ok(None) => break,
            Err(e) => {
                return Sent { http_status: Some(status), error: Some(error_text(&e)), ..sent };
            }
        }
    }
    Sent {
        http_status: Some(status),
        error: None,
        reply: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        accepted: accepts(api, status, &bytes),
        ..sent
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
        let mch_id = match &target {
            Target::Payment(key) | Target::Refund(key, _) => key.0.clone(),
        };
        let results = join_all((0..copies).map(|_| send(&sim, &mch_id, &job))).await;
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
                let sent = send(&sim, &mch_id, &job).await;
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
        let v2 = |status, body| accepts(ApiVersion::V2, status, body);
        assert!(v2(200, ok));
        assert!(!v2(500, ok));
        assert!(!v2(200, b"SUCCESS"));
        assert!(!v2(200, b"<xml><return_code>FAIL</return_code></xml>"));
        assert!(v2(200, b"<xml><return_code>SUCCESS</return_code></xml>"));
        assert!(!v2(204, b""));
    }

    #[test]
    fn v3_acceptance_is_200_or_204_whatever_the_body() {
        for (status, accepted) in [(200, true), (204, true), (202, false), (400, false), (500, false)] {
            assert_eq!(accepts(ApiVersion::V3, status, b"{\"code\":\"FAIL\"}"), accepted, "{status}");
        }
    }
}
