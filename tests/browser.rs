//! A real browser (headless Chromium driven over WebDriver) pays a demo order through the
//! simulator's fake WeixinJSBridge, and another shopper cancels, retries and pays.
//!
//! Needs `chromium` and `chromedriver` (Debian packages). Without them the test prints a notice
//! and passes, unless `REQUIRE_BROWSER=1` (set by `.ci/run`), where a missing browser fails.

mod common;

use common::app::TestApp;
use common::browser::{Browser, screenshot, wait_for};
use fantoccini::{Client, Locator};

async fn buy(client: &Client, app: &TestApp, product: &str) {
    client.goto(&app.url("/")).await.unwrap();
    wait_for(client, &format!("#buy-{product}")).await.click().await.unwrap();
    wait_for(client, "#pay").await;
}

#[tokio::test]
async fn a_shopper_pays_and_another_cancels_then_retries() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::sqlite().await;
    let client = browser.client.clone();

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

    browser.stop().await;
    app.stop().await;
}

/// The same payment on WeChat Pay API v3: the page gets `signType` RSA parameters, the fake bridge
/// checks the RSA `paySign` with the merchant's public key, and the paid page waits for the server,
/// which learns of the payment from the AES-GCM-encrypted v3 notify.
#[tokio::test]
async fn a_shopper_pays_a_v3_order() {
    let Some(browser) = Browser::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = common::app::TestDb::sqlite(&dir);
    let app = TestApp::start(db, Some(dir), |f| f.merge(("wechat_api_version", "v3"))).await;
    let client = browser.client.clone();

    buy(&client, &app, "tea").await;
    wait_for(&client, "#pay").await.click().await.unwrap();
    wait_for(&client, "#wxsim-pay").await.click().await.unwrap();
    wait_for(&client, "#result[data-state='PAID']").await;
    screenshot(&client, "paid-v3").await;
    let text = client.find(Locator::Css("#result")).await.unwrap().text().await.unwrap();
    assert!(text.contains("支付成功"), "{text}");
    let orders =
        wechat_checkout::db::notify_log::page(&mut app.db_handle().conn().unwrap(), None, None, None, 10).unwrap();
    assert!(orders.iter().any(|r| r.verdict == "paid" && r.reply.contains("SUCCESS")), "{orders:?}");

    browser.stop().await;
    app.stop().await;
}
