//! Driving the admin console in tests: staff accounts, signing in, and the CSRF token of a page.
//! Also refunds through an order page's form, as staff would ask for them.

use wechat_checkout::staff::{Role, accounts};

use super::app::TestApp;

pub const STAFF_PASSWORD: &str = "staff-password-123";

/// A browser-like client (own cookie jar, no automatic redirects).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Creates a staff account with [`STAFF_PASSWORD`].
pub fn create_staff(app: &TestApp, username: &str, role: Role) {
    accounts::create_blocking(&app.db_handle(), username, STAFF_PASSWORD, role, false).unwrap();
}

/// The value of the first `name="csrf"` hidden field in a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("the page has a CSRF field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// Signs in and returns the client holding the session; panics unless sign-in succeeds.
pub async fn sign_in(app: &TestApp, username: &str, password: &str) -> reqwest::Client {
    let client = browser();
    let res = try_sign_in(app, &client, username, password).await;
    assert_eq!(res.status(), 303, "sign-in of {username} failed: {}", res.text().await.unwrap_or_default());
    client
}

pub async fn try_sign_in(app: &TestApp, client: &reqwest::Client, username: &str, password: &str) -> reqwest::Response {
    let page = client.get(app.url("/admin/login")).send().await.unwrap().text().await.unwrap();
    client
        .post(app.url("/admin/login"))
        .form(&[("username", username), ("password", password), ("csrf", &csrf_of(&page)), ("next", "/admin")])
        .send()
        .await
        .unwrap()
}

/// GETs an admin page and returns (status, body).
pub async fn get(app: &TestApp, client: &reqwest::Client, path: &str) -> (u16, String) {
    let res = client.get(app.url(path)).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// POSTs a form to an admin route with the CSRF token taken from `page_path`.
pub async fn post_form(
    app: &TestApp,
    client: &reqwest::Client,
    page_path: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let (_, page) = get(app, client, page_path).await;
    let csrf = csrf_of(&page);
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("csrf", &csrf));
    client.post(app.url(action)).form(&form).send().await.unwrap()
}

/// The refund form of an order page: its CSRF token and stable out_refund_no.
pub async fn refund_form(app: &TestApp, client: &reqwest::Client, no: &str) -> (String, String) {
    let (_, html) = get(app, client, &format!("/admin/orders/{no}")).await;
    let marker = "name=\"out_refund_no\" value=\"";
    let at = html.find(marker).expect("the page has a refund form") + marker.len();
    (csrf_of(&html), html[at..].split('"').next().unwrap().to_owned())
}

/// Submits a refund form (from [`refund_form`]) for `amount` yuan, confirmed.
pub async fn submit_refund(
    app: &TestApp,
    client: &reqwest::Client,
    no: &str,
    form: &(String, String),
    amount: &str,
) -> reqwest::Response {
    let fields = [
        ("csrf", form.0.as_str()),
        ("out_refund_no", form.1.as_str()),
        ("amount", amount),
        ("reason", "顾客申请退货"),
        ("confirm", "yes"),
    ];
    client.post(app.url(&format!("/admin/orders/{no}/refund"))).form(&fields).send().await.unwrap()
}

/// Requests a refund of `yuan` through the order page, as an admin would; returns its
/// out_refund_no.
pub async fn console_refund(app: &TestApp, client: &reqwest::Client, no: &str, yuan: &str) -> String {
    let form = refund_form(app, client, no).await;
    assert_eq!(submit_refund(app, client, no, &form, yuan).await.status(), 303);
    form.1
}
