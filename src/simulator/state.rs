//! The in-memory state behind the simulator's mutex: orders with their indexes (prepay_id,
//! transaction_id, refund numbers), OAuth codes, the notify log, the clock offset; and its JSON
//! persistence (written to a temporary file, then renamed over the state file).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::SimulatorError;
use super::model::{NotifyAttempt, OAuthCode, OrderKey, OrderState, SimOrder};
use super::v3::{BillFile, PersistedPlatform, Platform};
use crate::wxpay::money::Fen;

/// At most this many notify attempts are kept (oldest dropped first).
const NOTIFY_LOG_LIMIT: usize = 10_000;

#[derive(Default)]
pub(crate) struct SimState {
    /// Simulated clock = real clock + this offset.
    pub clock_offset_ms: i64,
    pub orders: HashMap<OrderKey, SimOrder>,
    /// Every prepay_id ever issued (replaced ones too) → its order.
    pub prepay_index: HashMap<String, OrderKey>,
    /// (mch_id, transaction_id) → order.
    pub transaction_index: HashMap<(String, String), OrderKey>,
    /// (mch_id, out_refund_no) → order.
    pub refund_index: HashMap<(String, String), OrderKey>,
    /// (mch_id, refund_id) → (order, out_refund_no).
    pub refund_id_index: HashMap<(String, String), (OrderKey, String)>,
    pub oauth_codes: HashMap<String, OAuthCode>,
    /// openid → the appid it was issued for (by OAuth or `jscode2session`): an openid is only
    /// good with its own appid.
    pub openids: HashMap<String, String>,
    pub notify_log: Vec<NotifyAttempt>,
    /// The v3 platform certificates and public key, created on first use and kept by reset.
    pub v3_platform: Option<Arc<Platform>>,
    /// v3 bill downloads by token (not persisted: a token lives five minutes).
    pub bill_files: HashMap<String, BillFile>,
    /// `GET /v3/certificates` answered 200 (not persisted).
    pub v3_certificate_downloads: u64,
}

/// The persisted form: the indexes are rebuilt on load.
#[derive(Serialize, Deserialize)]
struct Persisted {
    version: u32,
    clock_offset_ms: i64,
    orders: Vec<SimOrder>,
    oauth_codes: HashMap<String, OAuthCode>,
    #[serde(default)]
    openids: HashMap<String, String>,
    notify_log: Vec<NotifyAttempt>,
    #[serde(default)]
    v3_platform: Option<PersistedPlatform>,
}

impl SimState {
    pub fn insert_order(&mut self, order: SimOrder) {
        let key = (order.mch_id.clone(), order.out_trade_no.clone());
        self.index_order(&key, &order);
        self.orders.insert(key, order);
    }

    fn index_order(&mut self, key: &OrderKey, order: &SimOrder) {
        self.prepay_index.insert(order.prepay_id.clone(), key.clone());
        if let Some(tx) = &order.transaction_id {
            self.transaction_index.insert((order.mch_id.clone(), tx.clone()), key.clone());
        }
        for r in &order.refunds {
            self.refund_index.insert((order.mch_id.clone(), r.out_refund_no.clone()), key.clone());
            self.refund_id_index
                .insert((order.mch_id.clone(), r.refund_id.clone()), (key.clone(), r.out_refund_no.clone()));
        }
    }

    /// Re-indexes one order after a change to its prepay_id, transaction_id or refunds.
    pub fn reindex(&mut self, key: &OrderKey) {
        if let Some(order) = self.orders.get(key).cloned() {
            self.index_order(key, &order);
        }
    }

    pub fn find_by_transaction(&self, mch_id: &str, transaction_id: &str) -> Option<OrderKey> {
        self.transaction_index.get(&(mch_id.to_owned(), transaction_id.to_owned())).cloned()
    }

    pub fn find_by_out_trade_no(&self, mch_id: &str, out_trade_no: &str) -> Option<OrderKey> {
        let key = (mch_id.to_owned(), out_trade_no.to_owned());
        self.orders.contains_key(&key).then_some(key)
    }

    /// Rewrites the total of a paid order (under any merchant): WeChat's own record then disagrees
    /// with the merchant's, so the bill (and orderquery) show `total_fee`. A test plants an amount
    /// difference for reconciliation this way. `false` when there is no such paid order.
    pub fn set_paid_total(&mut self, out_trade_no: &str, total_fee: Fen) -> bool {
        let mut changed = false;
        for order in self.orders.values_mut().filter(|o| o.out_trade_no == out_trade_no) {
            if order.state == OrderState::Success {
                order.total_fee = total_fee;
                changed = true;
            }
        }
        changed
    }

    /// Records a notify attempt, keeping the log bounded.
    pub fn log_attempt(&mut self, attempt: NotifyAttempt) {
        if self.notify_log.len() >= NOTIFY_LOG_LIMIT {
            self.notify_log.drain(..NOTIFY_LOG_LIMIT / 10);
        }
        self.notify_log.push(attempt);
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let mut orders: Vec<&SimOrder> = self.orders.values().collect();
        orders.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.out_trade_no.cmp(&b.out_trade_no)));
        #[derive(Serialize)]
        struct PersistedRef<'a> {
            version: u32,
            clock_offset_ms: i64,
            orders: Vec<&'a SimOrder>,
            oauth_codes: &'a HashMap<String, OAuthCode>,
            openids: &'a HashMap<String, String>,
            notify_log: &'a [NotifyAttempt],
            v3_platform: Option<&'a PersistedPlatform>,
        }
        serde_json::to_string(&PersistedRef {
            version: 1,
            clock_offset_ms: self.clock_offset_ms,
            orders,
            oauth_codes: &self.oauth_codes,
            openids: &self.openids,
            notify_log: &self.notify_log,
            v3_platform: self.v3_platform.as_deref().map(Platform::persisted),
        })
    }

    pub fn from_json(text: &str) -> Result<SimState, SimulatorError> {
        let p: Persisted =
            serde_json::from_str(text).map_err(|e| SimulatorError::State(format!("unreadable state file: {e}")))?;
        if p.version != 1 {
            return Err(SimulatorError::State(format!("unsupported state file version {}", p.version)));
        }
        let mut state = SimState {
            clock_offset_ms: p.clock_offset_ms,
            oauth_codes: p.oauth_codes,
            openids: p.openids,
            ..SimState::default()
        };
        if let Some(platform) = p.v3_platform {
            let platform = Platform::from_persisted(platform)
                .map_err(|e| SimulatorError::State(format!("the v3 platform keys in the state file: {e}")))?;
            state.v3_platform = Some(Arc::new(platform));
        }
        for order in p.orders {
            state.insert_order(order);
        }
        state.notify_log = p.notify_log;
        Ok(state)
    }

    /// Loads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<SimState, SimulatorError> {
        match std::fs::read_to_string(path) {
            Ok(text) => SimState::from_json(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SimState::default()),
            Err(e) => Err(SimulatorError::State(format!("cannot read {}: {e}", path.display()))),
        }
    }
}

/// Writes `contents` to `path` atomically: a temporary file in the same folder, then a rename.
pub(crate) fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state.json");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::model::{NotifyJob, OrderState};
    use crate::wxpay::money::Fen;
    use chrono::Utc;

    fn order(no: &str) -> SimOrder {
        let now = Utc::now();
        SimOrder {
            appid: "wx1".into(),
            mch_id: "m1".into(),
            out_trade_no: no.into(),
            body: "b".into(),
            attach: None,
            device_info: None,
            total_fee: Fen::new(100),
            fee_type: "CNY".into(),
            trade_type: "JSAPI".into(),
            openid: Some("o1".into()),
            notify_url: "http://x/n".into(),
            sign_type: "MD5".into(),
            time_expire: None,
            request: Default::default(),
            created_at: now,
            prepay_id: format!("wx{no}"),
            prepay_created_at: now,
            state: OrderState::Success,
            transaction_id: Some(format!("tx{no}")),
            time_end: Some(now),
            bank_type: Some("OTHERS".into()),
            closed_at: None,
            refunds: vec![],
            notify: NotifyJob::default(),
            api: Default::default(),
        }
    }

    #[test]
    fn persistence_round_trips_and_rebuilds_indexes() {
        let mut s = SimState { clock_offset_ms: 1234, ..SimState::default() };
        s.insert_order(order("a"));
        s.insert_order(order("b"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomically(&path, &s.to_json().unwrap()).unwrap();
        let back = SimState::load(&path).unwrap();
        assert_eq!(back.clock_offset_ms, 1234);
        assert_eq!(back.orders.len(), 2);
        assert_eq!(back.prepay_index.get("wxa"), Some(&("m1".to_owned(), "a".to_owned())));
        assert!(back.find_by_transaction("m1", "txb").is_some());
        assert!(SimState::load(&dir.path().join("missing.json")).unwrap().orders.is_empty());
        assert!(SimState::from_json("{").is_err());
    }
}
