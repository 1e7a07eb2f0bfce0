//! The webhook URL check (`WEBHOOK_URL`, when set): its host passes the same address rule as
//! deliveries (the delivery client's resolver is used, so the address judged is the one
//! connected to), and it answers an HTTP `HEAD`. Any HTTP answer means reachable; no event is
//! sent, since an unsigned fake one could be taken for real.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use super::{Line, Status};
use crate::config::AppConfig;
use crate::payments::webhook_address::{GuardedResolver, literal_refusal};

const SUBJECT: &str = "webhook URL";

pub(super) async fn check(config: &AppConfig) -> Line {
    let Some(url) = &config.jobs.webhook_url else {
        return Line::new(Status::Skip, SUBJECT, "WEBHOOK_URL is not set (events go only to orders' own webhook_url)");
    };
    let policy = config.jobs.webhook_addresses;
    let hint = if policy.allow_private { "" } else { " (WEBHOOK_ALLOW_PRIVATE=on allows internal networks)" };
    if let Some(refusal) = literal_refusal(url, policy) {
        return Line::new(
            Status::Fail,
            SUBJECT,
            format!("WEBHOOK_URL: {refusal}: webhooks go only to public addresses{hint}"),
        );
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .user_agent(concat!("wechat-checkout-check-config/", env!("CARGO_PKG_VERSION")))
        .build();
    let client = match client {
        Ok(c) => c,
        Err(e) => return Line::new(Status::Fail, SUBJECT, format!("cannot build the HTTP client: {e}")),
    };
    let line = match client.head(url).send().await {
        Ok(reply) => Line::new(
            Status::Ok,
            SUBJECT,
            format!("{url} answers (HTTP {} to a HEAD request)", reply.status().as_u16()),
        ),
        Err(e) => {
            let cause = causes(e);
            let hint = if cause.contains("refused: address") { hint } else { "" };
            Line::new(Status::Fail, SUBJECT, format!("WEBHOOK_URL: cannot reach {url}: {cause}{hint}"))
        }
    };
    match (&line.status, &config.jobs.webhook_secret) {
        (Status::Ok, None) => Line::new(
            Status::Warn,
            SUBJECT,
            format!("{}; but WEBHOOK_SECRET is not set, so no webhooks are sent (they could not be signed)", line.text),
        ),
        _ => line,
    }
}

/// The error with its chain of causes: reqwest's own text alone says only "error sending request".
fn causes(e: reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    let mut text = e.without_url().to_string();
    for part in parts {
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}
