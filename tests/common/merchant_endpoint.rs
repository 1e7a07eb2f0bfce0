//! A merchant's webhook endpoint for tests: a raw HTTP/1.1 server on a local port that keeps
//! every request and answers 500 to the first few (to exercise retries), then 200, or gives one
//! fixed answer to every request (a redirect, a hostile body).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the merchant endpoint received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    pub fn event_id(&self) -> i64 {
        self.json()["id"].as_i64().expect("the body has an id")
    }
}

/// A raw HTTP server standing in for the merchant; it keeps every request.
pub struct Receiver {
    pub base_url: String,
    log: Arc<Mutex<Vec<Received>>>,
}

/// A merchant endpoint that answers 500 to the first `fail_first` requests, then 200, after
/// `delay`.
pub async fn receiver(fail_first: usize, delay: Duration) -> Receiver {
    let failures_left = Arc::new(AtomicUsize::new(fail_first));
    serve(delay, move || {
        let fail = failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let (status, body) = if fail { ("500 Internal Server Error", "boom") } else { ("200 OK", "ok") };
        (status.to_owned(), String::new(), body.to_owned())
    })
    .await
}

/// A merchant endpoint that answers every request with `status` (e.g. `302 Found`), the extra
/// header lines `headers` (each ending in `\r\n`) and `body`; it keeps every request.
pub async fn answering(status: &str, headers: &str, body: &str) -> Receiver {
    let reply = (status.to_owned(), headers.to_owned(), body.to_owned());
    serve(Duration::ZERO, move || reply.clone()).await
}

/// Serves on a fresh local port: every request is kept, then answered after `delay` with what
/// `answer` gives (status, extra header lines, body).
async fn serve<F>(delay: Duration, answer: F) -> Receiver
where
    F: Fn() -> (String, String, String) + Send + Sync + 'static,
{
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let (l, answer) = (log.clone(), Arc::new(answer));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let (log, answer) = (l.clone(), answer.clone());
            tokio::spawn(async move {
                let Some(request) = read_request(&mut socket).await else { return };
                log.lock().unwrap().push(request);
                tokio::time::sleep(delay).await;
                let (status, headers, body) = answer();
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    Receiver { base_url, log }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.lines();
        let path = lines.next()?.split(' ').nth(1)?.to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len = headers.get("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        if buf.len() >= end + 4 + len {
            return Some(Received { path, headers, body: buf[end + 4..end + 4 + len].to_vec() });
        }
    }
}

impl Receiver {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Requests per event id.
    pub fn counts(&self) -> BTreeMap<i64, usize> {
        let mut counts = BTreeMap::new();
        for r in self.received() {
            *counts.entry(r.event_id()).or_default() += 1;
        }
        counts
    }

    /// Waits until `done` holds for what was received.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; received {got:#?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
