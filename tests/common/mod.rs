//! Shared test helpers: a simulator on a random local port, the demo merchant, and tiny raw-TCP
//! HTTP doubles for failures the simulator does not produce.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use wechat_checkout::simulator::{self, SimulatorConfig, SimulatorHandle};
use wechat_checkout::wxpay::{ApiKey, GatewayConfig, HttpPayGateway, Merchant, SignType};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The fields of a successful payment notify from WeChat for the demo merchant, unsigned.
pub fn notify_fields(out_trade_no: &str, total_fee: i64, transaction_id: &str) -> wechat_checkout::wxpay::Fields {
    [
        ("appid", simulator::DEMO_APPID),
        ("mch_id", simulator::DEMO_MCH_ID),
        ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
        ("result_code", "SUCCESS"),
        ("return_code", "SUCCESS"),
        ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
        ("is_subscribe", "N"),
        ("trade_type", "JSAPI"),
        ("bank_type", "OTHERS"),
        ("total_fee", &total_fee.to_string()),
        ("fee_type", "CNY"),
        ("cash_fee", &total_fee.to_string()),
        ("transaction_id", transaction_id),
        ("out_trade_no", out_trade_no),
        ("time_end", "20261127101010"),
    ]
    .into_iter()
    .collect()
}

pub fn demo_merchant(sign_type: SignType) -> Merchant {
    Merchant {
        appid: simulator::DEMO_APPID.into(),
        mch_id: simulator::DEMO_MCH_ID.into(),
        key: ApiKey::new(simulator::DEMO_API_KEY).unwrap(),
        sign_type,
    }
}

/// A simulator fast enough for tests: notify retries and refund settlement scaled down 1000x.
pub fn fast_config() -> SimulatorConfig {
    SimulatorConfig { time_factor: 0.001, seed: Some(7), ..SimulatorConfig::default() }
}

pub async fn start_simulator(config: SimulatorConfig) -> SimulatorHandle {
    simulator::launch(config, LOCALHOST, 0, None).await.expect("simulator starts")
}

/// A client for the simulator with short timeouts and quick retries.
pub fn gateway(sim: &SimulatorHandle, merchant: Merchant) -> HttpPayGateway {
    HttpPayGateway::new(merchant, fast_gateway_config(&sim.api_base())).unwrap()
}

pub fn fast_gateway_config(base: &str) -> GatewayConfig {
    GatewayConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(1500),
        retry_backoff: Duration::from_millis(10),
        ..GatewayConfig::with_base(base)
    }
}

/// A raw HTTP server that answers every request with `reply` (or never answers when `None`),
/// counting requests and keeping their bodies.
pub struct RawDouble {
    pub base_url: String,
    pub hits: Arc<AtomicUsize>,
    pub bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

pub async fn raw_double(reply: Option<&'static str>) -> RawDouble {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (h, b) = (hits.clone(), bodies.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let (h, b) = (h.clone(), b.clone());
            tokio::spawn(async move {
                let body = read_request_body(&mut socket).await;
                h.fetch_add(1, Ordering::SeqCst);
                b.lock().await.push(body);
                match reply {
                    Some(text) => {
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                            text.len(),
                            text
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(60)).await,
                }
            });
        }
    });
    RawDouble { base_url, hits, bodies }
}

async fn read_request_body(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = socket.read(&mut chunk).await else { return buf };
        if n == 0 {
            return buf;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf[end + 4..end + 4 + len].to_vec();
            }
        }
    }
}
pub mod admin;
pub mod app;
pub mod browser;
pub mod hostile;
pub mod merchant_endpoint;
pub mod nginx;
pub mod notify_load;
pub mod process;
pub mod route_walk;
pub mod seeded;
