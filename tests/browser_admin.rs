//! A real browser signs in to the admin console, searches an order, opens it, re-queries it and
//! refunds it, and saves screenshots of the dashboard, the order list and the order detail.
//! Skipped with a notice without Chromium, unless REQUIRE_BROWSER=1.

mod common;

use std::time::Duration;

use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, prepay_id};
use common::browser::{Browser, click_and_wait, screenshot, wait_for};
use fantoccini::Locator;

#[tokio::test]
async fn staff_search_open_requery_and_refund() {
    let Some(browser) = Browser::start_desktop().await else { return };
    let app = TestApp::sqlite().await;
    // A paid order to work on, paid over HTTP exactly as in the checkout tests.
    let order = app.create_order("ADMIN-UI-1", 1990).await;
    let no = order["out_trade_no"].as_str().unwrap().to_owned();
    let jsapi = app.jsapi(&no).await;
    app.shopper(&prepay_id(&jsapi), "ok").await;
    assert!(app.wait_for_state(&no, "PAID").await);
    let c = browser.client.clone();

    c.goto(&app.url("/admin")).await.unwrap();
    wait_for(&c, "#username").await.send_keys(ADMIN_USER).await.unwrap();
    c.find(Locator::Css("#password")).await.unwrap().send_keys(ADMIN_PASSWORD).await.unwrap();
    click_and_wait(&c, "#login").await;
    wait_for(&c, "svg.chart").await;
    screenshot(&c, "admin-dashboard").await;

    c.goto(&app.url("/admin/orders")).await.unwrap();
    let search = wait_for(&c, "input[name=q]").await;
    screenshot(&c, "admin-orders").await;
    search.send_keys(&no).await.unwrap();
    search.send_keys("\u{E007}").await.unwrap(); // Enter
    // The unfiltered list shows the order too: wait for the search results page itself.
    for _ in 0..200 {
        if c.current_url().await.unwrap().query().is_some_and(|q| q.contains("q=")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    click_and_wait(&c, &format!("a[href='/admin/orders/{no}']")).await;
    wait_for(&c, "#order-state[data-state='PAID']").await;

    wait_for(&c, "#action-requery summary").await.click().await.unwrap();
    click_and_wait(&c, "#action-requery button[type=submit]").await;
    let flash = wait_for(&c, ".flash").await.text().await.unwrap();
    assert!(flash.contains("SUCCESS") || flash.contains("已支付"), "{flash}");

    wait_for(&c, "#action-refund summary").await.click().await.unwrap();
    wait_for(&c, "#action-refund input[name=reason]").await.send_keys("顾客退货").await.unwrap();
    c.find(Locator::Css("#action-refund input[name=confirm]")).await.unwrap().click().await.unwrap();
    click_and_wait(&c, "#action-refund button[type=submit]").await;
    let flash = wait_for(&c, ".flash").await.text().await.unwrap();
    assert!(flash.contains("退款"), "{flash}");
    screenshot(&c, "admin-order-detail").await;

    // WeChat settles the refund; the next re-query shows the order fully refunded.
    let out_refund_no = wait_for(&c, "#refunds tr.refund").await.attr("data-out-refund-no").await.unwrap().unwrap();
    app.http
        .post(app.url(&format!("/simulator/control/refunds/{}/settle", out_refund_no.trim())))
        .json(&serde_json::json!({"status": "SUCCESS"}))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_for(&c, "#action-requery summary").await.click().await.unwrap();
    click_and_wait(&c, "#action-requery button[type=submit]").await;
    let refund_state = wait_for(&c, "#refund-state").await.text().await.unwrap();
    assert!(refund_state.contains("全额退款"), "{refund_state}");
    screenshot(&c, "admin-order-refunded").await;

    browser.stop().await;
    app.stop().await;
}
