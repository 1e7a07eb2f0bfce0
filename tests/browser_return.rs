//! "Back to the shop" in a real browser (headless Chromium over WebDriver): an order created
//! through the API names a `return_url` on a tiny shop this test serves on 127.0.0.1; the browser
//! pays it through the simulator's fake WeixinJSBridge, lands on the paid page, sees the countdown,
//! and is sent back to the shop by itself, which receives `out_trade_no` and `merchant_order_id`.
//! A second shopper stops the countdown and stays.
//!
//! Needs `chromium` and `chromedriver` (Debian packages). Without them the test prints a notice
//! and passes, unless `REQUIRE_BROWSER=1` (set by `.ci/run`), where a missing browser fails.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::app::{PATIENCE, TestApp};
use common::browser::{Browser, screenshot, wait_for};
use fantoccini::{Client, Locator};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SHOP_PAGE: &str = "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>演示商店</title>\
    </head><body><h1 id=\"shop\">欢迎回到演示商店</h1></body></html>";

/// The merchant's shop: answers every GET with [`SHOP_PAGE`] and keeps each request target.
struct Shop {
    base_url: String,
    targets: Arc<Mutex<Vec<String>>>,
}

impl Shop {
    async fn start() -> Shop {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let targets = Arc::new(Mutex::new(Vec::new()));
        let kept = targets.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 2048];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    kept.lock().unwrap().push(target);
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{SHOP_PAGE}",
                        SHOP_PAGE.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        Shop { base_url, targets }
    }

    /// The query parameters of each request the shop received for `path`.
    fn visits(&self, path: &str) -> Vec<Vec<(String, String)>> {
        let targets = self.targets.lock().unwrap().clone();
        targets
            .iter()
            .map(|t| url::Url::parse(&format!("{}{t}", self.base_url)).unwrap())
            .filter(|u| u.path() == path)
            .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
            .collect()
    }
}

/// An order through the merchant API that sends the shopper back to `return_url`.
async fn order(app: &TestApp, merchant_order_id: &str, return_url: &str) -> (String, String) {
    let body = json!({
        "amount_fen": 1990, "description": "演示商店-龙井茶", "merchant_order_id": merchant_order_id,
        "return_url": return_url,
    });
    let (status, created) = app.post_order(&body).await;
    assert_eq!(status, 201, "{created}");
    let no = created["out_trade_no"].as_str().unwrap().to_owned();
    (no, created["checkout_url"].as_str().unwrap().to_owned())
}

/// Opens the checkout and pays in the fake pay sheet, then waits for the paid page.
async fn pay(client: &Client, checkout_url: &str) {
    client.goto(checkout_url).await.unwrap();
    wait_for(client, "#pay").await.click().await.unwrap();
    wait_for(client, "#wxsim-pay").await.click().await.unwrap();
    wait_for(client, "#result[data-state='PAID']").await;
}

async fn current_url(client: &Client) -> url::Url {
    client.current_url().await.unwrap()
}

#[tokio::test]
async fn the_paid_page_returns_the_shopper_to_the_shop_with_the_order() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::sqlite().await;
    let shop = Shop::start().await;
    let client = browser.client.clone();

    let return_url = format!("{}/shop/thanks?from=wechat", shop.base_url);
    let (no, checkout_url) = order(&app, "BR-1|x@y*", &return_url).await;
    pay(&client, &checkout_url).await;
    let paid_at = Instant::now();
    // The paid page: the button, and a visible countdown before the shopper is sent back.
    let countdown = wait_for(&client, "#countdown:not([hidden])").await;
    let text = countdown.text().await.unwrap();
    assert!(text.contains("秒后自动返回商户"), "{text}");
    let back = client.find(Locator::Id("back")).await.unwrap();
    assert_eq!(back.text().await.unwrap(), "返回商户");
    screenshot(&client, "return-paid").await;
    assert!(shop.visits("/shop/thanks").is_empty(), "not sent back at once");

    // Sent back by itself, within a few seconds, to the shop, which receives the order.
    wait_for(&client, "#shop").await;
    let waited = paid_at.elapsed();
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(10), "sent back after {waited:?}");
    let landed = current_url(&client).await;
    assert_eq!(format!("{}://{}", landed.scheme(), landed.host_str().unwrap()), "http://127.0.0.1");
    assert_eq!(landed.path(), "/shop/thanks");
    screenshot(&client, "return-shop").await;
    let visits = shop.visits("/shop/thanks");
    assert_eq!(visits.len(), 1, "{visits:?}");
    let want = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        visits[0],
        vec![want("from", "wechat"), want("out_trade_no", &no), want("merchant_order_id", "BR-1|x@y*")]
    );
    // The shop must still ask: the API says PAID (the redirect itself proves nothing).
    assert_eq!(app.order(&no).await["state"], "PAID");

    // Another order: the shopper stops the countdown and stays on the paid page.
    let (other, checkout_url) = order(&app, "BR-2", &format!("{}/shop/stay", shop.base_url)).await;
    pay(&client, &checkout_url).await;
    wait_for(&client, "#stay").await.click().await.unwrap();
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(current_url(&client).await.path().ends_with(&format!("/pay/{other}")));
    assert!(client.find(Locator::Css("#countdown[hidden]")).await.is_ok(), "the countdown is gone");
    assert!(shop.visits("/shop/stay").is_empty(), "stayed");
    // The button still works.
    client.find(Locator::Id("back")).await.unwrap().click().await.unwrap();
    let started = Instant::now();
    while shop.visits("/shop/stay").is_empty() && started.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let visits = shop.visits("/shop/stay");
    assert_eq!(visits, vec![vec![want("out_trade_no", &other), want("merchant_order_id", "BR-2")]]);

    browser.stop().await;
    app.stop().await;
}
