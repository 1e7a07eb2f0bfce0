//! `POST /wechat/notify`: WeChat's payment notify. Always answers HTTP 200 with WeChat's XML,
//! never HTML, whatever arrives.

use rocket::data::{Data, ToByteUnit};
use rocket::http::ContentType;
use rocket::{State, post, routes};

use crate::payments::Payments;
use crate::web::client::ClientIp;
use crate::wxpay::notify::fail_reply;
use crate::wxpay::xml::DEFAULT_MAX_BYTES;

pub fn routes() -> Vec<rocket::Route> {
    routes![post_notify]
}

#[post("/wechat/notify", data = "<body>")]
async fn post_notify(body: Data<'_>, ip: ClientIp, payments: &State<Payments>) -> (ContentType, String) {
    let remote = Some(ip.0.to_string());
    let reply = match body.open(DEFAULT_MAX_BYTES.bytes()).into_bytes().await {
        Ok(bytes) if bytes.is_complete() => payments.handle_payment_notify(&bytes.into_inner(), remote).await,
        // Oversized bodies still reach the parser (which refuses them by size) so they are logged.
        Ok(partial) => {
            let mut bytes = partial.into_inner();
            bytes.extend_from_slice(b"...");
            bytes.resize(DEFAULT_MAX_BYTES + 1, b' ');
            payments.handle_payment_notify(&bytes, remote).await
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read notify body");
            fail_reply("读取请求失败")
        }
    };
    (ContentType::XML, reply)
}
