//! A headless Chromium driven over WebDriver (chromedriver), for the real-browser tests, with
//! screenshots saved under target/test-output/browser. A phone is Chromium's own device
//! emulation (a window cannot be narrower than 500 pixels); whole-page screenshots go through the
//! DevTools protocol, which WebDriver lacks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::app::free_port;

/// The screen of [`Browser::start_phone`] in CSS pixels, width × height.
pub const PHONE: (u32, u32) = (390, 844);

pub struct Browser {
    process: Child,
    pub client: Client,
    _profile: tempfile::TempDir,
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `None` (with a notice) when they
    /// are not installed, unless `REQUIRE_BROWSER=1`.
    pub async fn start() -> Option<Browser> {
        Self::start_sized(420, 900, None).await
    }

    /// A desktop-sized window, for the admin console.
    pub async fn start_desktop() -> Option<Browser> {
        Self::start_sized(1280, 1000, None).await
    }

    /// A phone: the 390 × 844 CSS pixels (at 2 device pixels each, with touch) of an iPhone 12
    /// to 15, the narrowest screen staff commonly open the console on, emulated by Chromium so
    /// that the page's viewport is that wide.
    pub async fn start_phone() -> Option<Browser> {
        let metrics = json!({ "width": PHONE.0, "height": PHONE.1, "pixelRatio": 2.0, "mobile": true, "touch": true });
        Self::start_sized(PHONE.0.max(500), PHONE.1, Some(json!({ "deviceMetrics": metrics }))).await
    }

    async fn start_sized(width: u32, height: u32, mobile_emulation: Option<Value>) -> Option<Browser> {
        let required = std::env::var("REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        let chromedriver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let chromium = find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
        let (Some(chromedriver), Some(chromium)) = (chromedriver, chromium) else {
            assert!(!required, "REQUIRE_BROWSER=1 but chromium/chromedriver are not installed");
            eprintln!(
                "NOTICE: chromium and chromedriver not found; browser test skipped (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        // fantoccini's rustls needs a process-wide crypto provider; ring is what the tree has.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let process = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        if let Some(emulation) = mobile_emulation {
            caps["goog:chromeOptions"]["mobileEmulation"] = emulation;
        }
        let caps: serde_json::Map<String, Value> = caps.as_object().unwrap().clone();
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .expect("tls")
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => return Some(Browser { process, client, _profile: profile }),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("chromedriver did not accept a session");
    }

    pub async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.process.kill();
    }
}

pub fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-output/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn screenshot(client: &Client, name: &str) {
    if let Ok(png) = client.screenshot().await {
        std::fs::write(output_dir().join(format!("{name}.png")), png).unwrap();
    }
}

/// A Chrome DevTools Protocol command, sent through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    method: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (reqwest::Method, Option<String>) {
        (reqwest::Method::POST, Some(json!({ "cmd": self.method, "params": self.params }).to_string()))
    }
}

/// A screenshot of the whole page rather than of the window (the layout stays the window's).
pub async fn screenshot_full_page(client: &Client, name: &str) {
    let size = client
        .execute("return [window.innerWidth, document.documentElement.scrollHeight]", vec![])
        .await
        .expect("the page's size");
    // Chromium cannot paint much more than this in one go; a longer page is cut off.
    let height = size[1].as_u64().unwrap_or(1000).min(7_000);
    let clip = json!({ "x": 0, "y": 0, "width": size[0], "height": height, "scale": 1 });
    let shot = client
        .issue_cmd(Cdp {
            method: "Page.captureScreenshot",
            params: json!({ "format": "png", "captureBeyondViewport": true, "clip": clip }),
        })
        .await
        .expect("a screenshot of the page");
    let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("PNG data")).unwrap();
    std::fs::write(output_dir().join(format!("{name}.png")), png).unwrap();
}

/// How wide the page is against the window: the document's and the body's scroll widths, and
/// the window's inner width. A page wider than its window scrolls sideways.
pub async fn widths(client: &Client) -> (u64, u64, u64) {
    let v = client
        .execute("return [document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]", vec![])
        .await
        .expect("the page's widths");
    let n = |i: usize| v[i].as_u64().unwrap_or_else(|| panic!("width {i} in {v}"));
    (n(0), n(1), n(2))
}

pub async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    match client.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await {
        Ok(element) => element,
        Err(e) => {
            screenshot(client, "failure").await;
            let url = client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            let source = client.source().await.unwrap_or_default();
            panic!("{css} did not appear ({e}) at {url}:\n{source}");
        }
    }
}

/// Clicks an element that submits a form or follows a link, and waits until the next page has
/// replaced the current one (the old document's root goes stale), so later look-ups cannot see
/// the page that was just left.
pub async fn click_and_wait(client: &Client, css: &str) {
    let old_root = client.find(Locator::Css("html")).await.expect("a page is loaded");
    wait_for(client, css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    for _ in 0..400 {
        if old_root.tag_name().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("clicking {css} did not load a new page");
}
