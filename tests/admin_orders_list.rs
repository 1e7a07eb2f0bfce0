//! The dashboard, the order list and its CSV export over real HTTP: every filter, search by each
//! of an order's four numbers, keyset paging in both directions, bad input, formula-safe CSV,
//! figures against hand-computed values, and who may see what. Orders are seeded straight into
//! the database so their times are exact. Each scenario runs on SQLite, and on PostgreSQL when
//! TEST_DATABASE_URL is set.

mod common;

use std::collections::HashSet;

use chrono::{DateTime, Days, Duration, NaiveDate, TimeZone, Utc};
use common::admin::*;
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp, on_every_backend};
use diesel::prelude::*;
use wechat_checkout::db::Db;
use wechat_checkout::db::schema::{audit_log, exceptions, orders, refunds};
use wechat_checkout::staff::Role;
use wechat_checkout::wxpay::time::{beijing, beijing_date, beijing_day_start};

/// An order as seeded.
#[derive(Clone, Debug)]
struct Seed {
    no: String,
    merchant_id: String,
    amount: i64,
    description: String,
    state: &'static str,
    created: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    transaction_id: Option<String>,
    refunded: i64,
}

impl Seed {
    fn new(no: &str, amount: i64, state: &'static str, created: DateTime<Utc>) -> Seed {
        let paid = state == "PAID";
        Seed {
            no: no.into(),
            merchant_id: format!("M-{no}"),
            amount,
            description: format!("商品 {no}"),
            state,
            created,
            paid_at: paid.then(|| created + Duration::seconds(30)),
            transaction_id: paid.then(|| format!("4200{no}")),
            refunded: 0,
        }
    }
}

fn seed(app: &TestApp, seeds: &[Seed]) {
    let db = Db::connect(&app.db.url(), 2).unwrap();
    let mut conn = db.conn().unwrap();
    conn.transaction::<_, diesel::result::Error, _>(|c| {
        for s in seeds {
            diesel::insert_into(orders::table)
                .values((
                    orders::out_trade_no.eq(&s.no),
                    orders::merchant_order_id.eq(&s.merchant_id),
                    orders::amount_fen.eq(s.amount),
                    orders::description.eq(&s.description),
                    orders::state.eq(s.state),
                    orders::sign_type.eq("MD5"),
                    orders::transaction_id.eq(&s.transaction_id),
                    orders::paid_fen.eq(s.paid_at.map(|_| s.amount)),
                    orders::paid_at.eq(s.paid_at.map(|t| t.naive_utc())),
                    orders::refunded_fen.eq(s.refunded),
                    orders::created_at.eq(s.created.naive_utc()),
                    orders::updated_at.eq(s.created.naive_utc()),
                    orders::expires_at.eq((s.created + Duration::hours(2)).naive_utc()),
                ))
                .execute(c)?;
        }
        Ok(())
    })
    .unwrap();
}

fn add_refund(app: &TestApp, out_refund_no: &str, out_trade_no: &str, amount: i64) {
    let db = Db::connect(&app.db.url(), 2).unwrap();
    let now = Utc::now().naive_utc();
    diesel::insert_into(refunds::table)
        .values((
            refunds::out_refund_no.eq(out_refund_no),
            refunds::out_trade_no.eq(out_trade_no),
            refunds::amount_fen.eq(amount),
            refunds::reason.eq("测试"),
            refunds::state.eq("SUCCESS"),
            refunds::requested_by.eq("admin"),
            refunds::created_at.eq(now),
            refunds::updated_at.eq(now),
        ))
        .execute(&mut *db.conn().unwrap())
        .unwrap();
}

fn bj(date: NaiveDate, h: u32, m: u32, s: u32) -> DateTime<Utc> {
    beijing().from_local_datetime(&date.and_hms_opt(h, m, s).unwrap()).unwrap().with_timezone(&Utc)
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn unescape(s: &str) -> String {
    s.replace("&#38;", "&").replace("&amp;", "&").replace("&#43;", "+")
}

/// The order numbers of the list page, top to bottom.
fn listed(html: &str) -> Vec<String> {
    html.split("<a href=\"/admin/orders/").skip(1).map(|rest| rest.split('"').next().unwrap().to_owned()).collect()
}

/// The href of a link with `rel="…"`, if the page has one.
fn rel_link(html: &str, rel: &str) -> Option<String> {
    let at = html.find(&format!("rel=\"{rel}\""))?;
    let start = html[..at].rfind("href=\"")? + "href=\"".len();
    Some(unescape(html[start..].split('"').next()?))
}

/// Newest first, ties broken by out_trade_no descending: the list's order.
fn expected(seeds: &[Seed], keep: impl Fn(&Seed) -> bool) -> Vec<String> {
    let mut kept: Vec<&Seed> = seeds.iter().filter(|s| keep(s)).collect();
    kept.sort_by(|a, b| (b.created, &b.no).cmp(&(a.created, &a.no)));
    kept.into_iter().map(|s| s.no.clone()).collect()
}

/// Follows "下一页" from `path` to the end, checking page sizes; then walks back with "上一页"
/// from the last page and checks every page comes back the same.
async fn walk(app: &TestApp, client: &reqwest::Client, path: &str) -> Vec<String> {
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut urls = vec![path.to_owned()];
    let mut next = Some(path.to_owned());
    while let Some(url) = next {
        let (status, html) = get(app, client, &url).await;
        assert_eq!(status, 200, "{url}: {html}");
        let rows = listed(&html);
        next = rel_link(&html, "next");
        if next.is_some() {
            assert_eq!(rows.len(), 50, "a full page before the last");
            urls.push(next.clone().unwrap());
        }
        assert_eq!(rel_link(&html, "prev").is_some(), !pages.is_empty(), "上一页 only after the first page");
        pages.push(rows);
    }
    // Back from the last page: each "上一页" shows exactly the page before.
    let (_, mut html) = get(app, client, urls.last().unwrap()).await;
    for i in (0..pages.len() - 1).rev() {
        let prev = rel_link(&html, "prev").expect("a previous page");
        html = get(app, client, &prev).await.1;
        assert_eq!(listed(&html), pages[i], "page {i} going back");
    }
    pages.concat()
}

#[tokio::test]
async fn filters_search_and_keyset_paging() {
    on_every_backend(|app| async move {
        let d = day(2026, 3, 10);
        let states = ["PAID", "PAYING", "CLOSED", "CREATED", "PAYERROR", "PAID"];
        let mut seeds: Vec<Seed> = (0..163)
            .map(|i| {
                // Spread over five Beijing days; every fourth order shares its timestamp with the
                // one before, so the tie-break on out_trade_no is exercised across page edges.
                let base = bj(d, 0, 0, 0) + Duration::minutes(i64::from(i / 4 * 4) * 41);
                Seed::new(&format!("T{i:04}"), 100 + i64::from(i) * 37, states[i as usize % states.len()], base)
            })
            .collect();
        // Exactly on the Beijing day boundaries.
        seeds.push(Seed::new("EDGE-START", 5000, "PAID", bj(day(2026, 3, 11), 0, 0, 0)));
        seeds.push(Seed::new("EDGE-END", 5000, "PAID", bj(day(2026, 3, 11), 23, 59, 59)));
        seeds.push(Seed::new("EDGE-NEXT", 5000, "PAID", bj(day(2026, 3, 12), 0, 0, 0)));
        seeds[7].refunded = 120;
        seed(&app, &seeds);
        let viewer_name = "viewer1";
        create_staff(&app, viewer_name, Role::Viewer);
        let client = sign_in(&app, viewer_name, STAFF_PASSWORD).await;

        // Everything, across pages, each order exactly once, in order.
        let all = walk(&app, &client, "/admin/orders").await;
        assert_eq!(all, expected(&seeds, |_| true));
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), seeds.len());

        // State.
        let paid = walk(&app, &client, "/admin/orders?state=PAID").await;
        assert_eq!(paid, expected(&seeds, |s| s.state == "PAID"));
        // Beijing days, both ends inclusive.
        let (from, until) = (bj(day(2026, 3, 11), 0, 0, 0), bj(day(2026, 3, 12), 0, 0, 0));
        let on_11th = walk(&app, &client, "/admin/orders?from=2026-03-11&to=2026-03-11").await;
        assert_eq!(on_11th, expected(&seeds, |s| s.created >= from && s.created < until));
        assert!(on_11th.contains(&"EDGE-START".to_owned()) && on_11th.contains(&"EDGE-END".to_owned()));
        assert!(!on_11th.contains(&"EDGE-NEXT".to_owned()));
        // Amounts in yuan, inclusive, exact.
        let mid = walk(&app, &client, "/admin/orders?min=10.62&max=%C2%A530").await;
        assert_eq!(mid, expected(&seeds, |s| (1062..=3000).contains(&s.amount)));
        assert!(mid.contains(&"T0026".to_owned()), "¥10.62 itself is included");
        // Filters together, over several pages, kept in every link.
        let until_13th = bj(day(2026, 3, 13), 0, 0, 0);
        let ranged = walk(&app, &client, "/admin/orders?from=2026-03-10&to=2026-03-12&min=1&max=60").await;
        assert_eq!(ranged, expected(&seeds, |s| s.created < until_13th && (100..=6000).contains(&s.amount)));
        assert!(ranged.len() > 100, "{}", ranged.len());
        let path = "/admin/orders?state=PAID&from=2026-03-10&to=2026-03-12&min=1&max=60";
        let combined = walk(&app, &client, path).await;
        assert_eq!(
            combined,
            expected(&seeds, |s| s.state == "PAID" && s.created < until_13th && (100..=6000).contains(&s.amount))
        );
        assert!(!combined.is_empty());

        // One search box, four kinds of number.
        add_refund(&app, "R-0042-1", "T0042", 50);
        for q in ["T0030", "4200T0030", "M-T0030"] {
            let (status, html) = get(&app, &client, &format!("/admin/orders?q={q}")).await;
            assert_eq!((status, listed(&html)), (200, vec!["T0030".to_owned()]), "search {q}");
        }
        let (_, html) = get(&app, &client, "/admin/orders?q=R-0042-1").await;
        assert_eq!(listed(&html), ["T0042"]);
        let (_, html) = get(&app, &client, "/admin/orders?q=%20T0030%20").await;
        assert_eq!(listed(&html), ["T0030"], "surrounding blanks are ignored");
        let (_, html) = get(&app, &client, "/admin/orders?q=T003").await;
        assert!(listed(&html).is_empty() && html.contains("没有符合条件的订单"), "search is exact");
        // A search combines with the other filters.
        let (_, html) = get(&app, &client, "/admin/orders?q=T0030&state=CLOSED").await;
        assert!(listed(&html).is_empty());

        // The row shows what it should.
        let (_, html) = get(&app, &client, "/admin/orders?q=T0007").await;
        let row = &html[html.find("<tbody>").unwrap()..];
        for want in ["2026-03-10 02:44:00", "M-T0007", "商品 T0007", "¥3.59", "¥1.20", "支付中"] {
            assert!(row.contains(want), "{want} in {row}");
        }
        let (_, html) = get(&app, &client, "/admin/orders?q=T0000").await;
        assert!(html.contains("4200T0000") && html.contains("已支付") && html.contains("2026-03-10 00:00:30"));
        app
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_a_clear_message_not_a_crash() {
    let app = TestApp::sqlite().await;
    let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let cases = [
        ("state=REFUNDED", "未知的订单状态"),
        ("from=2026-13-01", "开始日期"),
        ("to=yesterday", "结束日期"),
        ("from=2026-02-02&to=2026-02-01", "开始日期不能晚于结束日期"),
        ("min=abc", "最低金额"),
        ("max=1.234", "最高金额"),
        ("min=-5", "不能为负数"),
        ("min=9&max=1", "最低金额不能高于最高金额"),
        ("min=99999999999999999999", "最低金额"),
        ("after=not-a-cursor", "翻页链接无效"),
        ("after=AAAA&before=AAAA", "翻页链接无效"),
        ("min=%FF%FE", ""),
    ];
    for (query, message) in cases {
        let (status, html) = get(&app, &admin, &format!("/admin/orders?{query}")).await;
        if message.is_empty() {
            // Undecodable bytes: dropped or refused, never a server error.
            assert!(status == 200 || status == 422, "{query}: {status}");
            continue;
        }
        assert_eq!(status, 422, "{query}");
        assert!(html.contains(message), "{query}: {html}");
        assert!(html.contains("筛选条件有误"), "{query}");
        let (status, html) = get(&app, &admin, &format!("/admin/orders.csv?{query}")).await;
        if !query.starts_with("after") {
            assert_eq!(status, 422, "csv {query}");
            assert!(html.contains(message), "csv {query}: {html}");
        }
    }
    // Unknown parameters are ignored; the typed values stay in the form.
    let (status, html) = get(&app, &admin, "/admin/orders?foo=1&min=abc&q=%3Cb%3E").await;
    assert_eq!(status, 422);
    assert!(html.contains("value=\"abc\"") && html.contains("&#60;b&#62;") && !html.contains("<b>"));
    app.stop().await;
}

#[tokio::test]
async fn csv_export_is_streamed_quoted_and_formula_safe() {
    on_every_backend(|app| async move {
        let d = day(2026, 5, 1);
        let mut seeds: Vec<Seed> = (0..2345)
            .map(|i| {
                Seed::new(
                    &format!("E{i:05}"),
                    1990,
                    if i % 3 == 0 { "PAID" } else { "CLOSED" },
                    bj(d, 8, 0, 0) + Duration::seconds(i),
                )
            })
            .collect();
        seeds[0].description = "=HYPERLINK(\"http://evil\")".into();
        seeds[1].description = "茶叶, 200g \"特级\"".into();
        seeds[2].description = "第一行\n第二行".into();
        seeds[3].description = "+86 138".into();
        seeds[4].merchant_id = "-1".into();
        seeds[5].merchant_id = "@cmd".into();
        seeds[0].refunded = 990;
        seed(&app, &seeds);
        let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;

        let res = admin.get(app.url("/admin/orders.csv")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
        let disposition = res.headers()["content-disposition"].to_str().unwrap().to_owned();
        let today = beijing_date(Utc::now()).format("%Y-%m-%d").to_string();
        assert_eq!(disposition, format!("attachment; filename=\"orders-{today}.csv\""));
        let body = res.bytes().await.unwrap();
        assert!(body.starts_with(b"\xEF\xBB\xBF"), "UTF-8 BOM");
        let text = String::from_utf8(body[3..].to_vec()).unwrap();
        let header = text.lines().next().unwrap();
        assert!(header.starts_with("创建时间,商户订单号,业务单号,商品描述,订单金额（元）,状态,"));
        // One CRLF-ended record per order after the header (the description's bare LF is inside
        // quotes), newest first, each order once.
        assert_eq!(text.matches("\r\n").count(), seeds.len() + 1);
        let firsts: Vec<&str> = text.split("\r\n").skip(1).filter_map(|l| l.split(',').nth(1)).collect();
        assert_eq!(firsts.len(), seeds.len());
        assert_eq!(firsts.first(), Some(&"E02344"));
        assert_eq!(firsts.iter().collect::<HashSet<_>>().len(), seeds.len(), "no order twice across batches");

        let record = |no: &str| text.split("\r\n").find(|l| l.contains(&format!(",{no},"))).unwrap().to_owned();
        assert_eq!(
            record("E00000"),
            "2026-05-01 08:00:00,E00000,M-E00000,\"'=HYPERLINK(\"\"http://evil\"\")\",19.90,已支付,PAID,\
             2026-05-01 08:00:30,4200E00000,19.90,9.90"
        );
        assert!(record("E00001").contains(",\"茶叶, 200g \"\"特级\"\"\",19.90,已关闭,CLOSED,,,,0.00"));
        assert!(text.contains(",E00002,M-E00002,\"第一行\n第二行\",19.90,"));
        assert!(record("E00003").contains(",'+86 138,"));
        assert!(record("E00004").contains(",E00004,'-1,"));
        assert!(record("E00005").contains(",E00005,'@cmd,"));

        // The filters apply, and the export is audited with them.
        let res = admin.get(app.url("/admin/orders.csv?state=PAID&q=E00003")).send().await.unwrap();
        let text = res.text().await.unwrap();
        assert_eq!(text.matches("\r\n").count(), 2, "{text}");
        let res = admin.get(app.url("/admin/orders.csv?q=nothing-like-it")).send().await.unwrap();
        assert_eq!(res.text().await.unwrap().matches("\r\n").count(), 1, "an empty export still has its header");
        let db = Db::connect(&app.db.url(), 2).unwrap();
        let details: Vec<(String, String)> = audit_log::table
            .filter(audit_log::action.eq("orders_exported"))
            .order(audit_log::id.asc())
            .select((audit_log::actor, audit_log::detail))
            .load(&mut *db.conn().unwrap())
            .unwrap();
        assert_eq!(details.len(), 3);
        assert_eq!(details[0], ("admin".to_owned(), "{}".to_owned()));
        let filters: serde_json::Value = serde_json::from_str(&details[1].1).unwrap();
        assert_eq!(filters, serde_json::json!({"state": "PAID", "q": "E00003"}));
        app
    })
    .await;
}

/// The dashboard's figures for seeded orders around `today`, as hand-computed in the comments.
async fn dashboard_figures(app: &TestApp, client: &reqwest::Client, today: NaiveDate) -> Option<String> {
    let t = |n: u64| today - Days::new(n);
    let mut paid_late = Seed::new("B", 1000, "PAID", bj(t(1), 23, 50, 0));
    paid_late.paid_at = Some(bj(today, 0, 5, 0));
    let seeds = [
        Seed::new("A", 1990, "PAID", bj(today, 0, 10, 0)), // paid today, created today
        paid_late,                                         // created yesterday, paid today
        Seed::new("C", 250, "PAID", bj(t(1), 10, 0, 0)),   // yesterday
        Seed::new("D", 800, "PAYING", bj(today, 1, 0, 0)),
        Seed::new("E", 900, "CLOSED", bj(today, 2, 0, 0)),
        Seed::new("F", 5001, "PAID", bj(t(3), 12, 0, 0)),
        Seed::new("G", 7, "PAID", bj(t(6), 0, 0, 0)), // first second of the 7-day window
        Seed::new("H", 100_000, "PAID", bj(t(7), 23, 59, 0)), // just outside it; in the chart
        Seed::new("I", 3, "PAID", bj(t(29), 8, 0, 0)), // the chart's first day
        Seed::new("J", 9999, "PAID", bj(t(30), 8, 0, 0)), // before the chart
        Seed::new("K", 600, "PAYING", bj(t(2), 9, 0, 0)),
    ];
    seed(app, &seeds);
    let db = Db::connect(&app.db.url(), 2).unwrap();
    let now = Utc::now().naive_utc();
    for (i, resolved) in [(1, false), (2, false), (3, true)] {
        diesel::insert_into(exceptions::table)
            .values((
                exceptions::kind.eq("amount_mismatch"),
                exceptions::dedupe_key.eq(format!("k{i}")),
                exceptions::detail.eq("{}"),
                exceptions::created_at.eq(now),
                exceptions::resolved_at.eq(resolved.then_some(now)),
            ))
            .execute(&mut *db.conn().unwrap())
            .unwrap();
    }
    let (status, html) = get(app, client, "/admin").await;
    assert_eq!(status, 200);
    if beijing_date(Utc::now()) != today {
        return None; // Midnight passed while we looked; the caller tries again.
    }
    Some(html)
}

fn card<'a>(html: &'a str, title: &str) -> &'a str {
    let at = html.find(&format!("<strong>{title}</strong>")).unwrap_or_else(|| panic!("card {title}"));
    &html[at..at + html[at..].find("</article>").unwrap()]
}

#[tokio::test]
async fn dashboard_matches_hand_computed_figures() {
    on_every_backend(|app| async move {
        create_staff(&app, "viewer2", Role::Viewer);
        let client = sign_in(&app, "viewer2", STAFF_PASSWORD).await;
        let mut today = beijing_date(Utc::now());
        let html = match dashboard_figures(&app, &client, today).await {
            Some(html) => html,
            None => {
                // Seeded for a day that just ended: start over with a clean slate of orders.
                let db = Db::connect(&app.db.url(), 2).unwrap();
                diesel::delete(orders::table).execute(&mut *db.conn().unwrap()).unwrap();
                diesel::delete(exceptions::table).execute(&mut *db.conn().unwrap()).unwrap();
                today = beijing_date(Utc::now());
                dashboard_figures(&app, &client, today).await.expect("no second midnight")
            }
        };
        // Today: A and B paid (¥19.90 + ¥10.00); created today A, D, E, of which A is paid.
        let c = card(&html, "今天");
        assert!(c.contains("¥29.90") && c.contains("<dd>2</dd>") && c.contains("33.3%"), "{c}");
        // Yesterday: C paid; created B and C, both paid.
        let c = card(&html, "昨天");
        assert!(c.contains("¥2.50") && c.contains("<dd>1</dd>") && c.contains("100.0%"), "{c}");
        // Seven days: A B C F G = ¥82.48; created A B C D E F G K (8), paid 5.
        let c = card(&html, "近 7 天");
        assert!(c.contains("¥82.48") && c.contains("<dd>5</dd>") && c.contains("62.5%"), "{c}");
        let c = card(&html, "需要关注");
        assert!(c.contains("state=PAYING\">2</a>") && c.contains("exceptions\">2</a>"), "{c}");
        // The 30-day table and chart: H and I inside, J outside; total ¥1,082.51 in 7 payments.
        let row = |d: NaiveDate, n: i64, amount: &str| {
            format!(
                "<tr><td>{}</td><td class=\"num\">{n}</td><td class=\"num\">{amount}</td></tr>",
                d.format("%Y-%m-%d")
            )
        };
        let t = |n: u64| today - Days::new(n);
        assert!(html.contains(&row(today, 2, "¥29.90")), "{html}");
        assert!(html.contains(&row(t(7), 1, "¥1,000.00")));
        assert!(html.contains(&row(t(29), 1, "¥0.03")));
        assert!(html.contains(&row(t(2), 0, "¥0.00")));
        assert!(!html.contains(&t(30).format("%Y-%m-%d").to_string()));
        assert!(html.contains("<td class=\"num\">7</td><td class=\"num\">¥1,082.51</td>"));
        assert!(html.contains("<svg class=\"chart\""));
        assert_eq!(html.matches("<rect class=\"bar\"").count(), 30);
        assert!(html.contains(&format!("<title>{} 收款 ¥1,000.00 · 1 笔</title>", t(7).format("%Y-%m-%d"))));

        // No orders at all in a period shows a dash, not 0% or a division by zero.
        let db = Db::connect(&app.db.url(), 2).unwrap();
        diesel::delete(orders::table).execute(&mut *db.conn().unwrap()).unwrap();
        let (_, html) = get(&app, &client, "/admin").await;
        assert!(card(&html, "今天").contains("—"));
        app
    })
    .await;
}

#[tokio::test]
async fn viewers_see_the_pages_and_strangers_are_sent_to_sign_in() {
    let app = TestApp::sqlite().await;
    let start = beijing_day_start(beijing_date(Utc::now()));
    seed(&app, &[Seed::new("V1", 100, "PAID", start)]);
    create_staff(&app, "viewer3", Role::Viewer);
    let viewer = sign_in(&app, "viewer3", STAFF_PASSWORD).await;
    let anonymous = browser();
    for (path, next, shows) in [
        ("/admin", "%2Fadmin", "¥1.00"),
        ("/admin/orders?state=PAID", "%2Fadmin%2Forders", "V1"),
        ("/admin/orders.csv", "%2Fadmin%2Forders.csv", "V1"),
    ] {
        let (status, body) = get(&app, &viewer, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains(shows), "{path}: {body}");
        let res = anonymous.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 303, "{path}");
        assert_eq!(res.headers()["location"], format!("/admin/login?next={next}"));
    }
    let (_, html) = get(&app, &viewer, "/admin/orders").await;
    assert!(html.contains("aria-current=\"page\">订单"));
    app.stop().await;
}
