//! `POST /wechat/v3/notify` and `POST /wechat/v3/refund-notify`: WeChat Pay API v3 notifies.
//! Answered with JSON and the HTTP status WeChat reads: 200 once recorded, 4xx for a refused
//! delivery, 5xx when it could not be recorded (WeChat delivers again), whatever arrives.

use rocket::data::{Data, ToByteUnit};
use rocket::http::{ContentType, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{State, post, routes};

use crate::domain::NotifyKind;
use crate::payments::Payments;
use crate::payments::notify_v3::{Delivery, NotifyAnswer};
use crate::web::client::ClientIp;
use crate::wxpay::v3::notify::fail_answer;
use crate::wxpay::v3::verify::{SignatureError, SignedHeaders};

/// Notifies are small (about 1 KiB); more is refused unread.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn routes() -> Vec<rocket::Route> {
    routes![post_notify, post_refund_notify]
}

/// The `Wechatpay-*` headers, or which one is missing (the delivery is then refused and logged).
pub struct NotifyHeaders(Result<SignedHeaders, SignatureError>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for NotifyHeaders {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(NotifyHeaders(SignedHeaders::read(|name| req.headers().get_one(name))))
    }
}

#[post("/wechat/v3/notify", data = "<body>")]
async fn post_notify(
    headers: NotifyHeaders,
    body: Data<'_>,
    ip: ClientIp,
    payments: &State<Payments>,
) -> (Status, (ContentType, String)) {
    handle(NotifyKind::Payment, headers, body, ip, payments).await
}

#[post("/wechat/v3/refund-notify", data = "<body>")]
async fn post_refund_notify(
    headers: NotifyHeaders,
    body: Data<'_>,
    ip: ClientIp,
    payments: &State<Payments>,
) -> (Status, (ContentType, String)) {
    handle(NotifyKind::Refund, headers, body, ip, payments).await
}

async fn handle(
    kind: NotifyKind,
    NotifyHeaders(headers): NotifyHeaders,
    body: Data<'_>,
    ip: ClientIp,
    payments: &Payments,
) -> (Status, (ContentType, String)) {
    let remote = Some(ip.0.to_string());
    let answer = match body.open(MAX_BODY_BYTES.bytes()).into_bytes().await {
        Ok(bytes) if bytes.is_complete() => {
            let bytes = bytes.into_inner();
            let delivery = Delivery { headers, body: &bytes, at: chrono::Utc::now().timestamp(), remote_addr: remote };
            match kind {
                NotifyKind::Payment => payments.handle_payment_notify_v3(delivery).await,
                NotifyKind::Refund => payments.handle_refund_notify_v3(delivery).await,
            }
        }
        Ok(partial) => payments.refuse_oversized_v3(kind, &partial.into_inner(), remote).await,
        Err(e) => {
            tracing::warn!(error = %e, "could not read a v3 notify body");
            NotifyAnswer { status: 400, body: fail_answer("读取请求失败") }
        }
    };
    (Status::new(answer.status), (ContentType::JSON, answer.body))
}
