//! Refused notify deliveries: bodies that fail XML, signature, merchant or decryption checks.
//! Anyone on the internet can send them, so what they cost us is bounded. Only the start of the
//! body is stored ([`KEPT_BODY_BYTES`]), never the order it claims; at most
//! [`PER_IP_PER_MINUTE`] are stored per client (IPv6 clients by /64) and [`ALL_PER_MINUTE`] in
//! all; they reach the notify writer on a queue of their own that it serves only when no genuine
//! notify waits. A refused delivery that is not stored is counted (`/healthz` reports the count,
//! and a warning is logged at most once a minute). Its sender gets the same FAIL either way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Payments;
use crate::db::notify_log::NewNotifyLog;
use crate::domain::{NotifyKind, NotifyVerdict};

/// The most of a refused body that is stored: a whole genuine notify fits, so staff can still
/// re-process one refused by a configuration mistake.
pub const KEPT_BODY_BYTES: usize = 4096;
/// Refused deliveries stored per client per [`WINDOW`].
pub const PER_IP_PER_MINUTE: u32 = 20;
/// Refused deliveries stored from all clients together per [`WINDOW`].
pub const ALL_PER_MINUTE: u32 = 600;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Clients remembered at once; beyond that, refused deliveries from new clients are dropped
/// until old windows end, so the limiter's own memory is bounded too.
const TRACKED_CLIENTS: usize = 10_000;
/// Drops are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What was done with refused deliveries since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RefusedStats {
    /// Stored in the notify log.
    pub kept: u64,
    /// Not stored: over a rate limit, the writer's refused queue was full, or the write failed.
    pub dropped: u64,
}

/// A fixed window: `count` deliveries admitted since `started`.
#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

impl Window {
    fn current(self, now: Instant) -> Window {
        if now.duration_since(self.started) >= WINDOW { Window { started: now, count: 0 } } else { self }
    }
}

/// The rate limits and counters of refused deliveries, shared by every request.
pub struct RefusedGate {
    windows: Mutex<(Window, HashMap<String, Window>)>,
    kept: AtomicU64,
    dropped: AtomicU64,
    /// When a drop was last logged, and the drop count then.
    warned: Mutex<Option<(Instant, u64)>>,
}

impl Default for RefusedGate {
    fn default() -> Self {
        RefusedGate {
            windows: Mutex::new((Window { started: Instant::now(), count: 0 }, HashMap::new())),
            kept: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            warned: Mutex::new(None),
        }
    }
}

impl RefusedGate {
    /// Whether one more refused delivery from `client` may be stored now; counts it if so.
    pub fn admit(&self, client: Option<&str>, now: Instant) -> bool {
        let key = client_key(client);
        let mut guard = self.windows.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (all, clients) = &mut *guard;
        if clients.len() >= TRACKED_CLIENTS && !clients.contains_key(&key) {
            clients.retain(|_, w| now.duration_since(w.started) < WINDOW);
            if clients.len() >= TRACKED_CLIENTS {
                return false;
            }
        }
        let mine = clients.get(&key).map_or(Window { started: now, count: 0 }, |w| w.current(now));
        let total = all.current(now);
        if mine.count >= PER_IP_PER_MINUTE || total.count >= ALL_PER_MINUTE {
            return false;
        }
        clients.insert(key, Window { count: mine.count + 1, ..mine });
        *all = Window { count: total.count + 1, ..total };
        true
    }

    pub fn stats(&self) -> RefusedStats {
        RefusedStats { kept: self.kept.load(Ordering::Relaxed), dropped: self.dropped.load(Ordering::Relaxed) }
    }

    fn kept(&self) {
        self.kept.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a dropped delivery, and logs the count when the last warning is old enough.
    fn dropped(&self, why: &'static str) {
        metrics::counter!("wechat_checkout_notify_refused_dropped_total").increment(1);
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut warned = self.warned.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let since = match *warned {
            Some((at, _)) if at.elapsed() < WARN_EVERY => return,
            Some((_, before)) => total - before,
            None => total,
        };
        *warned = Some((Instant::now(), total));
        tracing::warn!(
            dropped_total = total,
            dropped_since_last_warning = since,
            why,
            "refused notifies dropped, not stored"
        );
    }
}

/// The limiter's key for a client: its address, an IPv6 one by its /64 (one subscriber's
/// network), anything else (a staff re-run) as given, cut short.
fn client_key(client: Option<&str>) -> String {
    match client.map(str::parse::<IpAddr>) {
        Some(Ok(IpAddr::V6(v6))) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(Ok(ip)) => ip.to_canonical().to_string(),
        Some(Err(_)) => client.unwrap_or_default().chars().take(64).collect(),
        None => String::new(),
    }
}

/// The start of `body` as text, at most [`KEPT_BODY_BYTES`], and whether anything was cut.
fn kept_body(body: &[u8]) -> (String, bool) {
    if body.len() <= KEPT_BODY_BYTES {
        return (String::from_utf8_lossy(body).into_owned(), false);
    }
    // Not inside a UTF-8 sequence, so the text kept is a true prefix of a valid body.
    let mut end = KEPT_BODY_BYTES;
    while end > 0 && body[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    let mut text = String::from_utf8_lossy(&body[..end]).into_owned();
    // Replacement characters for invalid bytes take three bytes each.
    while text.len() > KEPT_BODY_BYTES {
        text.pop();
    }
    (text, true)
}

impl Payments {
    /// Stores a refused delivery if its client is within the limits, without ever waiting
    /// behind a genuine notify for room on the writer's queue; otherwise counts it.
    pub(super) async fn record_refused(
        &self,
        kind: NotifyKind,
        body: &[u8],
        remote_addr: Option<String>,
        verdict: NotifyVerdict,
        reason: String,
        reply: &str,
    ) {
        super::notify::count_delivery(kind, verdict);
        // Checked before anything is logged, so a flood does not flood the logs either.
        if !self.refused.admit(remote_addr.as_deref(), Instant::now()) {
            self.refused.dropped("over the rate limit");
            return;
        }
        tracing::warn!(%kind, %verdict, %reason, "notify refused");
        let (text, cut) = kept_body(body);
        let mut log = NewNotifyLog::received(kind, text, remote_addr);
        log.reason = if cut {
            format!("{reason}; {} of the {} bytes received kept", log.raw_body.len(), body.len())
        } else {
            reason
        };
        (log.verdict, log.reply) = (verdict, reply.to_owned());
        let Ok(committed) = self.notify_writer.submit_refused(log) else {
            self.refused.dropped("the refused queue is full");
            return;
        };
        match committed.await {
            Ok(Ok(())) => self.refused.kept(),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "refused notify could not be logged");
                self.refused.dropped("the database refused the write");
            }
            Err(_) => self.refused.dropped("the notify writer has stopped"),
        }
    }

    /// What became of refused deliveries since start, for `/healthz`.
    pub fn refused_stats(&self) -> RefusedStats {
        self.refused.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_limit_within_the_total() {
        let gate = RefusedGate::default();
        let t0 = Instant::now();
        let admitted = (0..PER_IP_PER_MINUTE + 5).filter(|_| gate.admit(Some("198.51.100.7"), t0)).count();
        assert_eq!(admitted, PER_IP_PER_MINUTE as usize);
        assert!(gate.admit(Some("198.51.100.8"), t0), "another client is not held back");
        // One IPv6 network is one client, whatever its interface identifiers.
        let v6 = (0..PER_IP_PER_MINUTE + 5).filter(|i| gate.admit(Some(&format!("2001:db8:1:2::{i:x}")), t0)).count();
        assert_eq!(v6, PER_IP_PER_MINUTE as usize);
        // A new window admits again.
        assert!(gate.admit(Some("198.51.100.7"), t0 + WINDOW));
    }

    #[test]
    fn all_clients_together_are_limited_too() {
        let gate = RefusedGate::default();
        let t0 = Instant::now();
        let admitted =
            (0..ALL_PER_MINUTE + 50).filter(|i| gate.admit(Some(&format!("10.0.{}.{}", i / 256, i % 256)), t0));
        assert_eq!(admitted.count(), ALL_PER_MINUTE as usize);
    }

    #[test]
    fn a_long_body_keeps_a_true_prefix() {
        let short = b"<xml></xml>";
        assert_eq!(kept_body(short), ("<xml></xml>".to_owned(), false));
        let long = "中".repeat(KEPT_BODY_BYTES);
        let (kept, cut) = kept_body(long.as_bytes());
        assert!(cut && kept.len() <= KEPT_BODY_BYTES && kept.len() > KEPT_BODY_BYTES - 3 && long.starts_with(&kept));
        let (kept, _) = kept_body(&[0xff; 2 * KEPT_BODY_BYTES]);
        assert!(kept.len() <= KEPT_BODY_BYTES);
    }
}
