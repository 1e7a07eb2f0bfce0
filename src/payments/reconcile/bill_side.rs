//! The bill side of a reconciliation: one streaming pass over the downloaded bill into two compact
//! tables keyed by our own numbers (out_trade_no for payments, out_refund_no for refunds), with the
//! bill's figures. Only what a comparison needs is kept (amount, WeChat's transaction id, status),
//! in the arena-backed [`KeyedTable`], so a million-row bill takes well under 100 MiB while the
//! local side is streamed past it.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::progress::{Phase, Progress};
use super::table::{KeyedTable, Span};
use crate::wxpay::bill::{BillError, BillReader, BillRow, BillStatus};

/// Rows between two progress reports: often enough for a smooth bar, rare enough to cost nothing.
const REPORT_EVERY: u64 = 8192;

/// 交易状态 of a payment row, as far as reconciliation cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayStatus {
    /// Money arrived: the only status that counts as paid.
    Success,
    /// Paid, then revoked (micropay): no money; a local PAID order against it is a finding.
    Revoked,
    /// Anything else WeChat may print; never counted as paid.
    Other,
}

/// A payment as the bill shows it.
#[derive(Clone, Copy, Debug)]
pub struct BillPayment {
    pub transaction_id: Span,
    /// The order total (订单金额; the legacy 总金额), comparable with what the order was paid.
    pub amount: i64,
    pub status: PayStatus,
    /// Set when a local order accounted for this row.
    pub matched: bool,
}

/// A refund as the bill shows it.
#[derive(Clone, Copy, Debug)]
pub struct BillRefund {
    pub out_trade_no: Span,
    pub amount: i64,
    /// 退款状态 as printed (SUCCESS, PROCESSING, CHANGE, …).
    pub status: Span,
    pub matched: bool,
}

/// The bill's own counts and totals (fen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BillFigures {
    pub rows: i64,
    /// SUCCESS payment rows and their order totals.
    pub paid_count: i64,
    pub paid_fen: i64,
    /// Refund rows and their refund amounts.
    pub refund_count: i64,
    pub refund_fen: i64,
}

#[derive(Default)]
pub struct BillSide {
    pub payments: KeyedTable<BillPayment>,
    pub refunds: KeyedTable<BillRefund>,
    pub figures: BillFigures,
}

/// Counts the bytes read from the file, so progress can be shown against its size.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl BillSide {
    /// Reads a downloaded bill file (GZIP or plain text), reporting progress over its bytes.
    pub fn read_file(path: &Path, gzip: bool, progress: &dyn Progress) -> Result<BillSide, BillError> {
        let io = |e: io::Error| BillError::Io { line: 0, kind: e.kind(), message: e.to_string() };
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let read = Arc::new(AtomicU64::new(0));
        progress.begin(Phase::Bill, Some(size));
        let reader = BillReader::open(Counting { inner: file, read: read.clone() }, gzip)?;
        let side = BillSide::read(reader, |rows| progress.advance(read.load(Ordering::Relaxed), rows))?;
        progress.advance(size, side.figures.rows as u64);
        progress.end();
        Ok(side)
    }

    /// Reads a whole bill (and its summary cross-check). A bill that does not parse exactly is an
    /// error: reconciling against a guessed bill would invent differences.
    pub fn read<R: BufRead>(mut reader: BillReader<R>, mut on_rows: impl FnMut(u64)) -> Result<BillSide, BillError> {
        let mut side = BillSide::default();
        for row in reader.by_ref() {
            side.add(row?);
            if (side.figures.rows as u64).is_multiple_of(REPORT_EVERY) {
                on_rows(side.figures.rows as u64);
            }
        }
        reader.finish()?;
        Ok(side)
    }

    fn add(&mut self, row: BillRow) {
        let f = &mut self.figures;
        f.rows += 1;
        let status = match row.status {
            BillStatus::Refund => {
                f.refund_count += 1;
                f.refund_fen = f.refund_fen.saturating_add(row.refund_fee.get());
                // A refund row without its number cannot be matched; it still counts in the totals.
                if let Some(no) = row.out_refund_no.as_deref() {
                    let amount = row.refund_fee.get();
                    self.refunds.insert_with(no, |arena| BillRefund {
                        out_trade_no: arena.push(&row.out_trade_no),
                        amount,
                        status: arena.push(&row.refund_status),
                        matched: false,
                    });
                }
                return;
            }
            BillStatus::Success => PayStatus::Success,
            BillStatus::Revoked => PayStatus::Revoked,
            BillStatus::Other(_) => PayStatus::Other,
        };
        let amount = row.order_fee.unwrap_or(row.settlement_fee).get();
        if status == PayStatus::Success {
            f.paid_count += 1;
            f.paid_fen = f.paid_fen.saturating_add(amount);
        }
        let (id, new) = self.payments.insert_with(&row.out_trade_no, |arena| BillPayment {
            transaction_id: arena.push(&row.transaction_id),
            amount,
            status,
            matched: false,
        });
        // "A payment revoked after success appears under the original order number": the
        // revocation outweighs the earlier success row.
        if !new && status == PayStatus::Revoked {
            self.payments.entry_mut(id).status = PayStatus::Revoked;
        }
    }

    pub fn payment_tx(&self, p: &BillPayment) -> &str {
        self.payments.arena.get(p.transaction_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::bill_text::{BillLayout, BillRecord, BillRecordKind, write_bill};
    use crate::wxpay::Fen;
    use crate::wxpay::types::BillType;
    use chrono::Utc;

    fn record(no: &str, fee: i64, kind: BillRecordKind) -> BillRecord {
        BillRecord {
            trade_time: Utc::now(),
            appid: "wx1".into(),
            mch_id: "m1".into(),
            device_info: String::new(),
            transaction_id: format!("4200{no}"),
            out_trade_no: no.into(),
            openid: "o1".into(),
            trade_type: "JSAPI".into(),
            bank_type: "OTHERS".into(),
            body: "茶, \"龙井\"".into(),
            attach: String::new(),
            total_fee: Fen::new(fee),
            coupon_fee: Fen::ZERO,
            rate_basis_points: 60,
            kind,
        }
    }

    #[test]
    fn payments_and_refunds_are_keyed_by_our_numbers() {
        let refund = BillRecordKind::Refund {
            refund_id: "5030001".into(),
            out_refund_no: "RF1".into(),
            refund_fee: Fen::new(300),
            refund_channel: "ORIGINAL".into(),
            refund_status: "SUCCESS".into(),
            applied_at: Utc::now(),
            succeeded_at: None,
        };
        let records = vec![
            record("A1", 1000, BillRecordKind::Payment),
            record("A2", 2500, BillRecordKind::Payment),
            record("A1", 1000, refund),
        ];
        let mut text = Vec::new();
        write_bill(&mut text, BillType::All, BillLayout::Current, records).unwrap();
        let side = BillSide::read(BillReader::new(&text[..]).unwrap(), |_| {}).unwrap();
        assert_eq!(
            side.figures,
            BillFigures { rows: 3, paid_count: 2, paid_fen: 3500, refund_count: 1, refund_fen: 300 }
        );
        let a2 = side.payments.entry(side.payments.find("A2").unwrap());
        assert_eq!((a2.amount, a2.status, side.payment_tx(a2)), (2500, PayStatus::Success, "4200A2"));
        let r = side.refunds.entry(side.refunds.find("RF1").unwrap());
        assert_eq!(
            (r.amount, side.refunds.arena.get(r.out_trade_no), side.refunds.arena.get(r.status)),
            (300, "A1", "SUCCESS")
        );
        assert!(side.payments.find("RF1").is_none());
    }
}
