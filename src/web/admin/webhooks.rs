//! Placeholder until this page is written.

pub fn routes() -> Vec<rocket::Route> {
    Vec::new()
}
