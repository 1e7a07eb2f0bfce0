//! A real browser (headless Chromium driven over WebDriver) pays a demo order through the
//! simulator's fake WeixinJSBridge, and another shopper cancels, retries and pays.
//!
//! Needs `chromium` and `chromedriver` (Debian packages). Without them the test prints a notice
//! and passes, unless `REQUIRE_BROWSER=1` (set by `.ci/run`), where a missing browser fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::app::{TestApp, free_port};
use fantoccini::{Client, ClientBuilder, Locator};

struct Driver {
    process: Child,
    client: Client,
    _profile: tempfile::TempDir,
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

async fn start_browser() -> Option<Driver> {
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
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=420,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().unwrap().clone();
    for _ in 0..100 {
        match ClientBuilder::rustls()
            .expect("tls")
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return Some(Driver { process, client, _profile: profile }),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("chromedriver did not accept a session");
}

fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-output/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    if let Ok(png) = client.screenshot().await {
        std::fs::write(output_dir().join(format!("{name}.png")), png).unwrap();
    }
}

async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
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

async fn buy(client: &Client, app: &TestApp, product: &str) {
    client.goto(&app.url("/")).await.unwrap();
    wait_for(client, &format!("#buy-{product}")).await.click().await.unwrap();
    wait_for(client, "#pay").await;
}

#[tokio::test]
async fn a_shopper_pays_and_another_cancels_then_retries() {
    let Some(mut driver) = start_browser().await else { return };
    let app = TestApp::sqlite().await;
    let client = driver.client.clone();

    // Pay straight away.
    buy(&client, &app, "tea").await;
    screenshot(&client, "checkout").await;
    wait_for(&client, "#pay").await.click().await.unwrap();
    wait_for(&client, "#wxsim-pay").await;
    screenshot(&client, "pay-sheet").await;
    wait_for(&client, "#wxsim-pay").await.click().await.unwrap();
    wait_for(&client, "#result[data-state='PAID']").await;
    screenshot(&client, "paid").await;
    let text = client.find(Locator::Css("#result")).await.unwrap().text().await.unwrap();
    assert!(text.contains("支付成功"), "{text}");

    // Cancel in the pay sheet, see the retry button, retry and pay.
    buy(&client, &app, "cent").await;
    wait_for(&client, "#pay").await.click().await.unwrap();
    wait_for(&client, "#wxsim-cancel").await.click().await.unwrap();
    let retry = wait_for(&client, "#retry:not([hidden])").await;
    let message = client.find(Locator::Id("message")).await.unwrap().text().await.unwrap();
    assert!(message.contains("取消"), "{message}");
    screenshot(&client, "cancelled").await;
    retry.click().await.unwrap();
    wait_for(&client, "#wxsim-pay").await.click().await.unwrap();
    wait_for(&client, "#result[data-state='PAID']").await;

    client.close().await.unwrap();
    let _ = driver.process.kill();
    app.stop().await;
}
