//! `PayGateway`: the seam between the product and WeChat Pay. The reqwest client implements it;
//! tests may put any double behind it.

use std::path::Path;

use async_trait::async_trait;

use super::download_bill::{BillDownload, DownloadBill};
use super::error::WxError;
use super::order_query::{CloseOrder, OrderQuery, OrderQueryReply};
use super::refund::{Refund, RefundQuery, RefundQueryReply, RefundReply};
use super::unified_order::{UnifiedOrder, UnifiedOrderReply};

#[async_trait]
pub trait PayGateway: Send + Sync {
    async fn unified_order(&self, req: &UnifiedOrder) -> Result<UnifiedOrderReply, WxError>;
    async fn order_query(&self, req: &OrderQuery) -> Result<OrderQueryReply, WxError>;
    /// Ok means closed now. `ORDERCLOSED` (already closed) and `ORDERPAID` come back as
    /// [`WxError::Business`] so the caller can take the right path.
    async fn close_order(&self, req: &CloseOrder) -> Result<(), WxError>;
    async fn refund(&self, req: &Refund) -> Result<RefundReply, WxError>;
    async fn refund_query(&self, req: &RefundQuery) -> Result<RefundQueryReply, WxError>;
    /// Streams the bill, as received (text or GZIP), into the file at `dest`.
    async fn download_bill(&self, req: &DownloadBill, dest: &Path) -> Result<BillDownload, WxError>;
}
