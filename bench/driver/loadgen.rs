//! The load generator: keep-alive HTTP/1.1 connections on a few threads, each sending its next
//! request as soon as the previous answer is in. Requests are serialized once up front and
//! answers parsed with `httparse`, so the generator costs the shared cores little. Every answer is
//! checked (status and a piece of the body), so a fast wrong answer never passes for a fast right
//! one, and every latency is kept for exact percentiles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request of a workload.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub body: String,
    /// Headers of this request alone (a v3 notify's signature), after the run's.
    pub headers: Vec<(&'static str, String)>,
}

impl Req {
    pub fn get(path: String) -> Req {
        Req { method: "GET", path, body: String::new(), headers: Vec::new() }
    }

    pub fn post(path: &str, body: String) -> Req {
        Req { method: "POST", path: path.to_owned(), body, headers: Vec::new() }
    }

    /// The request on the wire, with the run's headers.
    fn to_bytes(&self, headers: &[(&'static str, String)]) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\nhost: 127.0.0.1\r\n", self.method, self.path);
        for (name, value) in headers.iter().chain(&self.headers) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", self.body.len()));
        [head.as_bytes(), self.body.as_bytes()].concat()
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Every request once; the run ends with the last answer.
    Once,
    /// The requests in a loop for this long.
    For(Duration),
}

pub struct Load {
    pub addr: SocketAddr,
    pub requests: Vec<Req>,
    pub mode: Mode,
    pub headers: Vec<(&'static str, String)>,
    pub expect_status: u16,
    pub expect_body: &'static str,
    pub connections: usize,
    pub threads: usize,
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub answered: u64,
    /// Answers with another status, or without the expected piece of body.
    pub unexpected: u64,
    /// Connections that failed or broke; their request is not counted as answered.
    pub socket_errors: u64,
    pub elapsed: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
    /// The first unexpected answer, cut short.
    pub sample: String,
}

impl Figures {
    pub fn per_second(&self) -> u64 {
        let us = self.elapsed.as_micros().max(1);
        u64::try_from(u128::from(self.answered) * 1_000_000 / us).unwrap_or(u64::MAX)
    }
}

/// Counts of one connection.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    unexpected: u64,
    socket_errors: u64,
    sample: Option<String>,
    last_answer: Option<Instant>,
}

struct Shared {
    load: Load,
    /// Each request of `load` as sent.
    wire: Vec<Vec<u8>>,
    next: AtomicUsize,
    start: Instant,
}

impl Shared {
    /// The next request to send, or None when the run is over.
    fn next(&self) -> Option<&[u8]> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let wire = match self.load.mode {
            Mode::Once => self.wire.get(i),
            Mode::For(d) if self.start.elapsed() < d => self.wire.get(i % self.wire.len()),
            Mode::For(_) => None,
        };
        wire.map(Vec::as_slice)
    }
}

pub fn run(load: Load) -> Figures {
    let wire = load.requests.iter().map(|r| r.to_bytes(&load.headers)).collect();
    let (threads, connections) = (load.threads.max(1), load.connections.max(1));
    let shared = Arc::new(Shared { load, wire, next: AtomicUsize::new(0), start: Instant::now() });
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let shared = shared.clone();
            let mine = (t..connections).step_by(threads).count();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
                rt.block_on(async move {
                    let tasks: Vec<_> = (0..mine).map(|_| tokio::spawn(connection(shared.clone()))).collect();
                    let mut tallies = Vec::new();
                    for task in tasks {
                        tallies.push(task.await.expect("a connection task ends"));
                    }
                    tallies
                })
            })
        })
        .collect();
    let tallies: Vec<Tally> = handles.into_iter().flat_map(|h| h.join().expect("a load thread ends")).collect();
    summarize(&shared, tallies)
}

fn summarize(shared: &Shared, tallies: Vec<Tally>) -> Figures {
    let mut latencies: Vec<u64> = tallies.iter().flat_map(|t| t.latencies_us.iter().copied()).collect();
    latencies.sort_unstable();
    let at = |q: usize| latencies.get((latencies.len() * q / 100).min(latencies.len().saturating_sub(1))).copied();
    let last = tallies.iter().filter_map(|t| t.last_answer).max().unwrap_or(shared.start);
    Figures {
        answered: latencies.len() as u64,
        unexpected: tallies.iter().map(|t| t.unexpected).sum(),
        socket_errors: tallies.iter().map(|t| t.socket_errors).sum(),
        elapsed: last - shared.start,
        p50_us: at(50).unwrap_or(0),
        p99_us: at(99).unwrap_or(0),
        sample: tallies.into_iter().find_map(|t| t.sample).unwrap_or_default(),
    }
}

/// Sends one request and reads its answer: (status, body).
async fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> std::io::Result<(u16, usize)> {
    stream.write_all(request).await?;
    buf.clear();
    loop {
        if buf.capacity() - buf.len() < 8192 {
            buf.reserve(64 * 1024);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut head = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head_len)) = head.parse(buf) else {
            continue;
        };
        let length = head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
            .ok_or_else(|| std::io::Error::other("an answer without Content-Length"))?;
        if buf.len() >= head_len + length {
            return Ok((head.code.unwrap_or(0), head_len));
        }
    }
}

async fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let stream = TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    Some(stream)
}

/// One keep-alive connection sending requests one after another; reconnects when it breaks.
async fn connection(shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let (mut stream, mut buf) = (None, Vec::with_capacity(64 * 1024));
    while let Some(request) = shared.next() {
        if stream.is_none() {
            stream = connect(shared.load.addr).await;
        }
        let Some(s) = stream.as_mut() else {
            tally.socket_errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let sent = Instant::now();
        match exchange(s, request, &mut buf).await {
            Ok((status, head_len)) => {
                let now = Instant::now();
                tally.latencies_us.push(u64::try_from((now - sent).as_micros()).unwrap_or(u64::MAX));
                tally.last_answer = Some(now);
                let body = String::from_utf8_lossy(&buf[head_len..]);
                if status != shared.load.expect_status || !body.contains(shared.load.expect_body) {
                    tally.unexpected += 1;
                    tally
                        .sample
                        .get_or_insert_with(|| format!("{status} {}", body.chars().take(160).collect::<String>()));
                }
            }
            Err(_) => {
                tally.socket_errors += 1;
                stream = None;
            }
        }
    }
    tally
}
