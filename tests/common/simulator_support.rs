//! Helpers of the simulator's own tests (`tests/simulator_*.rs` include this file with
//! `#[path]`): a fast simulator on a free port, raw signed XML calls, and a notify receiver
//! that answers from a script.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wechat_checkout::simulator::{self, SimulatorConfig, SimulatorHandle};
use wechat_checkout::wxpay::xml::{self, Fields};
use wechat_checkout::wxpay::{ApiKey, Merchant, SignType};

pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const NOTIFY_OK: &str = wechat_checkout::wxpay::notify::SUCCESS_REPLY;
pub const NOTIFY_FAIL: &str =
    "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[busy]]></return_msg></xml>";

/// Notify retries and refund settlement 1000 times faster; a fixed fault seed.
pub fn fast() -> SimulatorConfig {
    SimulatorConfig {
        time_factor: 0.001,
        notify_timeout: Duration::from_secs(2),
        seed: Some(11),
        ..SimulatorConfig::default()
    }
}

pub async fn start(config: SimulatorConfig) -> SimulatorHandle {
    simulator::launch(config, LOCAL, 0, None).await.expect("the simulator starts")
}

pub fn merchant(sign_type: SignType) -> Merchant {
    Merchant {
        appid: simulator::DEMO_APPID.into(),
        mch_id: simulator::DEMO_MCH_ID.into(),
        key: ApiKey::new(simulator::DEMO_API_KEY).unwrap(),
        sign_type,
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A raw reply: HTTP status, Content-Type, body.
pub struct Raw {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn fields(&self) -> Fields {
        xml::parse(&self.body).unwrap_or_else(|e| panic!("reply is not XML ({e}): {}", self.text()))
    }
}

pub async fn post_raw(url: &str, body: impl Into<reqwest::Body>) -> Raw {
    let r = http().post(url).header("content-type", "text/xml").body(body).send().await.unwrap();
    raw(r).await
}

pub async fn get_raw(url: &str) -> Raw {
    raw(http().get(url).send().await.unwrap()).await
}

pub async fn raw(r: reqwest::Response) -> Raw {
    let status = r.status().as_u16();
    let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    Raw { status, content_type, body: r.bytes().await.unwrap().to_vec() }
}

/// POSTs a request signed by `m` (envelope + `business`) and returns the reply fields.
pub async fn call(sim: &SimulatorHandle, path: &str, m: &Merchant, business: &[(&'static str, &str)]) -> Fields {
    let body = m.signed_request(business.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()).to_xml();
    post_raw(&format!("{}{path}", sim.api_base()), body).await.fields()
}

/// The fields of a JSAPI unifiedorder.
pub fn order_fields<'a>(
    out_trade_no: &'a str,
    total_fee: &'a str,
    notify_url: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("body", "模拟商店-测试商品"),
        ("out_trade_no", out_trade_no),
        ("total_fee", total_fee),
        ("spbill_create_ip", "203.0.113.7"),
        ("notify_url", notify_url),
        ("trade_type", "JSAPI"),
        ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
    ]
}

/// Creates a JSAPI order and returns its prepay_id.
pub async fn prepay(sim: &SimulatorHandle, m: &Merchant, out_trade_no: &str, fee: &str, notify_url: &str) -> String {
    let f = call(sim, "/pay/unifiedorder", m, &order_fields(out_trade_no, fee, notify_url)).await;
    assert_eq!(f.get("result_code"), Some("SUCCESS"), "{f:?}");
    f.get("prepay_id").unwrap().to_owned()
}

pub fn result(f: &Fields) -> (&str, &str) {
    (f.get("result_code").unwrap_or("-"), f.get("err_code").unwrap_or("-"))
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub content_type: String,
    pub body: String,
}

/// A notify receiver: answers the n-th request with `script[n]` (the last entry repeats).
/// Each entry is (HTTP status, body).
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (or panics after 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count() < n {
            assert!(Instant::now() < deadline, "only {} of {n} notifies arrived", self.count());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.all()
    }
}

pub async fn receiver(script: Vec<(u16, &'static str)>) -> Receiver {
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let url = format!("http://{}/wechat/notify", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let task_got = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else { return };
            let got = task_got.clone();
            let script = script.clone();
            tokio::spawn(async move { serve_one(socket, got, script).await });
        }
    });
    Receiver { url, got }
}

async fn serve_one(mut socket: TcpStream, got: Arc<Mutex<Vec<Received>>>, script: Vec<(u16, &'static str)>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, content_length) = loop {
        let Ok(n) = socket.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                .unwrap_or(0);
            break (pos + 4, len);
        }
    };
    while buf.len() < head_end + content_length {
        let Ok(n) = socket.read(&mut chunk).await else { return };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let content_type =
        head.lines().find_map(|l| l.strip_prefix("content-type:").map(|v| v.trim().to_owned())).unwrap_or_default();
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    let index = {
        let mut g = got.lock().unwrap();
        g.push(Received { at: Instant::now(), content_type, body });
        g.len() - 1
    };
    let (status, reply) = script[index.min(script.len() - 1)];
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Polls `check` until it holds (or panics after 10 s).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
