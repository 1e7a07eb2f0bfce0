//! Keeping the platform certificates current: downloaded when none are known, when the last
//! download is older than the refresh interval or a certificate nears its end, and (at most once
//! a minute) when WeChat names a serial we do not know, as after a rotation.

use chrono::{Duration, Utc};

use super::certificates::{self, PlatformCertificate, open_certificates};
use super::client::V3PayGateway;
use super::errors::{self, Operation};
use super::platform_keys::{CertificateCache, CertificateSet, PlatformKeySource};
use super::verify::{self, KeySet, SignedHeaders};
use crate::wxpay::error::WxError;
use crate::wxpay::transport::{observe, with_retries};

/// How often the certificates are downloaded again (the Java SDK's interval; the Go SDK waits a
/// day). Certificates live five years and overlap during a rotation, so this is plenty.
pub const REFRESH_EVERY: Duration = Duration::hours(1);

/// How long one instance holds the right to download (others wait for its copy meanwhile).
const CLAIM_HOLD: Duration = Duration::seconds(30);

/// The least time between two downloads for serials named by notifies: a notify is anyone's to
/// send, and a made-up serial must not turn into a stream of downloads. (An answer is WeChat's own
/// word over TLS: the serial it names is looked for at once.)
pub const MIN_NOTIFY_INTERVAL: Duration = Duration::minutes(1);

/// Why the certificates are being refreshed.
#[derive(Clone, Copy, Debug)]
pub enum Refresh<'a> {
    /// Before a call: only if the refresh interval has passed or a certificate nears its end.
    IfDue,
    /// An answer named a serial we do not know (a rotation).
    AnswerSerial(&'a str),
    /// A notify named a serial we do not know: at most once per [`MIN_NOTIFY_INTERVAL`].
    NotifySerial(&'a str),
}

impl Refresh<'_> {
    fn due(self, set: &CertificateSet, now: chrono::DateTime<Utc>) -> bool {
        let current = set.snapshot();
        let unknown = |serial: &str| !current.certs.iter().any(|c| c.serial_no == serial);
        match self {
            Refresh::IfDue => current.refresh_due(now, REFRESH_EVERY),
            Refresh::AnswerSerial(serial) => unknown(serial),
            Refresh::NotifySerial(serial) => {
                unknown(serial) && current.fetched_at.is_none_or(|at| now - at >= MIN_NOTIFY_INTERVAL)
            }
        }
    }
}

impl V3PayGateway {
    /// Refreshes the platform certificates when `why` calls for it: from the copy another instance
    /// shared when that is newer, else by downloading (one instance at a time). A no-op in public
    /// key mode.
    pub async fn refresh_certificates(&self, why: Refresh<'_>) -> Result<(), WxError> {
        let PlatformKeySource::Certificates(set) = &self.merchant.platform else {
            return Ok(());
        };
        if !why.due(set, Utc::now()) {
            return Ok(());
        }
        // One refresh at a time here; whoever waited finds the fresh set and stops.
        let _one = set.refreshing.lock().await;
        if !why.due(set, Utc::now()) {
            return Ok(());
        }
        if let Some(cache) = &self.cache {
            if self.adopt_shared(set, cache.as_ref(), why).await {
                return Ok(());
            }
            if !cache.claim_download(CLAIM_HOLD).await {
                // Another instance is downloading now: its copy is moments away.
                for _ in 0..20 {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    if self.adopt_shared(set, cache.as_ref(), why).await {
                        return Ok(());
                    }
                }
                tracing::warn!("another instance's certificate download did not arrive; downloading here");
            }
        }
        let started = std::time::Instant::now();
        let result =
            with_retries(
                &self.config,
                "certificates",
                |base| async move { self.download_certificates(&base, set).await },
            )
            .await;
        observe(Operation::Certificates.endpoint(), started, &result);
        let downloaded = result.map(|(certs, body)| (certs, body, Utc::now()));
        if let (Some(cache), Ok((_, body, at))) = (&self.cache, &downloaded) {
            cache.store(body, *at).await;
        }
        if let Some(cache) = &self.cache {
            cache.release_download().await;
        }
        let (certs, _, at) = downloaded?;
        tracing::info!(
            serials = ?certs.iter().map(|c| c.serial_no.as_str()).collect::<Vec<_>>(),
            "platform certificates downloaded"
        );
        set.replace(certs, at);
        Ok(())
    }

    /// Takes the copy another instance shared, when it is newer than ours and (unless an unknown
    /// serial forces a refresh) within the refresh interval. Decrypting it authenticates it again.
    async fn adopt_shared(&self, set: &CertificateSet, cache: &dyn CertificateCache, why: Refresh<'_>) -> bool {
        let Some((body, fetched_at)) = cache.load().await else { return false };
        let now = Utc::now();
        let newer = set.snapshot().fetched_at.is_none_or(|ours| fetched_at > ours);
        if !newer || now - fetched_at >= REFRESH_EVERY {
            return false;
        }
        match open_certificates(&body, &self.merchant.apiv3_key) {
            Ok(certs) if certs.iter().any(|c| c.is_valid_at(now)) => {
                set.replace(certs, fetched_at);
                // Enough only if it holds what was missing.
                !why.due(set, now)
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "the shared platform certificates do not open; downloading instead");
                false
            }
        }
    }

    /// Before a call: a refresh when due. A failed refresh while a valid certificate is still held
    /// is logged and the call goes on; without any, the call cannot be verified and fails.
    pub(crate) async fn ensure_certificates(&self) -> Result<(), WxError> {
        match self.refresh_certificates(Refresh::IfDue).await {
            Err(e) => match &self.merchant.platform {
                PlatformKeySource::Certificates(set) if set.snapshot().newest_valid(Utc::now()).is_some() => {
                    tracing::warn!(error = %e, "platform certificate refresh failed; the current ones stay in use");
                    Ok(())
                }
                _ => Err(e),
            },
            ok => ok,
        }
    }

    /// One download: decrypted with the APIv3 key (what makes it trustworthy), each certificate's
    /// serial checked, and the answer's signature checked with a certificate it carries or one we
    /// already trust.
    async fn download_certificates(
        &self,
        base: &str,
        set: &CertificateSet,
    ) -> Result<(Vec<PlatformCertificate>, Vec<u8>), WxError> {
        let (status, headers, body) = self.send(base, &reqwest::Method::GET, certificates::PATH, None).await?;
        if !(200..300).contains(&status) {
            return Err(errors::from_answer(status, &body, Operation::Certificates));
        }
        let certs = open_certificates(&body, &self.merchant.apiv3_key)
            .map_err(|e| WxError::bad_field("certificates", e.to_string()))?;
        let mut keys = KeySet::default();
        for c in set.snapshot().certs.iter().chain(&certs) {
            keys.0.insert(c.serial_no.clone(), c.key.clone());
        }
        let signed = SignedHeaders::read(|name| headers.get(name).and_then(|v| v.to_str().ok()))
            .map_err(WxError::BadAnswerSignature)?;
        verify::verify(&signed, &body, &keys, Utc::now().timestamp()).map_err(WxError::BadAnswerSignature)?;
        Ok((certs, body))
    }
}
