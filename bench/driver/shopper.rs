//! A shopper in WeChat, played once before the page benchmarks: signs in through the simulator's
//! OAuth to get the openid cookie, then opens orders and asks for their payment parameters, which
//! makes them PAYING (one real `unifiedorder` each). The cookie then rides every wrk request.

use std::sync::Arc;

use futures_util::StreamExt;
use reqwest::cookie::CookieStore;

pub const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323b) NetType/WIFI Language/zh_CN";

pub struct Shopper {
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    base_url: String,
}

impl Shopper {
    pub fn new(base_url: &str) -> Shopper {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .user_agent(WECHAT_UA)
            .build()
            .expect("the shopper's client builds");
        Shopper { http, jar, base_url: base_url.to_owned() }
    }

    /// Opens the first order's page, which goes through OAuth and back; returns the `Cookie`
    /// header the shopper's browser now sends.
    pub async fn sign_in(&self, out_trade_no: &str) -> String {
        let page = self.http.get(format!("{}/pay/{out_trade_no}", self.base_url)).send().await.unwrap();
        assert_eq!(page.status(), 200, "the checkout page after OAuth");
        assert!(page.text().await.unwrap().contains("立即支付"), "the checkout page offers to pay");
        let url = self.base_url.parse().unwrap();
        let cookie = self.jar.cookies(&url).expect("OAuth left a cookie");
        cookie.to_str().unwrap().to_owned()
    }

    /// Asks for the JSAPI parameters of each order, 16 at a time; each becomes PAYING.
    pub async fn make_paying(&self, orders: &[String]) {
        let results: Vec<(String, serde_json::Value)> = futures_util::stream::iter(orders)
            .map(|no| async move {
                let res = self
                    .http
                    .post(format!("{}/pay/{no}/jsapi", self.base_url))
                    .header("Origin", &self.base_url)
                    .send()
                    .await
                    .unwrap();
                (no.clone(), res.json().await.unwrap_or_default())
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for (no, reply) in results {
            assert_eq!(reply["state"], "PAYING", "order {no} did not become PAYING: {reply}");
        }
    }
}
