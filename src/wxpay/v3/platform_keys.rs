//! The keys WeChat's answers and notifies are verified with, in either of WeChat's two modes:
//! the WeChat Pay public key (one key, named `PUB_KEY_ID_…`), or platform certificates,
//! downloaded from `/v3/certificates`, kept, and replaced before they expire.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::certificates::PlatformCertificate;
use super::keys::VerifyingKey;
use super::verify::PlatformKeys;

/// A copy of the last certificates answer shared by every instance (the database), so that a
/// refresh window costs one download, not one per instance. The body is stored as WeChat sent
/// it: still encrypted under the APIv3 key, and checked again when read.
#[async_trait]
pub trait CertificateCache: Send + Sync {
    /// The stored answer and when it was downloaded, if any.
    async fn load(&self) -> Option<(Vec<u8>, DateTime<Utc>)>;
    /// Replaces the stored answer. Failing to store only costs another download later.
    async fn store(&self, body: &[u8], fetched_at: DateTime<Utc>);
    /// Claims the next download for `hold` (a lease): true for the one instance that should fetch.
    async fn claim_download(&self, hold: chrono::Duration) -> bool;
    /// Lets the claim go once the download is done (or failed).
    async fn release_download(&self);
}

/// Platform certificates as last downloaded, with when.
#[derive(Default)]
pub struct CertificateSet {
    current: RwLock<Arc<Certificates>>,
    /// Held while downloading, so concurrent callers wait for one download.
    pub(crate) refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
pub struct Certificates {
    pub certs: Vec<PlatformCertificate>,
    pub fetched_at: Option<DateTime<Utc>>,
}

impl CertificateSet {
    pub fn snapshot(&self) -> Arc<Certificates> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, certs: Vec<PlatformCertificate>, fetched_at: DateTime<Utc>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Certificates { certs, fetched_at: Some(fetched_at) });
    }
}

impl Certificates {
    /// The newest certificate valid at `now`: the one WeChat signs with after a rotation.
    pub fn newest_valid(&self, now: DateTime<Utc>) -> Option<&PlatformCertificate> {
        self.certs.iter().filter(|c| c.is_valid_at(now)).max_by_key(|c| c.not_before)
    }

    /// Whether a fresh download is due: none yet, older than `every`, or (at most once a minute)
    /// no certificate that lasts beyond `every` (so a rotation is picked up while the old one works).
    pub fn refresh_due(&self, now: DateTime<Utc>, every: chrono::Duration) -> bool {
        match self.fetched_at {
            None => true,
            // Near a certificate's end, again each minute (not each call) until a successor appears.
            Some(at) => {
                let ending = self.newest_valid(now).is_none_or(|c| c.not_after - now < every);
                now - at >= every || (ending && now - at >= chrono::Duration::minutes(1))
            }
        }
    }
}

impl PlatformKeys for CertificateSet {
    fn key(&self, serial: &str) -> Option<Arc<VerifyingKey>> {
        let now = Utc::now();
        self.snapshot().certs.iter().find(|c| c.serial_no == serial && c.is_valid_at(now)).map(|c| c.key.clone())
    }
}

/// How this merchant verifies WeChat.
#[derive(Clone)]
pub enum PlatformKeySource {
    /// The WeChat Pay public key and its ID. Requests also send the ID as `Wechatpay-Serial`, which
    /// asks WeChat to sign answers with this key.
    PublicKey { id: String, key: Arc<VerifyingKey> },
    /// Platform certificates from `/v3/certificates`.
    Certificates(Arc<CertificateSet>),
}

impl PlatformKeySource {
    pub fn public_key(id: &str, key: VerifyingKey) -> PlatformKeySource {
        PlatformKeySource::PublicKey { id: id.to_owned(), key: Arc::new(key) }
    }

    pub fn certificates() -> PlatformKeySource {
        PlatformKeySource::Certificates(Arc::default())
    }

    /// The `Wechatpay-Serial` request header, when it is to be sent.
    pub fn request_serial(&self) -> Option<&str> {
        match self {
            PlatformKeySource::PublicKey { id, .. } => Some(id),
            PlatformKeySource::Certificates(_) => None,
        }
    }
}

impl PlatformKeys for PlatformKeySource {
    fn key(&self, serial: &str) -> Option<Arc<VerifyingKey>> {
        match self {
            PlatformKeySource::PublicKey { id, key } => (id == serial).then(|| key.clone()),
            PlatformKeySource::Certificates(set) => set.key(serial),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> PlatformCertificate {
        PlatformCertificate::from_pem(include_str!("vectors/go_notify_certificate.pem")).unwrap()
    }

    #[test]
    fn refresh_is_due_when_old_or_near_expiry() {
        let every = chrono::Duration::hours(1);
        let set = CertificateSet::default();
        let now = cert().not_before + chrono::Duration::days(10);
        assert!(set.snapshot().refresh_due(now, every));
        set.replace(vec![cert()], now);
        assert!(!set.snapshot().refresh_due(now + chrono::Duration::minutes(59), every));
        assert!(set.snapshot().refresh_due(now + every, every));
        let near_end = cert().not_after - chrono::Duration::minutes(30);
        set.replace(vec![cert()], near_end);
        assert!(!set.snapshot().refresh_due(near_end + chrono::Duration::seconds(30), every));
        assert!(set.snapshot().refresh_due(near_end + chrono::Duration::minutes(1), every));
    }

    #[test]
    fn keys_by_serial_and_mode() {
        let c = cert();
        let source = PlatformKeySource::public_key("PUB_KEY_ID_01", c.key.as_ref().clone());
        assert!(source.key("PUB_KEY_ID_01").is_some());
        assert!(source.key(&c.serial_no).is_none());
        assert_eq!(source.request_serial(), Some("PUB_KEY_ID_01"));
        let set = Arc::new(CertificateSet::default());
        set.replace(vec![c.clone()], Utc::now());
        let source = PlatformKeySource::Certificates(set);
        assert!(source.key(&c.serial_no).is_some());
        assert!(source.key("PUB_KEY_ID_01").is_none());
        assert_eq!(source.request_serial(), None);
    }
}
