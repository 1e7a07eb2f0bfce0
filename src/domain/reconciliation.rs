//! Reconciliation against WeChat's T+1 bill: where the run of one Beijing date stands, the
//! figures it stores, and the differences (findings) it records.

use crate::domain::vocab::string_enum;
use chrono::NaiveDateTime;

string_enum! {
    /// Where the reconciliation of one date stands.
    pub enum RunState {
        /// Known (due, or asked for) but not started.
        Pending = "PENDING",
        /// An instance holds the lease and is working on it (or crashed; the lease then runs out).
        Running = "RUNNING",
        /// WeChat is still generating the bill ("Bill Creating"); retried at `next_attempt_at`.
        Waiting = "WAITING",
        /// The download or the bill failed; retried at `next_attempt_at`.
        Failed = "FAILED",
        /// "No Bill Exist": no trade at WeChat that day; local payments of the day were still checked.
        NoBill = "NO_BILL",
        /// Compared; the figures and findings are final.
        Done = "DONE",
    }
}

impl RunState {
    /// A finished date: the scheduler does not take it up again (staff still may).
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Done | RunState::NoBill)
    }
}

/// The counts and totals a run stores (money in fen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunFigures {
    pub bill_rows: i64,
    pub bill_paid_count: i64,
    pub bill_paid_fen: i64,
    pub bill_refund_count: i64,
    pub bill_refund_fen: i64,
    pub local_paid_count: i64,
    pub local_paid_fen: i64,
    /// Payments and refunds found on both sides with the same amount.
    pub matched: i64,
    /// Finding rows of the date.
    pub findings: i64,
}

/// A run as the rest of the program sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconciliationRun {
    /// `YYYY-MM-DD`, Beijing.
    pub bill_date: String,
    pub state: RunState,
    pub attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub figures: RunFigures,
    pub error: Option<String>,
}

/// One difference a reconciliation recorded for a date, and how staff resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindingRecord {
    pub id: i64,
    pub bill_date: String,
    pub kind: String,
    pub item_key: String,
    pub out_trade_no: Option<String>,
    pub detail: String,
    pub resolution: Option<String>,
    pub created_at: NaiveDateTime,
}
