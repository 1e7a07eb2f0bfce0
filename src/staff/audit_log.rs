//! Reading the audit log: every staff action, newest first, filtered by who, what and which order.

use super::Accounts;
use crate::db::{DbError, audit};
use crate::domain::records::{AuditFilter, AuditRecord};

impl Accounts {
    /// At most `limit` entries matching `filter`, older than entry `before` (keyset paging).
    pub async fn audit_page(
        &self,
        filter: AuditFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, DbError> {
        self.db.read(move |c| audit::search(c, &filter, before, limit)).await
    }
}
