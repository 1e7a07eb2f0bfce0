//! How a reconciliation reports its progress: the command line draws a bar from it on a
//! terminal; the scheduler and the console pass [`Silent`].

use std::sync::Arc;

/// The steps of a run, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Downloading the bill (size unknown until done).
    Download,
    /// Parsing the bill: position in compressed bytes of the file, items = rows.
    Bill,
    /// Walking the day's local paid orders: items = orders.
    LocalOrders,
    /// Looking up bill payments not matched by the walk, and the refunds of the day.
    Leftovers,
    /// Asking WeChat (orderquery) about payments it has and we do not.
    Queries,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Download => "downloading bill",
            Phase::Bill => "reading bill",
            Phase::LocalOrders => "local orders",
            Phase::Leftovers => "unmatched rows and refunds",
            Phase::Queries => "orderquery",
        }
    }
}

/// Receives progress from whichever thread does the work.
pub trait Progress: Send + Sync {
    /// A phase begins; `total` is the phase's length in its position unit, when known.
    fn begin(&self, phase: Phase, total: Option<u64>);
    /// Where the current phase is (`position` of `total`) and how many items it has handled.
    fn advance(&self, position: u64, items: u64);
    /// The current phase ended.
    fn end(&self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _: Phase, _: Option<u64>) {}
    fn advance(&self, _: u64, _: u64) {}
    fn end(&self) {}
}

pub fn silent() -> Arc<dyn Progress> {
    Arc::new(Silent)
}
