//! What the console reads about the money: the dashboard's figures, the order list and its CSV
//! batches, one order with everything that happened to it, exceptions, notifies and webhooks.
//! Each is one read on the pool; pages only format what these return.

use chrono::NaiveDate;

use super::Payments;
use crate::db::{
    AnyConnection, DbError, audit, events, exceptions, figures, notify_log, order_list, orders, refunds, webhooks,
};
use crate::domain::figures::Overview;
use crate::domain::listing::{Key, ListFilter, ListPage, ListedOrder, Seek};
use crate::domain::records::{AuditRecord, ExceptionRecord, ExceptionStatus, NotifyRecord, TimelineEntry};
use crate::domain::webhook::{WebhookAttempt, WebhookEvent, WebhookState};
use crate::domain::{ExceptionKind, Order, OrderState, Refund};

/// One order and everything recorded about it, for its page.
#[derive(Clone, Debug)]
pub struct OrderDossier {
    pub order: Order,
    pub events: Vec<TimelineEntry>,
    pub notifies: Vec<NotifyRecord>,
    pub refunds: Vec<Refund>,
    pub exceptions: Vec<ExceptionRecord>,
    pub audits: Vec<AuditRecord>,
}

/// Which part of the exception list a page shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionShow {
    Open,
    Resolved,
    /// Open ones first, then resolved ones.
    All,
}

/// Where an exception page starts: in the open or the resolved part, before an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionCursor {
    pub resolved_part: bool,
    pub before: Option<i64>,
}

/// One page of exceptions (one row more than asked when more follow), every kind recorded so
/// far, and how many are open.
#[derive(Clone, Debug)]
pub struct ExceptionsPage {
    pub rows: Vec<ExceptionRecord>,
    pub known_kinds: Vec<String>,
    pub open_count: i64,
}

/// One page of webhook events with their attempts, and how many events are in each state.
#[derive(Clone, Debug)]
pub struct WebhooksPage {
    pub events: Vec<WebhookEvent>,
    pub attempts: Vec<WebhookAttempt>,
    pub counts: Vec<(WebhookState, i64)>,
}

/// Orders by state and open exceptions by kind, for `/metrics`: every word this build knows
/// (zero when none) plus any a newer build stored, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveCounts {
    pub orders_by_state: Vec<(String, i64)>,
    pub open_exceptions_by_kind: Vec<(String, i64)>,
}

impl Payments {
    /// The dashboard for the Beijing day `today`, with `chart_days` days of revenue.
    pub async fn dashboard(&self, today: NaiveDate, chart_days: u64) -> Result<Overview, DbError> {
        self.db.read(move |c| figures::overview(c, today, chart_days)).await
    }

    /// Orders by state and open exceptions by kind, in one read (see [`LiveCounts`]).
    pub async fn live_counts(&self) -> Result<LiveCounts, DbError> {
        let (orders, exceptions) = self
            .db
            .read(|c| -> Result<_, DbError> {
                Ok((figures::orders_by_state(c)?, figures::open_exceptions_by_kind(c)?))
            })
            .await?;
        let states = OrderState::ALL.iter().map(|s| s.as_str());
        let kinds = ExceptionKind::ALL.iter().map(|k| k.as_str());
        Ok(LiveCounts {
            orders_by_state: zero_filled(states, orders),
            open_exceptions_by_kind: zero_filled(kinds, exceptions),
        })
    }

    /// A page of the order list.
    pub async fn list_orders(&self, filter: ListFilter, seek: Seek, limit: usize) -> Result<ListPage, DbError> {
        self.db.read(move |c| order_list::page(c, &filter, &seek, limit)).await
    }

    /// The next `limit` orders of the list after `after`, for the CSV export.
    pub async fn orders_batch(
        &self,
        filter: ListFilter,
        after: Option<Key>,
        limit: usize,
    ) -> Result<Vec<ListedOrder>, DbError> {
        self.db.read(move |c| order_list::batch(c, &filter, after.as_ref(), limit)).await
    }

    /// The order and its timeline, notifies, refunds, exceptions and staff actions.
    pub async fn order_dossier(&self, out_trade_no: &str) -> Result<Option<OrderDossier>, DbError> {
        let no = out_trade_no.to_owned();
        self.db
            .read(move |c| -> Result<_, DbError> {
                let Some(order) = orders::find(c, &no)? else { return Ok(None) };
                Ok(Some(OrderDossier {
                    order,
                    events: events::for_order(c, &no)?,
                    notifies: notify_log::for_order(c, &no)?,
                    refunds: refunds::for_order(c, &no)?,
                    exceptions: exceptions::for_order(c, &no)?,
                    audits: audit::for_order(c, &no)?,
                }))
            })
            .await
    }

    /// Up to `page_size + 1` exceptions (open rows before resolved ones when showing all).
    pub async fn exceptions_page(
        &self,
        show: ExceptionShow,
        kind: Option<String>,
        cursor: ExceptionCursor,
        page_size: i64,
    ) -> Result<ExceptionsPage, DbError> {
        self.db
            .read(move |c| -> Result<_, DbError> {
                let (want, kind) = (page_size + 1, kind.as_deref());
                let page = |c: &mut AnyConnection, status, before, n| exceptions::page(c, status, kind, before, n);
                let rows = match show {
                    ExceptionShow::Open => page(c, ExceptionStatus::Open, cursor.before, want)?,
                    ExceptionShow::Resolved => page(c, ExceptionStatus::Resolved, cursor.before, want)?,
                    ExceptionShow::All if cursor.resolved_part => {
                        page(c, ExceptionStatus::Resolved, cursor.before, want)?
                    }
                    ExceptionShow::All => {
                        let mut rows = page(c, ExceptionStatus::Open, cursor.before, want)?;
                        if (rows.len() as i64) < want {
                            rows.extend(page(c, ExceptionStatus::Resolved, None, want - rows.len() as i64)?);
                        }
                        rows
                    }
                };
                Ok(ExceptionsPage { rows, known_kinds: exceptions::kinds(c)?, open_count: exceptions::count_open(c)? })
            })
            .await
    }

    /// Up to `limit` notify deliveries of one verdict and kind before `before`, and every verdict
    /// recorded so far.
    pub async fn notifies_page(
        &self,
        verdict: Option<String>,
        kind: Option<String>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<NotifyRecord>, Vec<String>), DbError> {
        self.db
            .read(move |c| -> Result<_, DbError> {
                let rows = notify_log::page(c, verdict.as_deref(), kind.as_deref(), before, limit)?;
                Ok((rows, notify_log::verdicts(c)?))
            })
            .await
    }

    /// Up to `limit` webhook events (of one state, of one order) before `before`, the attempts of
    /// the first `shown` of them, and the count per state.
    pub async fn webhooks_page(
        &self,
        state: Option<WebhookState>,
        order: Option<String>,
        before: Option<i64>,
        limit: i64,
        shown: usize,
    ) -> Result<WebhooksPage, DbError> {
        self.db
            .read(move |c| -> Result<_, DbError> {
                let events = webhooks::page(c, state, order.as_deref(), before, limit)?;
                let ids: Vec<i64> = events.iter().take(shown).map(|e| e.id).collect();
                let attempts = webhooks::attempts_for(c, &ids)?;
                let counts = WebhookState::ALL
                    .into_iter()
                    .map(|s| Ok((s, webhooks::count_by_state(c, s)?)))
                    .collect::<Result<Vec<_>, DbError>>()?;
                Ok(WebhooksPage { events, attempts, counts })
            })
            .await
    }
}

/// `counts` with a zero for each of `known` it lacks, sorted by word: a series that drops to
/// zero stays visible to Prometheus instead of vanishing.
fn zero_filled<'a>(known: impl Iterator<Item = &'a str>, counts: Vec<(String, i64)>) -> Vec<(String, i64)> {
    let mut all: std::collections::BTreeMap<String, i64> = known.map(|w| (w.to_owned(), 0)).collect();
    all.extend(counts);
    all.into_iter().collect()
}
