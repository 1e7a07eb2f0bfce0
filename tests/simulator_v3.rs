//! The simulator's API v3 over real HTTP, as a v3 merchant meets it: requests signed by hand
//! with `RequestSigner`, every answer (and notify) verified with the platform keys the simulator
//! publishes; prepay, pay, query, close, refunds, notifies with retries and probes, certificates,
//! the public-key mode, signature refusals, bills, faults, the bridge's RSA `paySign`, and the
//! simulator mounted under a base as the app mounts it.

#[path = "common/simulator_support.rs"]
mod support;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use support::{LOCAL, fast, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wechat_checkout::simulator::{
    self, ApiVersion, DEMO_APPID, DEMO_MCH_ID, Faults, NotifyStatus, Outcome, SimV3Merchant, Simulator,
    SimulatorConfig, SimulatorHandle,
};
use wechat_checkout::wxpay::types::RefundStatus;
use wechat_checkout::wxpay::v3::certificates::{PlatformCertificate, open_certificates};
use wechat_checkout::wxpay::v3::models::{NotifyEnvelope, RefundObject, RefundResource, TradeBillAnswer, Transaction};
use wechat_checkout::wxpay::v3::verify::{self, KeySet, PROBE_PREFIX, SignatureError, SignedHeaders};
use wechat_checkout::wxpay::v3::{ApiV3Key, MerchantKey, RequestSigner, VerifyingKey, jsapi};

const APIV3_KEY: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
const SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

/// A v3 merchant (the demo mch_id) and a simulator that knows it.
struct V3 {
    /// `http://127.0.0.1:PORT`.
    origin: String,
    /// Where the API is mounted: empty for a launched simulator, `/simulator` inside an app.
    prefix: String,
    own_base: String,
    sim: Simulator,
    signer: RequestSigner,
    apiv3: ApiV3Key,
    _handle: Option<SimulatorHandle>,
    _shutdown: Option<rocket::Shutdown>,
}

fn v3_merchant(key: &MerchantKey, public_key_mode: bool) -> SimV3Merchant {
    SimV3Merchant {
        mch_id: DEMO_MCH_ID.into(),
        apiv3_key: ApiV3Key::new(APIV3_KEY).unwrap(),
        serial_no: SERIAL.into(),
        public_key_pem: key.public_key_pem(),
        public_key_mode,
    }
}

fn signer(key: Arc<MerchantKey>) -> RequestSigner {
    RequestSigner { mchid: DEMO_MCH_ID.into(), serial_no: SERIAL.into(), key }
}

async fn start_with(config: impl FnOnce(SimulatorConfig) -> SimulatorConfig, public_key_mode: bool) -> V3 {
    let key = Arc::new(MerchantKey::generate().unwrap());
    let config = config(SimulatorConfig { v3_merchants: vec![v3_merchant(&key, public_key_mode)], ..fast() });
    let handle = simulator::launch(config, LOCAL, 0, None).await.expect("the simulator starts");
    V3 {
        origin: handle.api_base(),
        prefix: String::new(),
        own_base: handle.own_base(),
        sim: handle.sim.clone(),
        signer: signer(key),
        apiv3: ApiV3Key::new(APIV3_KEY).unwrap(),
        _handle: Some(handle),
        _shutdown: None,
    }
}

async fn start() -> V3 {
    start_with(|c| c, false).await
}

/// An answer: status, headers, raw body.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn code(&self) -> (u16, String) {
        (self.status, self.json()["code"].as_str().unwrap_or_default().to_owned())
    }
}

/// The platform certificate and the WeChat Pay public key, by serial.
fn platform_keys(sim: &Simulator) -> KeySet {
    let info = sim.v3_platform();
    let cert = PlatformCertificate::from_pem(&info.certificate_pem).unwrap();
    let mut keys = KeySet::single(&cert.serial_no, cert.key.as_ref().clone());
    keys.0.insert(info.public_key_id.clone(), Arc::new(VerifyingKey::from_pem(&info.public_key_pem).unwrap()));
    keys
}

fn check(get: impl Fn(&str) -> Option<String>, body: &[u8], keys: &KeySet) -> Result<(), SignatureError> {
    let names = [
        "Wechatpay-Timestamp",
        "Wechatpay-Nonce",
        "Wechatpay-Signature",
        "Wechatpay-Serial",
        "Wechatpay-Signature-Type",
    ];
    let owned: HashMap<&str, String> = names.into_iter().filter_map(|n| get(n).map(|v| (n, v))).collect();
    let headers = SignedHeaders::read(|n| owned.get(n).map(String::as_str))?;
    verify::verify(&headers, body, keys, Utc::now().timestamp())
}

impl V3 {
    fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.origin, self.prefix)
    }

    async fn send_as(&self, method: &str, path: &str, body: &str, authorization: &str, serial: Option<&str>) -> Reply {
        let mut req = http()
            .request(method.parse().unwrap(), self.url(path))
            .header("Authorization", authorization)
            .header("Accept", "application/json");
        if !body.is_empty() {
            req = req.header("Content-Type", "application/json").body(body.to_owned());
        }
        if let Some(serial) = serial {
            req = req.header("Wechatpay-Serial", serial);
        }
        let r = req.send().await.unwrap();
        Reply { status: r.status().as_u16(), headers: r.headers().clone(), body: r.bytes().await.unwrap().to_vec() }
    }

    /// A request signed by the merchant (canonical URL: the mount prefix, the path and query).
    async fn send(&self, method: &str, path: &str, body: &str) -> Reply {
        let auth = self.signer.authorization(method, &format!("{}{path}", self.prefix), body.as_bytes());
        self.send_as(method, path, body, &auth, None).await
    }

    /// The answer's signature, checked with the keys the simulator publishes.
    fn verify(&self, r: &Reply) -> Result<(), SignatureError> {
        check(|n| r.header(n).map(str::to_owned), &r.body, &platform_keys(&self.sim))
    }

    /// A verified answer.
    fn verified(&self, r: Reply) -> Reply {
        self.verify(&r).unwrap_or_else(|e| panic!("{e}: {} {}", r.status, String::from_utf8_lossy(&r.body)));
        r
    }

    async fn prepay(&self, no: &str, total: i64, notify_url: &str) -> String {
        let r =
            self.verified(self.send("POST", "/v3/pay/transactions/jsapi", &prepay_body(no, total, notify_url)).await);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["prepay_id"].as_str().unwrap().to_owned()
    }

    async fn transaction(&self, no: &str) -> Transaction {
        let r = self.verified(
            self.send("GET", &format!("/v3/pay/transactions/out-trade-no/{no}?mchid={DEMO_MCH_ID}"), "").await,
        );
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }

    fn open<T: serde::de::DeserializeOwned>(&self, n: &Notified, aad: &str) -> (NotifyEnvelope, T) {
        let envelope: NotifyEnvelope = serde_json::from_slice(&n.body).unwrap();
        assert_eq!(envelope.resource.associated_data, aad);
        assert_eq!(envelope.resource.original_type.as_deref(), Some(aad));
        assert_eq!(envelope.resource_type, "encrypt-resource");
        let plain = envelope.resource.open(&self.apiv3).expect("the resource opens with the APIv3 key");
        (envelope, serde_json::from_slice(&plain).unwrap())
    }
}

fn prepay_body(no: &str, total: i64, notify_url: &str) -> String {
    json!({
        "appid": DEMO_APPID,
        "mchid": DEMO_MCH_ID,
        "description": "模拟商店-测试商品",
        "out_trade_no": no,
        "notify_url": notify_url,
        "amount": { "total": total, "currency": "CNY" },
        "payer": { "openid": OPENID },
    })
    .to_string()
}

fn refund_body(no: &str, refund_no: &str, refund: i64, total: i64, notify_url: Option<&str>) -> String {
    let mut body = json!({
        "out_trade_no": no,
        "out_refund_no": refund_no,
        "reason": "不想要了",
        "amount": { "refund": refund, "total": total, "currency": "CNY" },
    });
    if let Some(url) = notify_url {
        body["notify_url"] = json!(url);
    }
    body.to_string()
}

/// One notify the receiver got (header names lower-case).
#[derive(Clone, Debug)]
struct Notified {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Notified {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(&name.to_ascii_lowercase()).cloned()
    }
}

type Script = Arc<dyn Fn(usize, &Notified) -> u16 + Send + Sync>;

/// A notify receiver answering the n-th notify with the status `script` gives (a 2xx with an
/// empty body, anything else with `{"code":"FAIL"}`).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Notified>>>,
}

impl Receiver {
    async fn wait_for(&self, n: usize) -> Vec<Notified> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "only {} of {n} notifies arrived", got.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn receiver(script: impl Fn(usize, &Notified) -> u16 + Send + Sync + 'static) -> Receiver {
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let url = format!("http://{}/wechat/notify/v3", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Notified>>> = Arc::default();
    let (task_got, script): (_, Script) = (got.clone(), Arc::new(script));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_one(socket, task_got.clone(), script.clone()));
        }
    });
    Receiver { url, got }
}

async fn serve_one(mut socket: TcpStream, got: Arc<Mutex<Vec<Notified>>>, script: Script) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = socket.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let Ok(n) = socket.read(&mut chunk).await else { return };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let notified = Notified { headers, body: buf[head_end..].to_vec() };
    let index = {
        let mut g = got.lock().unwrap();
        g.push(notified.clone());
        g.len() - 1
    };
    let status = script(index, &notified);
    let body = if (200..300).contains(&status) { "" } else { r#"{"code":"FAIL","message":"失败"}"# };
    let response = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// A receiver that accepts every notify.
async fn accepting() -> Receiver {
    receiver(|_, _| 200).await
}

fn notify_check(n: &Notified, keys: &KeySet) -> Result<(), SignatureError> {
    check(|name| n.header(name), &n.body, keys)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn prepay_pay_query_and_a_notify_retried_after_a_failure() {
    let v3 = start().await;
    let rx = receiver(|i, _| if i == 0 { 500 } else { 200 }).await;
    let prepay_id = v3.prepay("V3PAY0001", 100, &rx.url).await;
    assert!(prepay_id.starts_with("wx") && prepay_id.len() == 36);
    // The same request again gets the same prepay_id; a different one is refused.
    assert_eq!(v3.prepay("V3PAY0001", 100, &rx.url).await, prepay_id);
    let differs =
        v3.verified(v3.send("POST", "/v3/pay/transactions/jsapi", &prepay_body("V3PAY0001", 101, &rx.url)).await);
    assert_eq!(differs.code(), (400, "INVALID_REQUEST".into()));

    let t = v3.transaction("V3PAY0001").await;
    assert_eq!((t.trade_state.as_str(), t.transaction_id.as_deref(), t.payer.as_ref()), ("NOTPAY", None, None));
    let r = v3.verified(v3.send("GET", "/v3/pay/transactions/out-trade-no/NOSUCHORDER?mchid=10000100", "").await);
    assert_eq!(r.code(), (404, "ORDER_NOT_EXIST".into()));
    assert!(r.header("Request-ID").is_some_and(|id| !id.ends_with("-0")));

    let paid = v3.sim.pay(&prepay_id, Outcome::Ok).await.unwrap();
    let got = rx.wait_for(2).await;
    let keys = platform_keys(&v3.sim);
    for n in &got {
        notify_check(n, &keys).expect("every notify is signed by the platform certificate");
        assert_eq!(n.header("Wechatpay-Serial"), Some(v3.sim.v3_platform().certificate_serial));
        assert!(n.header("content-type").is_some_and(|c| c.starts_with("application/json")));
    }
    assert_eq!(got[0].body, got[1].body, "a retry sends the same envelope");
    let (envelope, t): (_, Transaction) = v3.open(&got[1], "transaction");
    assert_eq!((envelope.event_type.as_str(), envelope.summary.as_str()), ("TRANSACTION.SUCCESS", "支付成功"));
    assert_eq!((t.trade_state.as_str(), t.out_trade_no.as_str()), ("SUCCESS", "V3PAY0001"));
    assert_eq!(t.transaction_id, paid.transaction_id);
    assert_eq!(t.payer.map(|p| p.openid).as_deref(), Some(OPENID));
    let amount = t.amount.unwrap();
    assert_eq!((amount.total, amount.payer_total), (Some(100), Some(100)));

    let t = v3.transaction("V3PAY0001").await;
    assert_eq!((t.trade_state.as_str(), t.transaction_id.clone()), ("SUCCESS", paid.transaction_id.clone()));
    assert!(t.success_time.is_some_and(|s| s.ends_with("+08:00")));
    let by_id = format!("/v3/pay/transactions/id/{}?mchid={DEMO_MCH_ID}", paid.transaction_id.unwrap());
    let r = v3.verified(v3.send("GET", &by_id, "").await);
    assert_eq!(r.json()["out_trade_no"], "V3PAY0001");
    let paid_again =
        v3.verified(v3.send("POST", "/v3/pay/transactions/jsapi", &prepay_body("V3PAY0001", 100, &rx.url)).await);
    assert_eq!(paid_again.code(), (403, "ORDER_PAID".into()));

    eventually("the notify to be delivered", || {
        v3.sim.order("V3PAY0001").unwrap().notify_status == NotifyStatus::Delivered
    })
    .await;
    let log = v3.sim.notify_log();
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|a| a.api == ApiVersion::V3 && a.kind == "payment" && !a.signature_probe));
    assert_eq!((log[0].http_status, log[0].accepted, log[1].accepted), (Some(500), false, true));
    assert_eq!(v3.sim.order("V3PAY0001").unwrap().sign_type, "RSA");
}

#[tokio::test]
async fn close_answers_a_signed_204_and_is_reentrant() {
    let v3 = start().await;
    let rx = accepting().await;
    v3.prepay("V3CLOSE001", 50, &rx.url).await;
    let close = |no: &str| format!("/v3/pay/transactions/out-trade-no/{no}/close");
    let body = json!({ "mchid": DEMO_MCH_ID }).to_string();
    let young = v3.verified(v3.send("POST", &close("V3CLOSE001"), &body).await);
    assert_eq!(young.code(), (403, "TRADE_ERROR".into()));
    v3.sim.advance_clock(Duration::from_secs(6 * 60));
    for _ in 0..2 {
        let r = v3.verified(v3.send("POST", &close("V3CLOSE001"), &body).await);
        assert_eq!((r.status, r.body.len()), (204, 0));
        assert!(r.header("Request-ID").is_some_and(|id| id.ends_with("-0")));
    }
    assert_eq!(v3.transaction("V3CLOSE001").await.trade_state, "CLOSED");
    let again =
        v3.verified(v3.send("POST", "/v3/pay/transactions/jsapi", &prepay_body("V3CLOSE001", 50, &rx.url)).await);
    assert_eq!(again.code(), (400, "ORDER_CLOSED".into()));
    let unknown = v3.verified(v3.send("POST", &close("V3NOSUCH01"), &body).await);
    assert_eq!(unknown.code(), (404, "ORDER_NOT_EXIST".into()));

    let paid = v3.prepay("V3CLOSE002", 50, &rx.url).await;
    v3.sim.pay(&paid, Outcome::Ok).await.unwrap();
    v3.sim.advance_clock(Duration::from_secs(6 * 60));
    let r = v3.verified(v3.send("POST", &close("V3CLOSE002"), &body).await);
    assert_eq!(r.code(), (403, "ORDER_PAID".into()));
}

#[tokio::test]
async fn refunds_their_query_and_refund_notifies() {
    let v3 = start().await;
    let rx = accepting().await;
    let prepay_id = v3.prepay("V3REFUND01", 300, &rx.url).await;
    let unpaid = v3
        .verified(v3.send("POST", "/v3/refund/domestic/refunds", &refund_body("V3REFUND01", "R1", 1, 300, None)).await);
    assert_eq!(unpaid.code(), (404, "RESOURCE_NOT_EXISTS".into()));
    v3.sim.pay(&prepay_id, Outcome::Ok).await.unwrap();
    rx.wait_for(1).await;

    let body = refund_body("V3REFUND01", "V3R-1", 120, 300, Some(&rx.url));
    let r = v3.verified(v3.send("POST", "/v3/refund/domestic/refunds", &body).await);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let created: RefundObject = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((created.status.as_str(), created.amount.refund, created.amount.total), ("PROCESSING", 120, 300));
    // Idempotent by out_refund_no.
    let again: RefundObject =
        serde_json::from_slice(&v3.verified(v3.send("POST", "/v3/refund/domestic/refunds", &body).await).body).unwrap();
    assert_eq!(again.refund_id, created.refund_id);

    let got = rx.wait_for(2).await;
    notify_check(&got[1], &platform_keys(&v3.sim)).unwrap();
    let (envelope, resource): (_, RefundResource) = v3.open(&got[1], "refund");
    assert_eq!((envelope.event_type.as_str(), envelope.summary.as_str()), ("REFUND.SUCCESS", "退款成功"));
    assert_eq!((resource.out_refund_no.as_str(), resource.refund_status.as_str()), ("V3R-1", "SUCCESS"));
    assert_eq!((resource.amount.refund, resource.amount.total), (120, 300));
    assert!(resource.success_time.is_some());

    let q = v3.verified(v3.send("GET", "/v3/refund/domestic/refunds/V3R-1", "").await);
    let queried: RefundObject = serde_json::from_slice(&q.body).unwrap();
    assert_eq!((queried.status.as_str(), queried.refund_id.as_str()), ("SUCCESS", created.refund_id.as_str()));
    assert_eq!(v3.transaction("V3REFUND01").await.trade_state, "REFUND");
    let unknown = v3.verified(v3.send("GET", "/v3/refund/domestic/refunds/NOSUCH", "").await);
    assert_eq!(unknown.code(), (404, "RESOURCE_NOT_EXISTS".into()));

    let soon = refund_body("V3REFUND01", "V3R-2", 10, 300, None);
    let r = v3.verified(v3.send("POST", "/v3/refund/domestic/refunds", &soon).await);
    assert_eq!(r.code(), (429, "FREQUENCY_LIMITED".into()));
    v3.sim.advance_clock(Duration::from_secs(61));
    let too_much = refund_body("V3REFUND01", "V3R-2", 181, 300, None);
    let r = v3.verified(v3.send("POST", "/v3/refund/domestic/refunds", &too_much).await);
    assert_eq!(r.code(), (400, "INVALID_REQUEST".into()));

    // A forced outcome sends REFUND.ABNORMAL.
    v3.sim.settle_refund("V3R-1", RefundStatus::Change).await.unwrap();
    let got = rx.wait_for(3).await;
    let (envelope, resource): (_, RefundResource) = v3.open(&got[2], "refund");
    assert_eq!((envelope.event_type.as_str(), resource.refund_status.as_str()), ("REFUND.ABNORMAL", "ABNORMAL"));
}

#[tokio::test]
async fn certificates_download_decrypts_and_rotation_lists_both() {
    let v3 = start().await;
    let r = v3.send("GET", "/v3/certificates", "").await;
    assert_eq!(r.status, 200);
    let certs = open_certificates(&r.body, &v3.apiv3).expect("the certificates open with the APIv3 key");
    assert_eq!(certs.len(), 1);
    let serial = certs[0].serial_no.clone();
    assert_eq!((serial.len(), serial.clone()), (40, v3.sim.v3_platform().certificate_serial));
    assert!(certs[0].is_valid_at(Utc::now()));
    // The downloaded certificate verifies the answer that brought it, and others.
    let keys = KeySet::single(&serial, certs[0].key.as_ref().clone());
    check(|n| r.header(n).map(str::to_owned), &r.body, &keys).unwrap();
    assert_eq!(v3.sim.v3_certificate_downloads(), 1);

    let control = |path: &str| format!("{}/control/v3/{path}", v3.own_base);
    let rotated: Value = http().post(control("rotate-certificate")).send().await.unwrap().json().await.unwrap();
    assert_ne!(rotated["certificate_serial"], serial.as_str());
    let platform: Value = http().get(control("platform")).send().await.unwrap().json().await.unwrap();
    assert_eq!(platform, rotated);
    let r = v3.send("GET", "/v3/certificates", "").await;
    let certs = open_certificates(&r.body, &v3.apiv3).unwrap();
    let serials: Vec<&str> = certs.iter().map(|c| c.serial_no.as_str()).collect();
    assert_eq!(serials, [serial.as_str(), rotated["certificate_serial"].as_str().unwrap()]);
    assert_eq!(r.header("Wechatpay-Serial"), rotated["certificate_serial"].as_str(), "the new certificate signs");
    let stats: Value = http().get(control("stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats, json!({ "certificate_downloads": 2 }));
}

#[tokio::test]
async fn the_public_key_mode_signs_answers_asked_for_and_notifies_of_its_merchants() {
    let v3 = start_with(|c| c, true).await;
    let info = v3.sim.v3_platform();
    assert!(info.public_key_id.starts_with("PUB_KEY_ID_") && info.public_key_id.len() == 39);
    let path = format!("/v3/pay/transactions/out-trade-no/NOSUCHORDER?mchid={DEMO_MCH_ID}");
    let auth = v3.signer.authorization("GET", &path, b"");
    let r = v3.send_as("GET", &path, "", &auth, Some(&info.public_key_id)).await;
    assert_eq!(r.header("Wechatpay-Serial"), Some(info.public_key_id.as_str()));
    let only_public = KeySet::single(&info.public_key_id, VerifyingKey::from_pem(&info.public_key_pem).unwrap());
    check(|n| r.header(n).map(str::to_owned), &r.body, &only_public).unwrap();
    // With the certificate's serial (or none), the certificate signs.
    let auth = v3.signer.authorization("GET", &path, b"");
    let r = v3.send_as("GET", &path, "", &auth, Some(&info.certificate_serial)).await;
    assert_eq!(r.header("Wechatpay-Serial"), Some(info.certificate_serial.as_str()));

    let rx = accepting().await;
    let prepay_id = v3.prepay("V3PUBKEY01", 10, &rx.url).await;
    v3.sim.pay(&prepay_id, Outcome::Ok).await.unwrap();
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].header("Wechatpay-Serial"), Some(info.public_key_id.clone()));
    notify_check(&got[0], &only_public).expect("the notify is signed with the WeChat Pay public key");
}

#[tokio::test]
async fn wrong_keys_serials_timestamps_bodies_and_mchids_are_sign_errors() {
    let v3 = start().await;
    let path = "/v3/pay/transactions/jsapi";
    let body = prepay_body("V3SIGN0001", 1, "https://shop.example/notify");
    let other_key = RequestSigner { key: Arc::new(MerchantKey::generate().unwrap()), ..v3.signer.clone() };
    let other_serial =
        RequestSigner { serial_no: "0123456789ABCDEF0123456789ABCDEF01234567".into(), ..v3.signer.clone() };
    let other_mchid = RequestSigner { mchid: "1900000109".into(), ..v3.signer.clone() };
    let stale = Utc::now().timestamp() - 301;
    let cases = [
        ("wrong key", other_key.authorization("POST", path, body.as_bytes()), body.clone()),
        ("wrong serial", other_serial.authorization("POST", path, body.as_bytes()), body.clone()),
        ("unknown mchid", other_mchid.authorization("POST", path, body.as_bytes()), body.clone()),
        ("stale", v3.signer.authorization_at("POST", path, body.as_bytes(), stale, "n0nce"), body.clone()),
        (
            "tampered body",
            v3.signer.authorization("POST", path, body.as_bytes()),
            body.replace("\"total\":1", "\"total\":2"),
        ),
        ("other path", v3.signer.authorization("POST", "/v3/refund/domestic/refunds", body.as_bytes()), body.clone()),
        ("not the scheme", format!("Bearer {}", v3.signer.authorization("POST", path, body.as_bytes())), body.clone()),
    ];
    for (what, auth, sent) in cases {
        let r = v3.verified(v3.send_as("POST", path, &sent, &auth, None).await);
        assert_eq!(r.code(), (401, "SIGN_ERROR".into()), "{what}");
        assert_eq!(r.json()["message"], "签名错误,请检查后再试", "{what}");
    }
    let no_auth = v3.verified(v3.send_as("GET", "/v3/certificates", "", "", None).await);
    assert_eq!(no_auth.code(), (401, "SIGN_ERROR".into()));
    // The body names another merchant than the signature.
    let foreign = body.replace(DEMO_MCH_ID, "1900000109");
    let r = v3.verified(v3.send("POST", path, &foreign).await);
    assert_eq!(r.code(), (401, "SIGN_ERROR".into()));
    let r = v3.verified(v3.send("GET", "/v3/pay/transactions/out-trade-no/V3SIGN0001?mchid=1900000109", "").await);
    assert_eq!(r.code(), (401, "SIGN_ERROR".into()));
    // A sign error echoes the message the simulator rebuilt.
    let auth = other_key.authorization("POST", path, body.as_bytes());
    let r = v3.send_as("POST", path, &body, &auth, None).await;
    assert_eq!(r.json()["detail"]["sign_information"]["url"], path);
    assert!(v3.sim.order("V3SIGN0001").is_none(), "nothing refused was created");

    let unknown = body.replacen('{', "{\"extra\":1,", 1);
    let r = v3.verified(v3.send("POST", path, &unknown).await);
    assert_eq!(r.code(), (400, "PARAM_ERROR".into()));
    for (field, value) in
        [("/amount/total", json!(0)), ("/payer/openid", json!("")), ("/notify_url", json!(" https://a.example/n"))]
    {
        let mut v: Value = serde_json::from_str(&body).unwrap();
        *v.pointer_mut(field).unwrap() = value;
        let r = v3.verified(v3.send("POST", path, &v.to_string()).await);
        assert_eq!(r.code(), (400, "PARAM_ERROR".into()), "{field}");
    }
    let mut v: Value = serde_json::from_str(&body).unwrap();
    v["appid"] = json!("wx0000000000000001");
    assert_eq!(v3.verified(v3.send("POST", path, &v.to_string()).await).code(), (400, "APPID_MCHID_NOT_MATCH".into()));
    // Documented optional fields are accepted.
    v["appid"] = json!(DEMO_APPID);
    v["support_fapiao"] = json!(false);
    v["scene_info"] = json!({ "payer_client_ip": "203.0.113.7", "store_info": { "id": "S1" } });
    assert_eq!(v3.verified(v3.send("POST", path, &v.to_string()).await).status, 200);
}

async fn bill(v3: &V3, query: &str) -> Reply {
    v3.verified(v3.send("GET", &format!("/v3/bill/tradebill?{query}"), "").await)
}

/// Downloads a bill by its `download_url`, signing its path and query as a client does.
async fn download(v3: &V3, answer: &TradeBillAnswer) -> Reply {
    let url = url::Url::parse(&answer.download_url).unwrap();
    assert_eq!(url.origin().ascii_serialization(), v3.origin, "the download is on the origin the call came to");
    let canonical = format!("{}?{}", url.path(), url.query().unwrap());
    let auth = v3.signer.authorization("GET", &canonical, b"");
    let r = http().get(url.as_str()).header("Authorization", auth).send().await.unwrap();
    Reply { status: r.status().as_u16(), headers: r.headers().clone(), body: r.bytes().await.unwrap().to_vec() }
}

fn sha1(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Pays an order, moves the clock a day on, and returns the payment's Beijing date.
async fn paid_yesterday(v3: &V3, no: &str) -> chrono::NaiveDate {
    let rx = accepting().await;
    let prepay_id = v3.prepay(no, 123, &rx.url).await;
    v3.sim.pay(&prepay_id, Outcome::Ok).await.unwrap();
    let paid = v3.sim.order(no).unwrap().time_end.unwrap();
    v3.sim.advance_clock(Duration::from_secs(24 * 3600));
    paid.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).date_naive()
}

#[tokio::test]
async fn trade_bills_hash_and_download_plain_and_gzipped() {
    let v3 = start_with(|c| SimulatorConfig { bill_ready_hour: 0, ..c }, false).await;
    let day = paid_yesterday(&v3, "V3BILL0001").await;
    let r = bill(&v3, &format!("bill_date={day}")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let answer: TradeBillAnswer = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(answer.hash_type, "SHA1");
    let file = download(&v3, &answer).await;
    assert_eq!(file.status, 200);
    assert!(file.header("Wechatpay-Signature").is_none(), "the file is not signed");
    assert_eq!(sha1(&file.body), answer.hash_value);
    let text = String::from_utf8(file.body.clone()).unwrap();
    assert!(text.starts_with('\u{feff}') && text.contains("`V3BILL0001") && text.contains("\r\n"), "{text}");

    let r = bill(&v3, &format!("bill_date={day}&bill_type=SUCCESS&tar_type=GZIP")).await;
    let gz: TradeBillAnswer = serde_json::from_slice(&r.body).unwrap();
    assert!(gz.download_url.contains("tartype=GZIP"));
    let file = download(&v3, &gz).await;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(file.body.as_slice()).read_to_end(&mut plain).expect("a gzip file");
    assert_eq!(sha1(&plain), gz.hash_value, "the hash covers the uncompressed file");

    let empty = day.pred_opt().unwrap();
    assert_eq!(bill(&v3, &format!("bill_date={empty}")).await.code(), (400, "NO_STATEMENT_EXIST".into()));
    assert_eq!(bill(&v3, "bill_date=20240101").await.code(), (400, "PARAM_ERROR".into()));
    v3.sim.set_faults(Faults { bill_creating: true, ..Faults::default() });
    assert_eq!(bill(&v3, &format!("bill_date={day}")).await.code(), (400, "STATEMENT_CREATING".into()));
    v3.sim.set_faults(Faults::default());
    // A download link lives five minutes.
    v3.sim.advance_clock(Duration::from_secs(301));
    let expired = download(&v3, &answer).await;
    assert_eq!(expired.code(), (400, "INVALID_REQUEST".into()));
}

#[tokio::test]
async fn faults_system_errors_garbling_probes_and_amounts() {
    let v3 = start().await;
    let rx = accepting().await;
    // Refuses what does not verify (a probe), and turns the probes off then: the retry must
    // carry a true signature (and still the amount fault).
    let sim = v3.sim.clone();
    let keys = platform_keys(&v3.sim);
    let probed = receiver(move |_, n| match notify_check(n, &keys) {
        Ok(()) => 200,
        Err(_) => {
            sim.set_faults(Faults { notify_amount_delta: 7, ..Faults::default() });
            500
        }
    })
    .await;

    v3.sim.set_faults(Faults { system_error_rate: 1.0, ..Faults::default() });
    let r = v3.verified(v3.send("POST", "/v3/pay/transactions/jsapi", &prepay_body("V3FAULT001", 9, &rx.url)).await);
    assert_eq!(r.code(), (500, "SYSTEM_ERROR".into()));
    v3.sim.set_faults(Faults::default());
    assert!(v3.sim.order("V3FAULT001").is_none(), "a system error changes nothing");

    v3.prepay("V3FAULT001", 9, &rx.url).await;
    let other = v3.prepay("V3FAULT002", 9, &probed.url).await;
    v3.sim.advance_clock(Duration::from_secs(6 * 60));
    v3.sim.set_faults(Faults { garbled_rate: 1.0, ..Faults::default() });
    let r = v3.send("GET", &format!("/v3/pay/transactions/out-trade-no/V3FAULT001?mchid={DEMO_MCH_ID}"), "").await;
    assert_eq!(v3.verify(&r), Err(SignatureError::Mismatch));
    let close = json!({ "mchid": DEMO_MCH_ID }).to_string();
    let r = v3.send("POST", "/v3/pay/transactions/out-trade-no/V3FAULT001/close", &close).await;
    assert_eq!((r.status, v3.verify(&r)), (204, Err(SignatureError::Mismatch)), "an empty answer is garbled too");
    v3.sim.set_faults(Faults { v3_signtest_rate: 1.0, ..Faults::default() });
    let r = v3.send("GET", "/v3/certificates", "").await;
    assert!(r.header("Wechatpay-Signature").is_some_and(|s| s.starts_with(PROBE_PREFIX)));
    assert_eq!(v3.verify(&r), Err(SignatureError::Probe));

    v3.sim.set_faults(Faults { v3_signtest_rate: 1.0, notify_amount_delta: 7, ..Faults::default() });
    v3.sim.pay(&other, Outcome::Ok).await.unwrap();
    let got = probed.wait_for(2).await;
    assert!(got[0].header("Wechatpay-Signature").is_some_and(|s| s.starts_with(PROBE_PREFIX)));
    let (_, t): (_, Transaction) = v3.open(&got[1], "transaction");
    assert_eq!(t.amount.unwrap().total, Some(16), "the amount fault, in a correctly sealed notify");
    eventually("the second delivery to be logged", || v3.sim.notify_log().iter().any(|a| a.accepted)).await;
    let log: Vec<_> = v3.sim.notify_log().into_iter().filter(|a| a.out_trade_no == "V3FAULT002").collect();
    assert_eq!(log.iter().map(|a| (a.signature_probe, a.accepted)).collect::<Vec<_>>(), [(true, false), (false, true)]);
}

#[tokio::test]
async fn the_bridge_checks_an_rsa_pay_sign_with_the_merchants_key() {
    let v3 = start().await;
    let rx = accepting().await;
    let prepay_id = v3.prepay("V3BRIDGE01", 88, &rx.url).await;
    let verify = |params: Value| {
        let url = format!("{}/bridge/verify", v3.own_base);
        async move { http().post(url).json(&params).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let params = jsapi::params(&v3.signer.key, DEMO_APPID, &prepay_id, Utc::now().timestamp(), "n0nce1234".into());
    assert_eq!(params.sign_type, "RSA");
    let ok = verify(serde_json::to_value(&params).unwrap()).await;
    assert_eq!((ok["ok"].clone(), ok["total_fee"].clone()), (json!(true), json!(88)), "{ok}");
    let mut tampered = params.clone();
    tampered.nonce_str = "n0nce1235".into();
    let refused = verify(serde_json::to_value(&tampered).unwrap()).await;
    assert_eq!((refused["ok"].clone(), refused["err_desc"].clone()), (json!(false), json!("fail_invalid signature")));
    let other = MerchantKey::generate().unwrap();
    let foreign = jsapi::params(&other, DEMO_APPID, &prepay_id, Utc::now().timestamp(), "n0nce1234".into());
    assert_eq!(verify(serde_json::to_value(&foreign).unwrap()).await["ok"], false);
    let mut md5 = params;
    md5.sign_type = "MD5".into();
    assert_eq!(verify(serde_json::to_value(&md5).unwrap()).await["ok"], false, "a v3 order is paid with RSA");
}

#[tokio::test]
async fn the_platform_keys_survive_a_restart_with_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = MerchantKey::generate().unwrap();
    let config = || SimulatorConfig {
        state_file: Some(dir.path().join("wxsim.json")),
        v3_merchants: vec![v3_merchant(&key, false)],
        ..fast()
    };
    let first = simulator::launch(config(), LOCAL, 0, None).await.unwrap();
    first.sim.rotate_v3_certificate();
    let info = first.sim.v3_platform();
    first.shutdown().await;
    let second = simulator::launch(config(), LOCAL, 0, None).await.unwrap();
    assert_eq!(second.sim.v3_platform(), info);
    second.sim.reset();
    assert_eq!(second.sim.v3_platform(), info, "reset keeps the platform keys");
    second.shutdown().await;
}

/// The simulator mounted at `/simulator` inside another Rocket, as the app mounts it.
async fn start_mounted() -> V3 {
    use rocket::fairing::AdHoc;
    let key = Arc::new(MerchantKey::generate().unwrap());
    let config = SimulatorConfig { v3_merchants: vec![v3_merchant(&key, false)], bill_ready_hour: 0, ..fast() };
    let sim = Simulator::new(config).unwrap();
    let figment = rocket::figment::Figment::from(rocket::Config::debug_default())
        .merge(("address", LOCAL))
        .merge(("port", 0))
        .merge(("log_level", rocket::config::LogLevel::Off));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rocket = simulator::mount(rocket::custom(figment), sim.clone(), "/simulator", "/simulator").attach(
        AdHoc::on_liftoff("port", move |r| {
            let port = r.config().port;
            Box::pin(async move {
                let _ = tx.send(port);
            })
        }),
    );
    let ignited = rocket.ignite().await.unwrap();
    let shutdown = ignited.shutdown();
    tokio::spawn(async move { ignited.launch().await });
    let port = rx.await.unwrap();
    let origin = format!("http://127.0.0.1:{port}");
    V3 {
        own_base: format!("{origin}/simulator"),
        origin,
        prefix: "/simulator".into(),
        sim,
        signer: signer(key),
        apiv3: ApiV3Key::new(APIV3_KEY).unwrap(),
        _handle: None,
        _shutdown: Some(shutdown),
    }
}

#[tokio::test]
async fn mounted_under_a_base_it_checks_the_full_path_and_links_bills_there() {
    let v3 = start_mounted().await;
    // Signing the path without the mount base is signing another URL.
    let body = prepay_body("V3MOUNT001", 5, "https://shop.example/notify");
    let auth = v3.signer.authorization("POST", "/v3/pay/transactions/jsapi", body.as_bytes());
    let r = v3.verified(v3.send_as("POST", "/v3/pay/transactions/jsapi", &body, &auth, None).await);
    assert_eq!(r.code(), (401, "SIGN_ERROR".into()));
    let day = paid_yesterday(&v3, "V3MOUNT001").await;
    let r = bill(&v3, &format!("bill_date={day}")).await;
    let answer: TradeBillAnswer = serde_json::from_slice(&r.body).unwrap();
    assert!(answer.download_url.starts_with(&format!("{}/simulator/v3/billdownload/file?token=", v3.origin)));
    let file = download(&v3, &answer).await;
    assert_eq!((file.status, sha1(&file.body)), (200, answer.hash_value.clone()));
    let unknown = v3.verified(v3.send("GET", "/v3/no/such/path", "").await);
    assert_eq!(unknown.code(), (404, "NOT_FOUND".into()));
    if let Some(shutdown) = &v3._shutdown {
        shutdown.clone().notify();
    }
}
