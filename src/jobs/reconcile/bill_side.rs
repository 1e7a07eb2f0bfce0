//! The bill side of a reconciliation: one pass over the streamed bill into two hash maps keyed
//! by our own numbers (out_trade_no for payments, out_refund_no for refunds), with the bill's
//! totals. Only the few fields a comparison needs are kept, so a million-row bill fits in
//! about a hundred megabytes while the local side is streamed past it.

use std::collections::HashMap;
use std::io::BufRead;

use crate::wxpay::Fen;
use crate::wxpay::bill::{BillError, BillReader, BillStatus};

/// A payment as the bill shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillPayment {
    pub transaction_id: Box<str>,
    /// The order total (订单金额; the legacy 总金额), comparable with what the order was paid.
    pub amount: Fen,
}

/// A refund as the bill shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillRefund {
    pub out_trade_no: Box<str>,
    pub amount: Fen,
    pub status: Box<str>,
}

#[derive(Debug, Default)]
pub struct BillSide {
    pub payments: HashMap<Box<str>, BillPayment>,
    pub refunds: HashMap<Box<str>, BillRefund>,
    pub rows: u64,
    pub paid_count: u64,
    pub paid_fen: Fen,
    pub refund_count: u64,
    pub refund_fen: Fen,
}

impl BillSide {
    /// Reads a whole bill (and its summary cross-check). A bill that does not parse exactly
    /// is an error: reconciling against a guessed bill would invent differences.
    pub fn read<R: BufRead>(mut reader: BillReader<R>) -> Result<BillSide, BillError> {
        let mut side = BillSide::default();
        for row in reader.by_ref() {
            let row = row?;
            side.rows += 1;
            match row.status {
                BillStatus::Refund => {
                    let Some(out_refund_no) = row.out_refund_no else { continue };
                    side.refund_count += 1;
                    side.refund_fen = side.refund_fen.checked_add(row.refund_fee).unwrap_or(side.refund_fen);
                    side.refunds.insert(
                        out_refund_no.into_boxed_str(),
                        BillRefund {
                            out_trade_no: row.out_trade_no.into_boxed_str(),
                            amount: row.refund_fee,
                            status: row.refund_status.into_boxed_str(),
                        },
                    );
                }
                _ => {
                    let amount = row.order_fee.unwrap_or(row.settlement_fee);
                    side.paid_count += 1;
                    side.paid_fen = side.paid_fen.checked_add(amount).unwrap_or(side.paid_fen);
                    side.payments.insert(
                        row.out_trade_no.into_boxed_str(),
                        BillPayment { transaction_id: row.transaction_id.into_boxed_str(), amount },
                    );
                }
            }
        }
        reader.finish()?;
        Ok(side)
    }
}
