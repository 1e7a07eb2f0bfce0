//! Helpers of the hostile-input catalogue: a snapshot of everything a hostile request must not
//! change (orders, refunds, timelines, exceptions, webhook events, staff accounts, API tokens and
//! the dashboard's money figures), and a raw HTTP/1.1 client that sends a request line exactly as
//! written (reqwest's URL parser would clean up `%2e%2e` and friends before they reach the server).
//!
//! The snapshot leaves out what refused requests write by design (the notify log, the audit log,
//! sign-in attempts) and bookkeeping that is no business fact (`updated_at`, poll schedules,
//! leases, failed sign-in counters).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wechat_checkout::db::{Db, figures, schema};
use wechat_checkout::domain::figures::Overview;

/// (number, state, amount, openid, client IP, prepay, transaction), then (paid, paid at, paid
/// after close, refunded, reserved for refunds, closed at, webhook URL): two halves, as tuples
/// of more than twelve cannot be compared or printed.
type OrderRow = (
    (String, String, i64, Option<String>, Option<String>, Option<String>, Option<String>),
    (Option<i64>, Option<NaiveDateTime>, i32, i64, i64, Option<NaiveDateTime>, Option<String>),
);
type RefundRow = (String, String, i64, String, Option<String>, Option<NaiveDateTime>);
type EventRow = (i64, String, String, Option<String>, Option<String>, String, String);
type ExceptionRow = (i64, String, String, Option<String>, Option<NaiveDateTime>);
type WebhookRow = (i64, String, String, String, String, String, String);
type StaffRow = (i64, String, String, i64, i32, i32, String);
type TokenRow = (i64, String, String, Option<NaiveDateTime>);

/// Everything a refused request must leave as it was.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub orders: Vec<OrderRow>,
    pub refunds: Vec<RefundRow>,
    pub events: Vec<EventRow>,
    pub exceptions: Vec<ExceptionRow>,
    pub webhooks: Vec<WebhookRow>,
    pub staff: Vec<StaffRow>,
    pub tokens: Vec<TokenRow>,
    pub figures: Overview,
}

impl Snapshot {
    pub fn take(db: &Db) -> Snapshot {
        let mut conn = db.conn().expect("a connection for the snapshot");
        let c = &mut *conn;
        use schema::{api_tokens as t, exceptions as x, order_events as e, orders as o, refunds as r};
        use schema::{staff_users as s, webhook_events as w};
        let orders = o::table
            .select((
                (o::out_trade_no, o::state, o::amount_fen, o::openid, o::client_ip, o::prepay_id, o::transaction_id),
                (
                    o::paid_fen,
                    o::paid_at,
                    o::paid_after_close,
                    o::refunded_fen,
                    o::refund_reserved_fen,
                    o::closed_at,
                    o::webhook_url,
                ),
            ))
            .order(o::out_trade_no)
            .load(c)
            .unwrap();
        let refunds = r::table
            .select((r::out_refund_no, r::out_trade_no, r::amount_fen, r::state, r::refund_id, r::succeeded_at))
            .order(r::out_refund_no)
            .load(c)
            .unwrap();
        let events = e::table
            .select((e::id, e::out_trade_no, e::kind, e::from_state, e::to_state, e::source, e::detail))
            .order(e::id)
            .load(c)
            .unwrap();
        let exceptions = x::table
            .select((x::id, x::kind, x::dedupe_key, x::out_trade_no, x::resolved_at))
            .order(x::id)
            .load(c)
            .unwrap();
        let webhooks = w::table
            .select((w::id, w::dedupe_key, w::event_type, w::out_trade_no, w::url, w::payload, w::state))
            .order(w::id)
            .load(c)
            .unwrap();
        let staff = s::table
            .select((
                s::id,
                s::username,
                s::role,
                s::session_version,
                s::must_change_password,
                s::disabled,
                s::password_hash,
            ))
            .order(s::id)
            .load(c)
            .unwrap();
        let tokens = t::table.select((t::id, t::name, t::token_hash, t::revoked_at)).order(t::id).load(c).unwrap();
        let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
        let figures = figures::overview(c, today, 7).unwrap();
        Snapshot { orders, refunds, events, exceptions, webhooks, staff, tokens, figures }
    }

    /// Panics naming `case` and the first part that differs from `before`.
    pub fn assert_unchanged_since(&self, before: &Snapshot, case: &str) {
        let parts: [(&str, String, String); 8] = [
            ("orders", format!("{:#?}", before.orders), format!("{:#?}", self.orders)),
            ("refunds", format!("{:#?}", before.refunds), format!("{:#?}", self.refunds)),
            ("order_events", format!("{:#?}", before.events), format!("{:#?}", self.events)),
            ("exceptions", format!("{:#?}", before.exceptions), format!("{:#?}", self.exceptions)),
            ("webhook_events", format!("{:#?}", before.webhooks), format!("{:#?}", self.webhooks)),
            ("staff_users", format!("{:#?}", before.staff), format!("{:#?}", self.staff)),
            ("api_tokens", format!("{:#?}", before.tokens), format!("{:#?}", self.tokens)),
            ("figures", format!("{:#?}", before.figures), format!("{:#?}", self.figures)),
        ];
        for (name, was, now) in parts {
            assert_eq!(was, now, "case {case:?} changed {name}");
        }
    }
}

/// A reply read off the wire.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method target` with `headers` and `body` to `base_url` (`http://host:port`) exactly as
/// written, over a fresh connection, and reads the whole reply.
pub async fn raw_request(
    base_url: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawReply {
    let host = base_url.strip_prefix("http://").expect("a plain-HTTP base URL");
    let mut socket = TcpStream::connect(host).await.expect("the server accepts a connection");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    socket.write_all(&request).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut reply))
        .await
        .expect("the server answers within 20 s")
        .expect("the reply can be read");
    parse_reply(&reply)
}

fn parse_reply(bytes: &[u8]) -> RawReply {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a reply with a head");
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let raw = &bytes[end + 4..];
    let body = if headers.get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        dechunk(raw)
    } else {
        raw.to_vec()
    };
    RawReply { status, headers, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else { return body };
        let size_text = String::from_utf8_lossy(&raw[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}
