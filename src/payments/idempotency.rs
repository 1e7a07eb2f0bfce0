//! The merchant API's idempotency keys as a use case: claim a key for a request (its fingerprint
//! hashed by the web layer), then store the answer, or release the key so a retry runs again.

use chrono::Duration;

use super::Payments;
use crate::db::idempotency::{self, KEY_LIFETIME};
use crate::db::{DbError, now};

pub use crate::db::idempotency::Claim;

/// A claim never completed for this long belongs to a request whose process died; a retry takes
/// it over (longer than any request takes: WeChat calls time out well before).
pub const ABANDONED_AFTER: Duration = Duration::minutes(2);

impl Payments {
    /// Claims `key` in `space` (one per token) for a request hashing to `request_hash`. A twin
    /// inserting at the same moment (a unique violation on PostgreSQL) means the claim is looked
    /// at again and found in progress.
    pub async fn claim_idempotency_key(&self, space: &str, key: &str, request_hash: &str) -> Result<Claim, DbError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (space, key, hash) = (space.to_owned(), key.to_owned(), request_hash.to_owned());
            let result = self
                .db
                .write(move |c| {
                    let now = now();
                    let expired_before = now - Duration::from_std(KEY_LIFETIME).unwrap_or(Duration::hours(24));
                    idempotency::claim(c, &space, &key, &hash, now, expired_before, now - ABANDONED_AFTER)
                })
                .await;
            match result {
                Err(e) if e.is_unique_violation() && attempt < 3 => continue,
                other => return other,
            }
        }
    }

    /// Stores the answer (status and JSON text) of a claimed key's request, or, given `None`,
    /// forgets the claim so that a retry runs the request again.
    pub async fn settle_idempotency_key(
        &self,
        space: &str,
        key: &str,
        answer: Option<(u16, String)>,
    ) -> Result<(), DbError> {
        let (space, key) = (space.to_owned(), key.to_owned());
        self.db
            .write(move |c| match answer {
                Some((status, body)) => idempotency::complete(c, &space, &key, status, &body),
                None => idempotency::release(c, &space, &key),
            })
            .await
            .map(|_| ())
    }
}
