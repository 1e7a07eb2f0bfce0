//! Real `wechat-checkout` processes for tests that need more than one, or need to kill one: each
//! on its own port with its own log file, talking to WeChat (a simulator, or a proxy in front of
//! one) over HTTP, and a shopper's browser to pay through it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wechat_checkout::simulator::{DEMO_API_KEY, DEMO_APP_SECRET, DEMO_APPID, DEMO_MCH_ID};

use super::app::{ADMIN_PASSWORD, ADMIN_USER, API_TOKEN, free_port, prepay_id};

pub const SECRET_KEY: &str = "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";
pub const PATIENCE: Duration = Duration::from_secs(60);
/// A value in `extra` that removes the variable from the process's environment instead.
pub const UNSET: &str = "\u{0}unset";
pub const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323b) NetType/WIFI Language/zh_CN";

/// One app process; killed if the test ends without stopping it.
pub struct Instance {
    pub name: String,
    pub base_url: String,
    child: Child,
    log: PathBuf,
}

impl Instance {
    /// Starts the app binary as the merchant `DEMO_*` on `db_url`, with real-mode credentials (the
    /// simulator is not mounted), `api_base` as WeChat Pay and `sim_base` as WeChat's OAuth, plus
    /// `extra` settings (jobs, webhooks…).
    pub fn spawn(
        name: &str,
        db_url: &str,
        api_base: &str,
        sim_base: &str,
        extra: &[(&str, String)],
        dir: &Path,
    ) -> Instance {
        let port = free_port();
        let base_url = format!("http://127.0.0.1:{port}");
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_wechat-checkout"));
        command
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_SECRET_KEY", SECRET_KEY)
            .env("ROCKET_CLI_COLORS", "false")
            .env("DATABASE_URL", db_url)
            .env("PUBLIC_BASE_URL", &base_url)
            .env("API_TOKEN", API_TOKEN)
            .env("ADMIN_USERNAME", ADMIN_USER)
            .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("SIMULATOR", "off")
            .env("WECHAT_APPID", DEMO_APPID)
            .env("WECHAT_MCH_ID", DEMO_MCH_ID)
            .env("WECHAT_API_KEY", DEMO_API_KEY)
            .env("WECHAT_APP_SECRET", DEMO_APP_SECRET)
            .env("WECHAT_API_BASE", api_base)
            .env("WECHAT_OPEN_BASE", sim_base)
            .env("WECHAT_SNS_BASE", sim_base)
            .env("INSTANCE_ID", name);
        for (key, value) in extra {
            if value == UNSET {
                command.env_remove(key);
            } else {
                command.env(key, value);
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the app binary starts");
        Instance { name: name.to_owned(), base_url, child, log }
    }

    /// [`Instance::spawn`], then [`Instance::wait_until_launched`]; on another port if the
    /// process could not serve on the first (up to three tries).
    pub async fn spawn_launched(
        name: &str,
        db_url: &str,
        api_base: &str,
        sim_base: &str,
        extra: &[(&str, String)],
        dir: &Path,
    ) -> Instance {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let mut instance = Instance::spawn(name, db_url, api_base, sim_base, extra, dir);
            match instance.wait_until_launched().await {
                Ok(()) => return instance,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("{name} never served:\n{}", failures.join("\n"));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_until_up(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited with {status} while starting:\n{}", self.name, self.log_text());
            }
            if http.get(self.url("/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not come up:\n{}", self.name, self.log_text());
    }

    /// Waits until this very process serves: its log says it launched on its own address and
    /// `/healthz` answers. (`wait_until_up` alone may be answered by another test's server that
    /// took the port between `free_port` and this process's bind.) `Err` with the log if the
    /// process exited first, as it does when it cannot bind; the caller may spawn another.
    pub async fn wait_until_launched(&mut self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let launched = format!("Rocket has launched from {}", self.base_url);
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("{} exited with {status} while starting:\n{}", self.name, self.log_text()));
            }
            if self.log_text().contains(&launched)
                && http.get(self.url("/healthz")).send().await.is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not come up:\n{}", self.name, self.log_text());
    }

    /// Stops the process as an orchestrator would (SIGTERM) and waits for a clean exit.
    pub fn stop(self) {
        self.signal("TERM");
        self.wait_for_exit(|status| status.success(), "a clean exit on SIGTERM");
    }

    /// Kills the process outright (SIGKILL), as a crash or a pulled plug would: no shutdown code
    /// runs, nothing is flushed that was not already committed.
    pub fn kill(self) {
        self.signal("KILL");
        self.wait_for_exit(|status| !status.success(), "death by SIGKILL");
    }

    /// The process id, for signals sent from outside `Instance`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and returns at once; see [`Instance::exit_within`] to wait for the exit.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends SIGKILL and returns at once (the process dies without running any code of its own);
    /// see [`Instance::exit_within`] to reap it.
    pub fn kill_hard(&self) {
        self.signal("KILL");
    }

    /// Waits (without blocking the runtime) up to `limit` for the process to exit: its exit
    /// status, or `None` if it still runs.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn signal(&self, name: &str) {
        // The shell's built-in `kill`: a minimal machine may have no /usr/bin/kill.
        let sent = Command::new("sh").args(["-c", &format!("kill -{name} {}", self.child.id())]).status().unwrap();
        assert!(sent.success());
    }

    fn wait_for_exit(mut self, expected: impl Fn(std::process::ExitStatus) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(expected(status), "{} exited with {status}, not {what}:\n{}", self.name, self.log_text());
                return;
            }
            assert!(Instant::now() < deadline, "{} did not stop ({what}):\n{}", self.name, self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shopper's WeChat browser: OAuth through the simulator, then the JSAPI parameters.
pub async fn checkout(instance: &Instance, no: &str) -> String {
    let http = reqwest::Client::builder()
        .user_agent(WECHAT_UA)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut url = instance.url(&format!("/pay/{no}"));
    for _ in 0..10 {
        let res = http.get(&url).send().await.unwrap();
        if !res.status().is_redirection() {
            assert_eq!(res.status(), 200, "checkout page of {no}");
            break;
        }
        let next = res.headers()["location"].to_str().unwrap().split('#').next().unwrap().to_owned();
        url = if next.starts_with("http") { next } else { instance.url(&next) };
    }
    let res =
        http.post(instance.url(&format!("/pay/{no}/jsapi"))).header("Origin", &instance.base_url).send().await.unwrap();
    assert_eq!(res.status(), 200, "jsapi of {no}");
    prepay_id(&res.json::<Value>().await.unwrap())
}

pub async fn create_order(instance: &Instance, merchant_order_id: &str, amount_fen: i64) -> String {
    let res = reqwest::Client::new()
        .post(instance.url("/api/v1/orders"))
        .bearer_auth(API_TOKEN)
        .json(&json!({ "amount_fen": amount_fen, "description": "双实例-测试商品", "merchant_order_id": merchant_order_id }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["out_trade_no"].as_str().unwrap().to_owned()
}

/// Waits for `check`, printing the instances' logs if it never holds.
pub async fn eventually(what: &str, instances: &[&Instance], mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs: Vec<String> = instances.iter().map(|i| format!("--- {} ---\n{}", i.name, i.log_text())).collect();
    panic!("timed out waiting for {what}\n{}", logs.join("\n"));
}
