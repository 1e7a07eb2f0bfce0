//! Two instances of the checkout on one database, both on WeChat Pay API v3 with platform
//! certificates, talking to one WeChat (the first instance's simulator): the certificates are
//! downloaded once and shared through the database, not once per instance, and a rotation is
//! picked up through one more download, whichever instance meets the new serial first. On
//! SQLite, and on PostgreSQL when TEST_DATABASE_URL is set.

mod common;

use common::app::{TestApp, TestDb, on_every_database};
use serde_json::Value;

async fn downloads(first: &TestApp) -> u64 {
    first.get_json("/simulator/control/v3/stats").await["certificate_downloads"].as_u64().unwrap()
}

/// Orders paid for through `app` (a signed, verified prepay each); their numbers.
async fn prepays(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let mut numbers = Vec::new();
    for i in 0..n {
        let (no, _) = app.paying_order(&format!("{prefix}-{i}"), 100).await;
        numbers.push(no);
    }
    numbers
}

/// Asks `app` for each order's status: a signed, verified v3 query each (the mounted simulator
/// sends notifies only to its own app, so the second instance is asked to query, not to prepay).
async fn queries(app: &TestApp, numbers: &[String]) {
    for no in numbers {
        let status: Value = app.get_json(&format!("/pay/{no}/status")).await;
        assert_eq!(status["state"], "PAYING", "{status}");
    }
}

#[tokio::test]
async fn two_instances_download_the_certificates_once() {
    on_every_database("v3 certificates shared", |db: TestDb, dir| async move {
        let first =
            TestApp::start(db.clone(), None, |f| f.merge(("wechat_api_version", "v3")).merge(("instance_id", "one")))
                .await;
        let wechat = first.url("/simulator");
        let second = TestApp::start(db, None, |f| {
            f.merge(("wechat_api_version", "v3"))
                .merge(("instance_id", "two"))
                .merge(("wechat_api_base", wechat.as_str()))
        })
        .await;
        let numbers = prepays(&first, "ONE", 4).await;
        queries(&second, &numbers[..2]).await;
        assert_eq!(downloads(&first).await, 1, "one download for both instances");

        // WeChat rotates its certificate: the next answer names a serial neither instance knows.
        let rotated: Value = first
            .http
            .post(first.url("/simulator/control/v3/rotate-certificate"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(rotated["certificate_serial"].is_string(), "{rotated}");
        queries(&second, &numbers[2..3]).await;
        prepays(&first, "ONE-AFTER", 2).await;
        assert_eq!(downloads(&first).await, 2, "the rotation cost one more download, shared");
        second.stop().await;
        first.stop().await;
        drop(dir);
    })
    .await;
}
