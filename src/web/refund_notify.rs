//! `POST /wechat/refund-notify`: WeChat's refund notify. Always HTTP 200 with WeChat's XML,
//! never HTML, whatever arrives.

use rocket::data::{Data, ToByteUnit};
use rocket::http::ContentType;
use rocket::{State, post, routes};

use crate::payments::Payments;
use crate::web::client::ClientIp;
use crate::wxpay::notify::fail_reply;

/// A refund notify is a few hundred bytes of XML around one encrypted field.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn routes() -> Vec<rocket::Route> {
    routes![post_refund_notify]
}

#[post("/wechat/refund-notify", data = "<body>")]
async fn post_refund_notify(body: Data<'_>, ip: ClientIp, payments: &State<Payments>) -> (ContentType, String) {
    let remote = Some(ip.0.to_string());
    let reply = match body.open(MAX_BODY_BYTES.bytes()).into_bytes().await {
        Ok(bytes) if bytes.is_complete() => payments.handle_refund_notify(&bytes.into_inner(), remote).await,
        // Oversized: refused without parsing, logged with the start of the body.
        Ok(partial) => payments.refuse_oversized_refund_notify(&partial.into_inner(), remote).await,
        Err(e) => {
            tracing::warn!(error = %e, "could not read refund notify body");
            fail_reply("读取请求失败")
        }
    };
    (ContentType::XML, reply)
}
