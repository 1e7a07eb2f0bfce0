//! Walks every mounted `/admin` route (whatever routes exist when it runs, so pages added later
//! are covered without touching this file): with no session, a GET redirects to the sign-in page
//! and a POST is refused; with an admin's session, a POST without the CSRF token, or with it from
//! a foreign origin, is refused. None of those requests changes anything in the database.

mod common;

use common::admin::*;
use common::app::{ADMIN_PASSWORD, ADMIN_USER, TestApp};
use common::route_walk::*;
use rocket::http::Method;

#[tokio::test]
async fn every_admin_route_needs_a_session_and_every_post_a_csrf_token_from_our_origin() {
    let app = TestApp::sqlite().await;
    let seed = seed(&app).await;
    let routes = admin_routes(&app);
    assert!(routes.iter().any(|(m, p)| *m == Method::Get && p == "/admin/users"), "{routes:?}");
    assert!(routes.iter().any(|(m, _)| *m == Method::Post), "{routes:?}");
    let form = plausible_form(ADMIN_PASSWORD);
    let mut failures = Vec::new();

    // No session at all.
    let anonymous = browser();
    for (method, pattern) in &routes {
        let path = fill(pattern, &seed);
        let before = snapshot(&app).await;
        let res = match *method {
            Method::Get => anonymous.get(app.url(&path)).send().await.unwrap(),
            Method::Post => anonymous.post(app.url(&path)).form(&form).send().await.unwrap(),
            _ => continue,
        };
        let status = res.status().as_u16();
        let location = res.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        let ok = match *method {
            Method::Get => {
                let next: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
                status == 303 && location == format!("/admin/login?next={next}")
            }
            _ => (status == 303 && location.starts_with("/admin/login")) || status == 401 || status == 403,
        };
        if !ok {
            failures.push(format!("no session: {method} {path} → {status} {location}"));
        }
        if snapshot(&app).await != before {
            failures.push(format!("no session: {method} {path} changed the database"));
        }
    }

    // An admin's session, but no CSRF token, or the right token from a foreign site.
    let admin = sign_in(&app, ADMIN_USER, ADMIN_PASSWORD).await;
    let csrf = csrf_of(&get(&app, &admin, "/admin/account/password").await.1);
    let with_token: Vec<(String, String)> =
        form.iter().cloned().chain(std::iter::once(("csrf".to_owned(), csrf.clone()))).collect();
    for (_, pattern) in routes.iter().filter(|(m, _)| *m == Method::Post) {
        let path = fill(pattern, &seed);
        let attempts = [
            ("no token", admin.post(app.url(&path)).form(&form)),
            ("wrong token", {
                let mut wrong = form.clone();
                wrong.push(("csrf".into(), "A".repeat(csrf.len())));
                admin.post(app.url(&path)).form(&wrong)
            }),
            ("foreign Origin", admin.post(app.url(&path)).header("Origin", "https://evil.example").form(&with_token)),
            ("cross-site fetch", admin.post(app.url(&path)).header("Sec-Fetch-Site", "cross-site").form(&with_token)),
        ];
        for (what, request) in attempts {
            let before = snapshot(&app).await;
            let status = request.send().await.unwrap().status().as_u16();
            if status != 403 {
                failures.push(format!("admin, {what}: POST {path} → {status}"));
            }
            if snapshot(&app).await != before {
                failures.push(format!("admin, {what}: POST {path} changed the database"));
            }
        }
    }
    // The session survived all of that (logout without a token was refused too).
    assert_eq!(get(&app, &admin, "/admin/account/password").await.0, 200);
    assert!(failures.is_empty(), "{} request(s) not refused:\n{}", failures.len(), failures.join("\n"));
    eprintln!("walked {} admin routes", routes.len());
    app.stop().await;
}
