//! The refund API's client-certificate check over real TLS: no certificate → nginx's 400 page,
//! a certificate for another mch_id → "证书错误", the merchant's own certificate (as a PEM pair
//! or as WeChat's legacy PKCS#12 file) → the refund.

#[path = "common/simulator_support.rs"]
mod support;

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use support::*;
use wechat_checkout::simulator::{self, DEMO_MCH_ID, Outcome, TlsOptions};
use wechat_checkout::wxpay::refund::Refund;
use wechat_checkout::wxpay::tls::{ClientIdentity, IdentityError};
use wechat_checkout::wxpay::types::OrderRef;
use wechat_checkout::wxpay::{Fen, GatewayConfig, HttpPayGateway, PayGateway, SignType, WxError};

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca() -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "Simulated WeChat Pay CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pki { ca_pem: cert.pem(), issuer: Issuer::new(params, key) }
}

/// A leaf certificate signed by the CA: (certificate PEM, key PEM).
fn leaf(pki: &Pki, cn: &str, sans: Vec<String>, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params = CertificateParams::new(sans).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &pki.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{key}\n{cert}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn refunds_need_the_merchant_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ca();
    let (server_cert, server_key) = leaf(
        &pki,
        "api.mch.weixin.qq.com",
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (mch_cert, mch_key) = leaf(&pki, DEMO_MCH_ID, vec![], ExtendedKeyUsagePurpose::ClientAuth);
    let (other_cert, other_key) = leaf(&pki, "1900000109", vec![], ExtendedKeyUsagePurpose::ClientAuth);
    let tls = TlsOptions {
        cert_pem_path: write(dir.path(), "server.pem", &server_cert),
        key_pem_path: write(dir.path(), "server.key", &server_key),
        client_ca_pem_path: Some(write(dir.path(), "ca.pem", &pki.ca_pem)),
    };
    let sim = simulator::launch(fast(), LOCAL, 0, Some(tls)).await.expect("TLS simulator starts");
    assert!(sim.base_url.starts_with("https://127.0.0.1:"), "{}", sim.base_url);

    // Orders need no certificate.
    let m = merchant(SignType::Md5);
    let order = m.signed_request(
        order_fields("TLS1", "100", "https://shop.example/notify").iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    );
    let r = raw(client(&pki.ca_pem, None)
        .post(format!("{}/pay/unifiedorder", sim.api_base()))
        .body(order.to_xml())
        .send()
        .await
        .unwrap())
    .await;
    let prepay_id = r.fields().get("prepay_id").expect("unifiedorder over TLS").to_owned();
    sim.sim.pay(&prepay_id, Outcome::Ok).await.unwrap();

    let refund = |no: &str| {
        m.signed_request(vec![
            ("out_trade_no", "TLS1".into()),
            ("out_refund_no", no.into()),
            ("total_fee", "100".into()),
            ("refund_fee", "10".into()),
        ])
        .to_xml()
    };
    let url = format!("{}/secapi/pay/refund", sim.api_base());
    let none = raw(client(&pki.ca_pem, None).post(&url).body(refund("T-R1")).send().await.unwrap()).await;
    assert_eq!(none.status, 400);
    assert!(none.text().contains("400 No required SSL certificate was sent"), "{}", none.text());

    let foreign = client(&pki.ca_pem, Some((&other_cert, &other_key)));
    let r = raw(foreign.post(&url).body(refund("T-R1")).send().await.unwrap()).await;
    let f = r.fields();
    assert_eq!((f.get("return_code"), f.get("return_msg")), (Some("FAIL"), Some("证书错误")));

    let own = client(&pki.ca_pem, Some((&mch_cert, &mch_key)));
    let r = raw(own.post(&url).body(refund("T-R1")).send().await.unwrap()).await;
    assert_eq!(result(&r.fields()), ("SUCCESS", "-"), "{}", r.text());

    // The product's client with the merchant identity works too.
    sim.sim.advance_clock(std::time::Duration::from_secs(61));
    let config = GatewayConfig {
        identity: Some(ClientIdentity::from_pem_pair(mch_cert.as_bytes(), mch_key.as_bytes()).unwrap()),
        extra_root_pem: vec![pki.ca_pem.clone().into_bytes()],
        ..GatewayConfig::with_base(&sim.api_base())
    };
    let gw = HttpPayGateway::new(m.clone(), config).unwrap();
    let reply = gw.refund(&refund_of("T-R2", 20)).await.unwrap();
    assert_eq!(reply.refund_fee, Fen::new(20));

    // WeChat's apiclient_cert.p12 (legacy RC2/3DES encryption, password = mch_id), made by openssl.
    let key_path = write(dir.path(), "apiclient_key.pem", &mch_key);
    let cert_path = write(dir.path(), "apiclient_cert.pem", &mch_cert);
    let p12_path = dir.path().join("apiclient_cert.p12");
    let made = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-legacy", "-inkey"])
        .arg(&key_path)
        .arg("-in")
        .arg(&cert_path)
        .args(["-passout", &format!("pass:{DEMO_MCH_ID}"), "-out"])
        .arg(&p12_path)
        .status()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(made.success());
    let der = std::fs::read(&p12_path).unwrap();
    assert!(matches!(ClientIdentity::from_pkcs12(&der, "1900000109"), Err(IdentityError::Pkcs12Password)));
    let identity = ClientIdentity::from_pkcs12(&der, DEMO_MCH_ID).unwrap();
    sim.sim.advance_clock(std::time::Duration::from_secs(61));
    let config = GatewayConfig {
        identity: Some(identity),
        extra_root_pem: vec![pki.ca_pem.clone().into_bytes()],
        ..GatewayConfig::with_base(&sim.api_base())
    };
    let gw = HttpPayGateway::new(m.clone(), config).unwrap();
    let reply = gw.refund(&refund_of("T-R3", 30)).await.unwrap();
    assert_eq!(reply.refund_fee, Fen::new(30));

    // Over HTTPS, a client without the certificate refuses to send a refund at all.
    let config =
        GatewayConfig { extra_root_pem: vec![pki.ca_pem.into_bytes()], ..GatewayConfig::with_base(&sim.api_base()) };
    let gw = HttpPayGateway::new(m, config).unwrap();
    assert!(matches!(gw.refund(&refund_of("T-R4", 1)).await, Err(WxError::CertificateRequired)));
    sim.shutdown().await;
}

fn refund_of(out_refund_no: &str, fen: i64) -> Refund {
    Refund {
        order: OrderRef::OutTradeNo("TLS1".into()),
        out_refund_no: out_refund_no.into(),
        total_fee: Fen::new(100),
        refund_fee: Fen::new(fen),
        refund_desc: None,
        refund_account: None,
        notify_url: None,
    }
}
