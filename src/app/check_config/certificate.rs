//! The merchant API certificate check (`WECHAT_CERT_P12`, or `WECHAT_CERT_PEM` with
//! `WECHAT_KEY_PEM`): it loads as `serve` loads it, its key belongs to it (the TLS client that
//! presents it can be built), and it is within its validity, with a warning 30 days ahead.
//! Without one the app runs, but refunds are refused.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use rocket::mtls::x509::{FromDer, X509Certificate};

use super::{Line, Status};
use crate::config::AppConfig;
use crate::wxpay::tls::ClientIdentity;
use crate::wxpay::{GatewayConfig, HttpPayGateway, Merchant};

const SUBJECT: &str = "merchant certificate";
/// How long before expiry a certificate is reported (a new one takes a visit to the merchant
/// platform and a deployment).
const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

pub(super) fn check(config: &AppConfig) -> Line {
    let w = &config.wechat;
    if w.v3.is_some() && w.cert_p12.is_none() && w.cert_pem.is_none() {
        return Line::new(
            Status::Skip,
            SUBJECT,
            "not needed on API v3 (requests are signed with WECHAT_MCH_PRIVATE_KEY)",
        );
    }
    let loaded = match (&w.cert_p12, &w.cert_pem, &w.key_pem) {
        (Some(p12), _, _) => load_p12(p12, &w.mch_id),
        (None, Some(cert), Some(key)) => load_pem(cert, key),
        _ => {
            let (status, text) = if config.simulator {
                (Status::Skip, "none configured (the simulator refunds without one)")
            } else {
                (
                    Status::Warn,
                    "none configured: refunds will be refused until WECHAT_CERT_P12 (or WECHAT_CERT_PEM and WECHAT_KEY_PEM) is set",
                )
            };
            return Line::new(status, SUBJECT, text);
        }
    };
    match loaded.and_then(|loaded| key_matches(config, loaded)) {
        Ok(loaded) => validity(&loaded),
        Err(text) => Line::new(Status::Fail, SUBJECT, text),
    }
}

/// The identity as the TLS client will use it, the certificate's DER, and the variable it came from.
struct Loaded {
    identity: ClientIdentity,
    cert_der: Vec<u8>,
    var: &'static str,
}

fn read(var: &'static str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{var}: cannot read {}: {e}", path.display()))
}

fn load_p12(path: &Path, mch_id: &str) -> Result<Loaded, String> {
    const VAR: &str = "WECHAT_CERT_P12";
    let der = read(VAR, path)?;
    let identity = ClientIdentity::from_pkcs12(&der, mch_id).map_err(|e| format!("{VAR}: {}: {e}", path.display()))?;
    let certs = p12::PFX::parse(&der).ok().and_then(|pfx| pfx.cert_x509_bags(mch_id).ok()).unwrap_or_default();
    let cert_der =
        certs.into_iter().next().ok_or_else(|| format!("{VAR}: {}: no certificate inside", path.display()))?;
    Ok(Loaded { identity, cert_der, var: VAR })
}

fn load_pem(cert: &Path, key: &Path) -> Result<Loaded, String> {
    let cert_pem = read("WECHAT_CERT_PEM", cert)?;
    let key_pem = read("WECHAT_KEY_PEM", key)?;
    let cert_der = first_pem_block(&cert_pem, "CERTIFICATE")
        .ok_or_else(|| format!("WECHAT_CERT_PEM: {} holds no PEM certificate", cert.display()))?;
    let identity = ClientIdentity::from_pem_pair(&cert_pem, &key_pem)
        .map_err(|e| format!("WECHAT_CERT_PEM / WECHAT_KEY_PEM: {} with {}: {e}", cert.display(), key.display()))?;
    Ok(Loaded { identity, cert_der, var: "WECHAT_CERT_PEM" })
}

/// Builds the TLS client that presents the certificate, as `serve` does: it refuses a key that
/// does not belong to the certificate.
fn key_matches(config: &AppConfig, loaded: Loaded) -> Result<Loaded, String> {
    let merchant = Merchant {
        appid: config.wechat.appid.clone(),
        mch_id: config.wechat.mch_id.clone(),
        key: config.wechat.api_key.clone(),
        sign_type: config.wechat.sign_type,
    };
    let gateway_config =
        GatewayConfig { identity: Some(loaded.identity.clone()), ..GatewayConfig::with_base(&config.wechat.api_base) };
    match HttpPayGateway::new(merchant, gateway_config) {
        Ok(_) => Ok(loaded),
        Err(e) => {
            let var = if loaded.var == "WECHAT_CERT_PEM" { "WECHAT_KEY_PEM" } else { loaded.var };
            Err(format!(
                "{var}: the private key does not belong to the certificate, or is of a kind TLS cannot use ({e})"
            ))
        }
    }
}

fn validity(loaded: &Loaded) -> Line {
    let var = loaded.var;
    let cert = match X509Certificate::from_der(&loaded.cert_der) {
        Ok((_, cert)) => cert,
        Err(e) => return Line::new(Status::Fail, SUBJECT, format!("{var}: the certificate cannot be read: {e}")),
    };
    let cn = cert.subject().iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or("?").to_owned();
    let validity = cert.validity();
    let until = date(validity.not_after.timestamp());
    let now = chrono::Utc::now().timestamp();
    if now < validity.not_before.timestamp() {
        let from = date(validity.not_before.timestamp());
        return Line::new(Status::Fail, SUBJECT, format!("{var}: the certificate (CN {cn}) is valid only from {from}"));
    }
    let left = validity.not_after.timestamp() - now;
    if left < 0 {
        return Line::new(
            Status::Fail,
            SUBJECT,
            format!(
                "{var}: the certificate (CN {cn}) expired on {until}; download a new one from the merchant platform"
            ),
        );
    }
    if left < EXPIRY_WARNING.as_secs() as i64 {
        return Line::new(
            Status::Warn,
            SUBJECT,
            format!(
                "{var}: the certificate (CN {cn}) expires on {until}, in {} day(s): renew it in the merchant platform",
                left / 86_400
            ),
        );
    }
    Line::new(Status::Ok, SUBJECT, format!("{var} loads, its key matches, CN {cn}, valid until {until}"))
}

fn date(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .map_or_else(|| timestamp.to_string(), |t| t.format("%Y-%m-%d").to_string())
}

/// The DER of the first `-----BEGIN <label>-----` block.
fn first_pem_block(pem: &[u8], label: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}
