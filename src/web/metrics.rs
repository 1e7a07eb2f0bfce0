//! `GET /metrics`: Prometheus text format. Counters and histograms are recorded through the
//! `metrics` facade where things happen (requests here, notifies in `payments/`, WeChat calls in
//! `wxpay/`, …) into one process-wide recorder; the figures that live in the database (orders by
//! state, open exceptions) are read at scrape time, at most once per [`FIGURES_TTL`], and
//! appended. With `METRICS_TOKEN` set, the endpoint wants `Authorization: Bearer <token>`.
//! docs/operations-metrics.md lists every metric.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rocket::http::{ContentType, Header, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::response::{self, Responder};
use rocket::{Request, Response, State, get, routes};
use subtle::ConstantTimeEq;

use crate::payments::Payments;
use crate::payments::console::LiveCounts;

/// The database figures are this old at most: however often scrapers come, the database does
/// one grouped index scan per 10 s.
pub const FIGURES_TTL: Duration = Duration::from_secs(10);
/// Latency buckets (seconds) for every `*_seconds` histogram: pages answer in milliseconds,
/// WeChat in tens to hundreds of them, and a call with retries or a timeout in seconds.
const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Writes per group-commit transaction (notify batches up to 512, order groups up to 256).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// The label of requests no route matched: never the raw path, which anyone can vary.
pub const UNMATCHED: &str = "unmatched";

pub fn routes() -> Vec<rocket::Route> {
    routes![get_metrics]
}

/// The process-wide recorder's handle. The recorder is global (the `metrics` macros write to
/// it), so it is installed once, whatever number of Rockets a process builds (tests build many).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = match builder().install_recorder() {
            Ok(handle) => handle,
            Err(e) => {
                // Another recorder came first (a test harness, an embedding program): render an
                // empty one of our own rather than fail to start.
                tracing::warn!(error = %e, "metrics recorder not installed; /metrics shows the database figures only");
                builder().build_recorder().handle()
            }
        };
        describe();
        // Without the exporter's HTTP listener nothing else drains the histograms' sample
        // buffers; a process nobody scrapes must not grow.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "metrics upkeep thread did not start");
        }
        handle
    })
}

fn builder() -> PrometheusBuilder {
    let buckets =
        |b: PrometheusBuilder, m: Matcher, v: &[f64]| b.set_buckets_for_metric(m, v).expect("buckets are not empty");
    let b = buckets(PrometheusBuilder::new(), Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS);
    buckets(b, Matcher::Full("wechat_checkout_group_commit_batch_size".into()), BATCH_BUCKETS)
}

/// The HELP line of every metric recorded through the facade.
fn describe() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(
        "wechat_checkout_http_requests_total",
        "HTTP requests answered, by route template, method and status."
    );
    describe_histogram!(
        "wechat_checkout_http_request_duration_seconds",
        "Time to answer an HTTP request, by route and method."
    );
    describe_counter!(
        "wechat_checkout_notify_deliveries_total",
        "WeChat notify deliveries, by kind (payment, refund) and verdict."
    );
    describe_counter!(
        "wechat_checkout_notify_refused_dropped_total",
        "Refused notify deliveries not stored (rate limit, full queue, failed write)."
    );
    describe_counter!(
        "wechat_checkout_wechat_api_calls_total",
        "Calls to WeChat APIs (retries included in one call), by endpoint and outcome."
    );
    describe_histogram!(
        "wechat_checkout_wechat_api_duration_seconds",
        "Time of a WeChat API call with its retries, by endpoint."
    );
    describe_counter!(
        "wechat_checkout_wechat_api_retries_total",
        "Retries of WeChat Pay calls (same request sent again), by endpoint."
    );
    describe_counter!(
        "wechat_checkout_reconciliation_findings_total",
        "Differences a reconciliation recorded for the first time, by kind."
    );
    describe_counter!("wechat_checkout_reconciliation_runs_total", "Reconciliation runs that ended, by result.");
    describe_counter!(
        "wechat_checkout_webhook_deliveries_total",
        "Merchant webhook attempts, by outcome (delivered, retry, failed)."
    );
    describe_histogram!("wechat_checkout_webhook_delivery_duration_seconds", "Time of one merchant webhook attempt.");
    describe_histogram!(
        "wechat_checkout_group_commit_batch_size",
        "Writes per group-commit transaction, by writer (notify, sqlite_writes)."
    );
}

/// Counts one answered request; `route` is the matched route's template, or [`UNMATCHED`].
pub fn record_request(route: &str, method: &'static str, status: u16, elapsed: Duration) {
    metrics::histogram!("wechat_checkout_http_request_duration_seconds", "route" => route.to_owned(), "method" => method)
        .record(elapsed);
    metrics::counter!(
        "wechat_checkout_http_requests_total",
        "route" => route.to_owned(), "method" => method, "status" => status.to_string()
    )
    .increment(1);
}

/// The route template (`/pay/<out_trade_no>`, query part left out) that answered `req`.
pub fn route_label(req: &Request<'_>) -> String {
    match req.route() {
        Some(route) => route.uri.as_str().split('?').next().unwrap_or(UNMATCHED).to_owned(),
        None => UNMATCHED.to_owned(),
    }
}

/// The database figures last read, shared by the scrapes of one Rocket (one database).
#[derive(Default)]
pub struct Figures {
    // A tokio lock, held across the read: concurrent scrapes wait for one read instead of each
    // scanning the index.
    last: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl Figures {
    async fn text(&self, payments: &Payments) -> String {
        let mut last = self.last.lock().await;
        if let Some((at, text)) = &*last
            && at.elapsed() < FIGURES_TTL
        {
            return text.clone();
        }
        match payments.live_counts().await {
            Ok(counts) => {
                let text = render_figures(&counts);
                *last = Some((Instant::now(), text.clone()));
                text
            }
            Err(e) => {
                // Left out rather than shown stale: Prometheus marks the series absent.
                tracing::warn!(error = %e, "metrics: database figures unavailable");
                String::new()
            }
        }
    }
}

fn render_figures(counts: &LiveCounts) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, label: &str, rows: &[(String, i64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (value, n) in rows {
            out.push_str(&format!("{name}{{{label}=\"{}\"}} {n}\n", escape_label(value)));
        }
    };
    family("wechat_checkout_orders", "Orders by state, from the database.", "state", &counts.orders_by_state);
    family(
        "wechat_checkout_open_exceptions",
        "Unresolved exceptions by kind, from the database.",
        "kind",
        &counts.open_exceptions_by_kind,
    );
    out
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Whether the caller may read the metrics: no `METRICS_TOKEN` is set, or its bearer token
/// matches.
pub struct MetricsAccess(bool);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for MetricsAccess {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let token = req.rocket().state::<Payments>().map(|p| p.config.operations.metrics_token.clone());
        let allowed = match token {
            Some(None) => true,
            Some(Some(token)) => {
                let given = req.headers().get_one("Authorization").and_then(|h| h.strip_prefix("Bearer "));
                // Constant time: the comparison must not tell how much of a guess was right.
                bool::from(given.unwrap_or("").as_bytes().ct_eq(token.expose().as_bytes()))
            }
            None => false,
        };
        Outcome::Success(MetricsAccess(allowed))
    }
}

/// The scrape, or 401 with the challenge.
pub enum MetricsReply {
    Text(String),
    Unauthorized,
}

impl<'r> Responder<'r, 'static> for MetricsReply {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        match self {
            MetricsReply::Text(text) => Response::build()
                .header(ContentType::new("text", "plain").with_params([("version", "0.0.4"), ("charset", "utf-8")]))
                .sized_body(text.len(), std::io::Cursor::new(text))
                .ok(),
            MetricsReply::Unauthorized => Response::build()
                .status(Status::Unauthorized)
                .header(ContentType::Plain)
                .header(Header::new("WWW-Authenticate", "Bearer realm=\"metrics\""))
                .sized_body(None, std::io::Cursor::new("METRICS_TOKEN required\n"))
                .ok(),
        }
    }
}

#[get("/metrics")]
async fn get_metrics(access: MetricsAccess, payments: &State<Payments>, figures: &State<Figures>) -> MetricsReply {
    if !access.0 {
        return MetricsReply::Unauthorized;
    }
    let mut text = handle().render();
    text.push_str(&figures.text(payments).await);
    MetricsReply::Text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_render_as_gauges_with_escaped_labels() {
        let counts = LiveCounts {
            orders_by_state: vec![("PAID".into(), 3), ("NEW\"\\\n".into(), 1)],
            open_exceptions_by_kind: vec![("amount_mismatch".into(), 0)],
        };
        let text = render_figures(&counts);
        assert!(text.contains("# TYPE wechat_checkout_orders gauge\n"), "{text}");
        assert!(text.contains("wechat_checkout_orders{state=\"PAID\"} 3\n"), "{text}");
        assert!(text.contains("wechat_checkout_orders{state=\"NEW\\\"\\\\\\n\"} 1\n"), "{text}");
        assert!(text.contains("wechat_checkout_open_exceptions{kind=\"amount_mismatch\"} 0\n"), "{text}");
    }
}
