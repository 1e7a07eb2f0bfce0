//! The server under test: the release binary on 127.0.0.1 with a fresh database, the simulator
//! mounted and the jobs off (the figures are of request paths, not of background work), its start
//! time and its resident memory read from /proc.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const API_TOKEN: &str = "bench-token-0123456789abcdefghijkl";
const SECRET_KEY: &str = "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";

pub struct Server {
    child: Child,
    pub port: u16,
    /// From spawning the process to its first answer on /healthz.
    pub start_to_first_answer: Duration,
}

impl Server {
    /// Starts `binary` on `db_url` in `dir`, and waits for its first answer.
    pub fn start(binary: &Path, db_url: &str, dir: &Path, extra_env: &[(&str, String)]) -> Server {
        let binary = std::fs::canonicalize(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).expect("the server log opens");
        let started = Instant::now();
        let child = Command::new(&binary)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_SECRET_KEY", SECRET_KEY)
            .env("ROCKET_LOG_LEVEL", "critical")
            .env("RUST_LOG", "warn")
            .env("DATABASE_URL", db_url)
            .env("PUBLIC_BASE_URL", format!("http://127.0.0.1:{port}"))
            .env("API_TOKEN", API_TOKEN)
            .env("ADMIN_USERNAME", "admin")
            .env("ADMIN_PASSWORD", "bench-admin-password")
            .env("SIMULATOR", "on")
            .env("JOBS", "off")
            .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log handle clones"))
            .stderr(log)
            .spawn()
            .expect("the server binary starts");
        let mut server = Server { child, port, start_to_first_answer: Duration::ZERO };
        while started.elapsed() < Duration::from_secs(60) {
            if server.get_status("/healthz") == Some(200) {
                server.start_to_first_answer = started.elapsed();
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the server exited with {status}; see {}", dir.join("server.log").display());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the server did not answer within 60 s; see {}", dir.join("server.log").display());
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The status of a plain GET, or None when nothing answers yet.
    pub fn get_status(&self, path: &str) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// Samples resident memory every 20 ms until the returned guard is finished.
    pub fn sample_rss(&self) -> RssSampler {
        let (pid, running, peak) = (self.child.id(), Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
        let thread = std::thread::spawn({
            let (running, peak) = (running.clone(), peak.clone());
            move || {
                while running.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        RssSampler { running, peak, thread }
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct RssSampler {
    running: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    /// The highest resident memory seen, in KiB.
    pub fn finish(self) -> u64 {
        self.running.store(false, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}
