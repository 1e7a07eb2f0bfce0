//! The database as the v3 client's [`CertificateCache`]: every instance reads the certificates
//! another one downloaded, and a `job_runs` lease lets one instance download at a time.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::db::{Db, DbError, job_runs, platform_certificates};
use crate::wxpay::v3::platform_keys::CertificateCache;

/// The `job_runs` row whose lease is the right to download.
const DOWNLOAD_LEASE: &str = "wechat_v3_certificates";

pub struct DbCertificateCache {
    pub db: Db,
    pub mch_id: String,
    /// This instance's name (`INSTANCE_ID`), the lease's owner.
    pub owner: String,
}

#[async_trait]
impl CertificateCache for DbCertificateCache {
    async fn load(&self) -> Option<(Vec<u8>, DateTime<Utc>)> {
        let mch_id = self.mch_id.clone();
        match self.db.read(move |c| platform_certificates::load(c, &mch_id)).await {
            Ok(row) => row.map(|(body, at)| (body.into_bytes(), at.and_utc())),
            Err(e) => {
                tracing::warn!(error = %e, "the shared platform certificates cannot be read");
                None
            }
        }
    }

    async fn store(&self, body: &[u8], fetched_at: DateTime<Utc>) {
        let (mch_id, body) = (self.mch_id.clone(), String::from_utf8_lossy(body).into_owned());
        let stored =
            self.db.write(move |c| platform_certificates::store(c, &mch_id, &body, fetched_at.naive_utc())).await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "the downloaded platform certificates could not be shared");
        }
    }

    async fn claim_download(&self, hold: chrono::Duration) -> bool {
        let owner = self.owner.clone();
        let claimed = self
            .db
            .write(move |c| -> Result<bool, DbError> {
                let now = crate::db::now();
                job_runs::claim(c, DOWNLOAD_LEASE, &owner, now, now + hold, None)
            })
            .await;
        // Without the database, downloading anyway is better than verifying nothing.
        claimed.unwrap_or(true)
    }

    async fn release_download(&self) {
        let owner = self.owner.clone();
        let released = self.db.write(move |c| job_runs::finish(c, DOWNLOAD_LEASE, &owner, crate::db::now())).await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "the certificate download lease could not be released (it runs out by itself)");
        }
    }
}
