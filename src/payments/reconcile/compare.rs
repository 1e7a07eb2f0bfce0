//! The comparison itself, on a blocking thread: the day's local paid orders are streamed by
//! keyset on (paid_at, out_trade_no) past the bill's payment table, then the bill rows nothing
//! matched are looked up by number in batches, then the same for refunds. Every difference goes
//! to the [`FindingSink`]; payments WeChat has and we do not are returned for orderquery, which
//! happens afterwards, outside any transaction.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::NaiveDateTime;
use serde_json::json;

use super::bill_side::{BillSide, PayStatus};
use super::findings::{Finding, FindingKind, FindingSink};
use super::progress::{Phase, Progress};
use crate::db::reconciliation::{self, OrderFacts, RefundFacts};
use crate::db::{AnyConnection, Db, DbError};
use crate::domain::OrderState;
use crate::domain::RefundState;
use crate::wxpay::time::beijing;

/// Local rows per keyset batch.
const WALK_BATCH: i64 = 5000;
/// Numbers per `IN (…)` look-up (well under both backends' bind limits).
const LOOKUP_BATCH: usize = 500;

/// The UTC instants bounding one Beijing day, as stored (naive UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
}

impl Window {
    pub fn beijing_day(date: chrono::NaiveDate) -> Window {
        let start = crate::wxpay::time::beijing_day_start(date);
        Window { from: start.naive_utc(), to: (start + chrono::Duration::days(1)).naive_utc() }
    }
}

/// A payment to confirm with orderquery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToQuery {
    pub out_trade_no: String,
    pub transaction_id: String,
    pub amount: i64,
}

#[derive(Debug, Default)]
pub struct Compared {
    pub local_paid_count: i64,
    pub local_paid_fen: i64,
    /// Payments and refunds on both sides with the same amount.
    pub matched: i64,
    pub to_query: Vec<ToQuery>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the lease on this date was lost to another instance")]
    LeaseLost,
}

fn shown_time(t: Option<NaiveDateTime>) -> Option<String> {
    t.map(|t| t.and_utc().with_timezone(&beijing()).format("%Y-%m-%d %H:%M:%S").to_string())
}

/// Compares the bill with the day's local orders and refunds.
pub fn compare(
    db: &Db,
    bill: &mut BillSide,
    window: Window,
    sink: &mut FindingSink,
    progress: &dyn Progress,
    lease_lost: &AtomicBool,
) -> Result<Compared, CompareError> {
    let mut conn = db.conn()?;
    let mut out = Compared::default();
    walk_paid(&mut conn, bill, window, sink, progress, lease_lost, &mut out)?;
    progress.begin(Phase::Leftovers, None);
    unmatched_payments(&mut conn, bill, sink, lease_lost, &mut out)?;
    walk_refunds(&mut conn, bill, window, sink, lease_lost, &mut out)?;
    unmatched_refunds(&mut conn, bill, sink, lease_lost, &mut out)?;
    progress.end();
    sink.flush()?;
    Ok(out)
}

fn check(lease_lost: &AtomicBool) -> Result<(), CompareError> {
    if lease_lost.load(Ordering::Relaxed) { Err(CompareError::LeaseLost) } else { Ok(()) }
}

fn walk_paid(
    conn: &mut AnyConnection,
    bill: &mut BillSide,
    window: Window,
    sink: &mut FindingSink,
    progress: &dyn Progress,
    lease_lost: &AtomicBool,
    out: &mut Compared,
) -> Result<(), CompareError> {
    progress.begin(Phase::LocalOrders, None);
    let mut after: Option<(NaiveDateTime, String)> = None;
    loop {
        check(lease_lost)?;
        let rows = reconciliation::paid_between(
            conn,
            window.from,
            window.to,
            after.as_ref().map(|(at, no)| (*at, no.as_str())),
            WALK_BATCH,
        )?;
        for row in &rows {
            let paid = row.paid_fen.unwrap_or(0);
            out.local_paid_count += 1;
            out.local_paid_fen = out.local_paid_fen.saturating_add(paid);
            let Some(id) = bill.payments.find(&row.out_trade_no) else {
                sink.push(Finding {
                    kind: FindingKind::MissingAtWechat,
                    key: row.out_trade_no.clone(),
                    out_trade_no: Some(row.out_trade_no.clone()),
                    detail: json!({ "local_paid_fen": paid, "local_paid_at": shown_time(row.paid_at) }),
                })?;
                continue;
            };
            let entry = bill.payments.entry_mut(id);
            entry.matched = true;
            let entry = *entry;
            let tx = bill.payment_tx(&entry).to_owned();
            if entry.status != PayStatus::Success {
                sink.push(Finding {
                    kind: FindingKind::MissingAtWechat,
                    key: row.out_trade_no.clone(),
                    out_trade_no: Some(row.out_trade_no.clone()),
                    detail: json!({
                        "local_paid_fen": paid,
                        "local_paid_at": shown_time(row.paid_at),
                        "bill_status": if entry.status == PayStatus::Revoked { "REVOKED" } else { "OTHER" },
                        "transaction_id": tx,
                    }),
                })?;
            } else if entry.amount != paid {
                sink.push(Finding {
                    kind: FindingKind::AmountDiffers,
                    key: row.out_trade_no.clone(),
                    out_trade_no: Some(row.out_trade_no.clone()),
                    detail: json!({ "bill_amount_fen": entry.amount, "local_paid_fen": paid, "transaction_id": tx }),
                })?;
            } else {
                out.matched += 1;
            }
        }
        progress.advance(out.local_paid_count as u64, out.local_paid_count as u64);
        match rows.last() {
            Some(last) if rows.len() as i64 == WALK_BATCH => {
                let Some(at) = last.paid_at else { break };
                after = Some((at, last.out_trade_no.clone()));
            }
            _ => break,
        }
    }
    progress.end();
    Ok(())
}

/// Bill payments the walk did not meet: paid on another day here, not paid here, or unknown.
fn unmatched_payments(
    conn: &mut AnyConnection,
    bill: &mut BillSide,
    sink: &mut FindingSink,
    lease_lost: &AtomicBool,
    out: &mut Compared,
) -> Result<(), CompareError> {
    let pending: Vec<u32> = bill
        .payments
        .ids()
        .filter(|&id| {
            let e = bill.payments.entry(id);
            !e.matched && e.status == PayStatus::Success
        })
        .collect();
    for ids in pending.chunks(LOOKUP_BATCH) {
        check(lease_lost)?;
        let numbers: Vec<String> = ids.iter().map(|&id| bill.payments.key(id).to_owned()).collect();
        let found: std::collections::HashMap<String, OrderFacts> = reconciliation::orders_by_numbers(conn, &numbers)?
            .into_iter()
            .map(|o| (o.out_trade_no.clone(), o))
            .collect();
        for (&id, no) in ids.iter().zip(numbers) {
            let entry = *bill.payments.entry(id);
            bill.payments.entry_mut(id).matched = true;
            let tx = bill.payment_tx(&entry).to_owned();
            match found.get(&no) {
                None => sink.push(Finding {
                    kind: FindingKind::MissingLocal,
                    key: no.clone(),
                    out_trade_no: None,
                    detail: json!({ "out_trade_no": no, "transaction_id": tx, "bill_amount_fen": entry.amount }),
                })?,
                Some(o) if o.state == OrderState::Paid.as_str() => {
                    // Paid here on another Beijing day: that day's run reports the date; here only
                    // the amount can still differ.
                    let paid = o.paid_fen.unwrap_or(0);
                    if paid == entry.amount {
                        out.matched += 1;
                    } else {
                        sink.push(Finding {
                            kind: FindingKind::AmountDiffers,
                            key: no.clone(),
                            out_trade_no: Some(no.clone()),
                            detail: json!({
                                "bill_amount_fen": entry.amount,
                                "local_paid_fen": paid,
                                "local_paid_at": shown_time(o.paid_at),
                                "transaction_id": tx,
                            }),
                        })?;
                    }
                }
                Some(o) => {
                    sink.push(Finding {
                        kind: FindingKind::PaidNotLocal,
                        key: no.clone(),
                        out_trade_no: Some(no.clone()),
                        detail: json!({
                            "local_state": o.state,
                            "transaction_id": tx,
                            "bill_amount_fen": entry.amount,
                            "order_amount_fen": o.amount_fen,
                        }),
                    })?;
                    out.to_query.push(ToQuery { out_trade_no: no, transaction_id: tx, amount: entry.amount });
                }
            }
        }
    }
    Ok(())
}

/// Compares one local refund with its bill row, if any.
fn compare_refund(
    bill: &mut BillSide,
    r: &RefundFacts,
    sink: &mut FindingSink,
    out: &mut Compared,
) -> Result<(), CompareError> {
    let Some(id) = bill.refunds.find(&r.out_refund_no) else {
        if r.state == RefundState::Success.as_str() {
            sink.push(Finding {
                kind: FindingKind::RefundMissingAtWechat,
                key: r.out_refund_no.clone(),
                out_trade_no: Some(r.out_trade_no.clone()),
                detail: json!({ "local_amount_fen": r.amount_fen, "local_state": r.state }),
            })?;
        }
        return Ok(());
    };
    bill.refunds.entry_mut(id).matched = true;
    let entry = *bill.refunds.entry(id);
    let bill_status = bill.refunds.arena.get(entry.status).to_owned();
    let failed_here = r.state == RefundState::Closed.as_str() || r.state == RefundState::Failed.as_str();
    let kind = if entry.amount != r.amount_fen {
        FindingKind::RefundAmountDiffers
    } else if bill_status == "SUCCESS" && failed_here {
        FindingKind::RefundStatusDiffers
    } else {
        out.matched += 1;
        return Ok(());
    };
    sink.push(Finding {
        kind,
        key: r.out_refund_no.clone(),
        out_trade_no: Some(r.out_trade_no.clone()),
        detail: json!({
            "bill_amount_fen": entry.amount,
            "local_amount_fen": r.amount_fen,
            "bill_status": bill_status,
            "local_state": r.state,
        }),
    })?;
    Ok(())
}

fn walk_refunds(
    conn: &mut AnyConnection,
    bill: &mut BillSide,
    window: Window,
    sink: &mut FindingSink,
    lease_lost: &AtomicBool,
    out: &mut Compared,
) -> Result<(), CompareError> {
    let mut after: Option<(NaiveDateTime, String)> = None;
    loop {
        check(lease_lost)?;
        let rows = reconciliation::refunds_between(
            conn,
            window.from,
            window.to,
            after.as_ref().map(|(at, no)| (*at, no.as_str())),
            WALK_BATCH,
        )?;
        for r in &rows {
            compare_refund(bill, r, sink, out)?;
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == WALK_BATCH => {
                after = Some((last.created_at, last.out_refund_no.clone()))
            }
            _ => return Ok(()),
        }
    }
}

/// Bill refunds the walk did not meet: requested here on another day, or unknown here.
fn unmatched_refunds(
    conn: &mut AnyConnection,
    bill: &mut BillSide,
    sink: &mut FindingSink,
    lease_lost: &AtomicBool,
    out: &mut Compared,
) -> Result<(), CompareError> {
    let pending: Vec<u32> = bill.refunds.ids().filter(|&id| !bill.refunds.entry(id).matched).collect();
    for ids in pending.chunks(LOOKUP_BATCH) {
        check(lease_lost)?;
        let numbers: Vec<String> = ids.iter().map(|&id| bill.refunds.key(id).to_owned()).collect();
        let found = reconciliation::refunds_by_numbers(conn, &numbers)?;
        for (&id, no) in ids.iter().zip(numbers) {
            if let Some(r) = found.iter().find(|r| r.out_refund_no == no) {
                compare_refund(bill, r, sink, out)?;
                continue;
            }
            let entry = *bill.refunds.entry(id);
            let trade_no = bill.refunds.arena.get(entry.out_trade_no).to_owned();
            sink.push(Finding {
                kind: FindingKind::RefundMissingLocal,
                key: no,
                out_trade_no: Some(trade_no),
                detail: json!({
                    "bill_amount_fen": entry.amount,
                    "bill_status": bill.refunds.arena.get(entry.status),
                }),
            })?;
        }
    }
    Ok(())
}
