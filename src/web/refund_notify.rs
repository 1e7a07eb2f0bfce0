//! Placeholder until written: POST /wechat/refund-notify.

pub fn routes() -> Vec<rocket::Route> {
    Vec::new()
}
