//! The shopper's side of signing in with WeChat: a signed OAuth `state` is good for one callback,
//! across every instance.

use super::Payments;
use crate::db::{DbError, oauth_states};

impl Payments {
    /// Marks an OAuth state nonce used: `false` when it was used before (a replayed callback).
    pub async fn consume_oauth_state(&self, nonce: &str) -> Result<bool, DbError> {
        let nonce = nonce.to_owned();
        self.db.write(move |c| oauth_states::consume(c, &nonce, crate::db::now())).await
    }

    /// Whether the database answers, for the health endpoint.
    pub async fn check_database(&self) -> Result<(), DbError> {
        self.db.read(crate::db::ping).await
    }
}
