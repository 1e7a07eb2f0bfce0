//! The two-instance deployment of deploy/README.md, run for real: nginx (the Debian package) with
//! `deploy/nginx.conf` itself (only its ports, certificate and one test-only header swapped in)
//! terminating TLS in front of two app processes on one PostgreSQL database, sharing
//! ROCKET_SECRET_KEY, with TRUSTED_PROXY=127.0.0.1.
//!
//! Through the balancer, with both instances up: a shopper creates an order (merchant API), opens
//! the checkout, passes WeChat OAuth and gets the JSAPI parameters, while staff sign in, list the
//! orders and open one; nginx alternates the requests between the instances, so each cookie one
//! instance sealed (OAuth nonce, openid, CSRF, session) is opened by the other. Then the instance
//! that made the prepay and the staff session is stopped, and on the other one the shopper pays,
//! WeChat's notify arrives over https, the status page says paid, and the staff, still signed in,
//! re-query the order (a CSRF-checked action). The client connects from 127.0.0.2 and sends a
//! forged X-Real-IP: the app must have recorded 127.0.0.2, which only nginx's X-Real-IP, believed
//! from the trusted proxy, can have told it.
//!
//! Needs nginx and TEST_DATABASE_URL; without either it says why and passes, unless
//! REQUIRE_NGINX=1 (as in .ci/run).

mod common;

use std::net::IpAddr;

use common::admin::csrf_of;
use common::app::{ADMIN_PASSWORD, ADMIN_USER, API_TOKEN, TestDb, free_port, prepay_id};
use common::nginx::{self, Nginx, Ports, UPSTREAM_HEADER};
use common::process::Instance;
use common::{demo_merchant, fast_config, notify_fields, start_simulator};
use diesel::prelude::*;
use serde_json::{Value, json};
use wechat_checkout::db::{Db, schema};
use wechat_checkout::simulator::{Faults, Outcome, SimulatorConfig};
use wechat_checkout::wxpay::SignType;

/// The shopper's and the staff's address: any 127.x.y.z is loopback on Linux, and one other than
/// nginx's own (127.0.0.1) shows whose address the app recorded.
const CLIENT: [u8; 4] = [127, 0, 0, 2];
/// What a client claims to be; nginx must replace it with the address it sees.
const FORGED_IP: &str = "203.0.113.7";
const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323b) NetType/WIFI Language/zh_CN";

/// Everything the test started, stopped in order even when an assertion fails: nginx first (no
/// new requests), then the apps, then the database is dropped.
struct Rig {
    nginx: Option<Nginx>,
    apps: Vec<Instance>,
    db: Option<TestDb>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(nginx) = &self.nginx {
                eprintln!("{}", nginx.logs());
            }
            for app in &self.apps {
                eprintln!("--- {} ---\n{}", app.name, app.log_text());
            }
        }
        self.nginx.take();
        self.apps.clear();
        if let Some(db) = self.db.take() {
            db.cleanup();
        }
    }
}

/// Which instance answered each request through nginx, in order.
#[derive(Default)]
struct Trail(Vec<(String, String)>);

impl Trail {
    /// Notes the instance that answered `res` (nginx's `$upstream_addr`: `127.0.0.1:port`, or
    /// several addresses when it moved on); panics when nginx answered by itself.
    fn note(&mut self, what: &str, res: &reqwest::Response) -> String {
        let upstream = res
            .headers()
            .get(UPSTREAM_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("{what}: answered by nginx itself ({}), not by an instance", res.status()))
            .to_owned();
        self.0.push((what.to_owned(), upstream.clone()));
        upstream
    }
}

/// The instance that finally answered: the last address of `$upstream_addr`.
fn last_hop(upstream: &str) -> &str {
    upstream.rsplit(", ").next().unwrap_or(upstream)
}

fn skip(why: &str) {
    assert!(std::env::var("REQUIRE_NGINX").as_deref() != Ok("1"), "REQUIRE_NGINX=1, but {why}");
    eprintln!("{why}: the nginx two-instance test is skipped (REQUIRE_NGINX=1 makes this a failure)");
}

/// A browser connecting from [`CLIENT`], trusting the test's CA as a phone trusts a public one,
/// with its own cookie jar and no automatic redirects.
fn browser(ca_pem: &str, user_agent: &str) -> reqwest::Client {
    let mut forged = reqwest::header::HeaderMap::new();
    forged.insert("X-Real-IP", FORGED_IP.parse().unwrap());
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .local_address(IpAddr::from(CLIENT))
        .default_headers(forged)
        .user_agent(user_agent)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn port_of(instance: &Instance) -> u16 {
    instance.base_url.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_balances_two_instances_and_fails_over() {
    let Some(nginx_bin) = nginx::binary() else {
        return skip("no nginx binary (apt-get install nginx)");
    };
    if std::env::var_os("TEST_DATABASE_URL").is_none() {
        return skip("TEST_DATABASE_URL is not set (two instances need one PostgreSQL database)");
    }
    // Before the rig, so that they are removed after it (locals drop in reverse order): the rig
    // prints the logs in them when the test fails.
    let dir = tempfile::tempdir().unwrap();
    let nginx_dir = tempfile::tempdir().unwrap();
    let mut rig = Rig { nginx: None, apps: Vec::new(), db: TestDb::postgres() };
    let db_url = rig.db.as_ref().unwrap().url();

    // WeChat: a simulator of the test's own. Its notify client trusts only public CAs, so it
    // drops every notify and the test delivers the notify WeChat would send, over https through
    // nginx. (The simulator mounted in the app cannot serve here: each instance would have its
    // own, and a prepay made by one would be unknown to the other.)
    let sim = start_simulator(SimulatorConfig {
        faults: Faults { drop_notify_rate: 1.0, ..Faults::default() },
        ..fast_config()
    })
    .await;

    let (http_port, https_port) = (free_port(), free_port());
    let origin = format!("https://127.0.0.1:{https_port}");
    // Each instance as deploy/README.md configures it: PUBLIC_BASE_URL is the balancer's https
    // origin, nginx is the trusted proxy, and (from Instance::spawn) one DATABASE_URL and one
    // ROCKET_SECRET_KEY for both. Jobs off: the notify, not a poller, must settle the order.
    let extra = [
        ("PUBLIC_BASE_URL", origin.clone()),
        ("TRUSTED_PROXY", "127.0.0.1".to_owned()),
        ("CLIENT_IP_HEADER", "X-Real-IP".to_owned()),
        ("JOBS", "off".to_owned()),
    ];
    for name in ["app-1", "app-2"] {
        let app = Instance::spawn_launched(name, &db_url, &sim.api_base(), &sim.api_base(), &extra, dir.path()).await;
        rig.apps.push(app);
    }
    let addr = |i: usize| format!("127.0.0.1:{}", port_of(&rig.apps[i]));
    let (addr_1, addr_2) = (addr(0), addr(1));

    let (ca_pem, cert_pem, key_pem) = nginx::certificates();
    let ports = Ports { http: http_port, https: https_port, apps: [port_of(&rig.apps[0]), port_of(&rig.apps[1])] };
    rig.nginx = Some(Nginx::start(&nginx_bin, nginx_dir.path(), &ports, &cert_pem, &key_pem));
    let api = browser(&ca_pem, "merchant-backend/1.0");
    rig.nginx.as_mut().unwrap().wait_until_serving(&api, "/livez").await;
    let http_origin = rig.nginx.as_ref().unwrap().http_origin.clone();

    // The edge of the documented file: plain http only redirects, to the configured name (never
    // to a Host header's); /metrics is not served to the outside.
    let res = api.get(format!("{http_origin}/pay/WC1")).send().await.unwrap();
    assert_eq!(res.status(), 301);
    assert_eq!(res.headers()["location"], "https://pay.example.com/pay/WC1");
    let res = api.get(format!("{origin}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 403, "/metrics through nginx");
    assert!(res.headers().get(UPSTREAM_HEADER).is_none_or(|v| v.is_empty()), "/metrics never reaches an instance");

    let mut trail = Trail::default();
    let shopper = browser(&ca_pem, WECHAT_UA);
    let staff = browser(&ca_pem, "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0");

    // ---- Both instances up -------------------------------------------------------------------

    let res = api
        .post(format!("{origin}/api/v1/orders"))
        .bearer_auth(API_TOKEN)
        .header("X-Request-Id", "nginx-test-0001")
        .json(&json!({ "amount_fen": 1, "description": "双实例-负载均衡", "merchant_order_id": "NGINX-1" }))
        .send()
        .await
        .unwrap();
    let created_by = trail.note("create order", &res);
    assert_eq!(res.status(), 201);
    // The caller's request id went through nginx to the app, which returns it and logs with it.
    assert_eq!(res.headers()["x-request-id"], "nginx-test-0001");
    let created: Value = res.json().await.unwrap();
    let no = created["out_trade_no"].as_str().unwrap().to_owned();
    assert_eq!(created["checkout_url"], format!("{origin}/pay/{no}"), "links carry PUBLIC_BASE_URL");
    let creator = rig.apps.iter().find(|a| format!("127.0.0.1:{}", port_of(a)) == created_by).unwrap();
    assert!(creator.log_text().contains("nginx-test-0001"), "{} logged the request id", creator.name);
    // An id that is no sane token is replaced by nginx's own (32 hex digits; the app would make
    // a 16-character one), so nothing strange reaches the logs.
    let res = api.get(format!("{origin}/livez")).header("X-Request-Id", "no id; at all").send().await.unwrap();
    trail.note("livez with a strange request id", &res);
    let replaced = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(replaced.len() == 32 && replaced.bytes().all(|b| b.is_ascii_hexdigit()), "nginx's id, not {replaced:?}");

    // The checkout, WeChat OAuth (at the simulator) and back through nginx: the OAuth nonce
    // cookie is sealed by one instance and opened by the other.
    let mut url = format!("{origin}/pay/{no}");
    let mut hops = 0;
    loop {
        let res = shopper.get(&url).send().await.unwrap();
        if url.starts_with(&origin) {
            let path = url.trim_start_matches(&origin).split('?').next().unwrap_or_default();
            trail.note(&format!("checkout GET {path}"), &res);
        }
        if !res.status().is_redirection() {
            assert_eq!(res.status(), 200, "checkout page of {no}: {}", res.text().await.unwrap_or_default());
            break;
        }
        let next = res.headers()["location"].to_str().unwrap().split('#').next().unwrap().to_owned();
        url = if next.starts_with("http") { next } else { format!("{origin}{next}") };
        hops += 1;
        assert!(hops <= 6, "too many redirects, at {url}");
    }
    assert!(hops >= 3, "the checkout went through OAuth (to WeChat and back)");

    let res = shopper.post(format!("{origin}/pay/{no}/jsapi")).header("Origin", &origin).send().await.unwrap();
    let jsapi_by = trail.note("jsapi", &res);
    assert_eq!(res.status(), 200, "jsapi of {no}");
    let prepay = prepay_id(&res.json::<Value>().await.unwrap());

    // Staff sign in and look around.
    let res = staff.get(format!("{origin}/admin/login")).send().await.unwrap();
    trail.note("admin login page", &res);
    let csrf = csrf_of(&res.text().await.unwrap());
    let res = staff
        .post(format!("{origin}/admin/login"))
        .header("Origin", &origin)
        .form(&[("username", ADMIN_USER), ("password", ADMIN_PASSWORD), ("csrf", csrf.as_str()), ("next", "/admin")])
        .send()
        .await
        .unwrap();
    let session_by = trail.note("admin sign-in", &res);
    assert_eq!(res.status(), 303, "sign-in: {}", res.text().await.unwrap_or_default());
    let res = staff.get(format!("{origin}/admin/orders")).send().await.unwrap();
    trail.note("admin order list", &res);
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains(&no), "the order list shows {no}");
    let res = staff.get(format!("{origin}/admin/orders/{no}")).send().await.unwrap();
    trail.note("admin order page", &res);
    assert_eq!(res.status(), 200);

    // Round robin: consecutive requests went to alternate instances, whatever the client.
    let both_up = std::mem::take(&mut trail.0);
    eprintln!("with both instances up: {both_up:#?}");
    for pair in both_up.windows(2) {
        assert!(pair[0].1 == addr_1 || pair[0].1 == addr_2, "{:?} answered by one instance", pair[0]);
        assert_ne!(pair[0].1, pair[1].1, "{:?} then {:?}: nginx alternates the instances", pair[0], pair[1]);
    }
    assert_eq!(session_by, jsapi_by, "the staff session and the prepay come from the instance stopped next");

    // ---- The instance that made the prepay and the staff session stops ---------------------

    let victim = rig.apps.iter().position(|a| format!("127.0.0.1:{}", port_of(a)) == jsapi_by).unwrap();
    rig.apps.remove(victim).stop();
    let survivor = if jsapi_by == addr_1 { addr_2.clone() } else { addr_1.clone() };

    // The shopper pays; WeChat notifies over https, through nginx, to the instance left.
    sim.sim.pay(&prepay, Outcome::Ok).await.unwrap();
    let paid = sim.sim.order(&no).expect("the simulator knows the order");
    let mut fields = notify_fields(&no, 1, paid.transaction_id.as_deref().unwrap());
    fields.insert("openid", paid.openid.clone().unwrap());
    fields.insert("time_end", wechat_checkout::wxpay::time::format_compact(paid.time_end.unwrap()));
    fields.insert("sign", demo_merchant(SignType::Md5).sign(&fields));
    let res = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
        .post(format!("{origin}/wechat/notify"))
        .header("Content-Type", "text/xml")
        .body(fields.to_xml())
        .send()
        .await
        .unwrap();
    trail.note("payment notify", &res);
    assert_eq!(res.status(), 200);
    let reply = res.text().await.unwrap();
    assert!(reply.contains("<return_code><![CDATA[SUCCESS]]></return_code>"), "notify answered {reply}");

    let res = shopper.get(format!("{origin}/pay/{no}/status")).send().await.unwrap();
    trail.note("status", &res);
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "PAID");
    let res = shopper.get(format!("{origin}/pay/{no}")).send().await.unwrap();
    trail.note("checkout page, paid", &res);
    assert_eq!(res.status(), 200);

    // The staff session made by the stopped instance still holds; a CSRF-checked action works.
    let res = staff.get(format!("{origin}/admin/orders/{no}")).send().await.unwrap();
    trail.note("admin order page, paid", &res);
    assert_eq!(res.status(), 200, "the session survives its instance");
    let csrf = csrf_of(&res.text().await.unwrap());
    let res = staff
        .post(format!("{origin}/admin/orders/{no}/requery"))
        .header("Origin", &origin)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    trail.note("admin re-query", &res);
    assert_eq!(res.status(), 303, "re-query: {}", res.text().await.unwrap_or_default());
    assert_eq!(res.headers()["location"], format!("/admin/orders/{no}"));
    let res = staff.get(format!("{origin}/admin/orders/{no}")).send().await.unwrap();
    trail.note("admin order page after re-query", &res);
    assert_eq!(res.status(), 200);

    let res = api.get(format!("{origin}/api/v1/orders/{no}")).bearer_auth(API_TOKEN).send().await.unwrap();
    trail.note("API order", &res);
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "PAID");

    // Every request after the stop was answered by the survivor; nginx found the stopped one
    // refusing connections and moved on (passive failover) instead of failing a request.
    let one_up = std::mem::take(&mut trail.0);
    eprintln!("after {jsapi_by} stopped: {one_up:#?}");
    for (what, upstream) in &one_up {
        assert_eq!(last_hop(upstream), survivor, "{what} answered by {upstream}");
    }
    assert!(
        one_up.iter().any(|(_, upstream)| *upstream == format!("{jsapi_by}, {survivor}")),
        "nginx tried the stopped instance at least once and passed the request on"
    );

    // The client's address as the app recorded it: nginx's X-Real-IP (the connection's peer,
    // 127.0.0.2), believed because nginx is TRUSTED_PROXY; never the forged header, never nginx.
    let db = Db::connect(&db_url, 1).unwrap();
    let mut conn = db.conn().unwrap();
    let audited: Vec<(String, Option<String>)> = schema::audit_log::table
        .filter(schema::audit_log::out_trade_no.eq(&no))
        .select((schema::audit_log::action, schema::audit_log::remote_addr))
        .load(&mut conn)
        .unwrap();
    assert!(!audited.is_empty(), "the re-query was audited");
    assert!(audited.iter().all(|(_, ip)| ip.as_deref() == Some("127.0.0.2")), "audit log addresses: {audited:?}");
    let attempts: Vec<String> =
        schema::login_attempts::table.select(schema::login_attempts::ip).load(&mut conn).unwrap();
    assert_eq!(attempts, ["127.0.0.2"], "sign-in attempts by address");
    drop(conn);

    // The survivor stops cleanly too; the rig drops nginx and the database.
    rig.nginx.take();
    rig.apps.pop().unwrap().stop();
    sim.shutdown().await;
    drop(rig);
}
