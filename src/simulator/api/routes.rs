//! Rocket routes of the WeChat Pay API: body reading, the client-certificate gate of the refund
//! API, injected delays and corruption, and the XML / bill / nginx-error responses.
//!
//! The certificate check needs TLS with a client CA (`TlsOptions::client_ca_pem_path`). Over
//! plain HTTP, or TLS without a client CA, refunds are served without any certificate, because
//! there is nothing to check it against.

use std::io::Cursor;

use rocket::data::{Data, ToByteUnit};
use rocket::futures::stream;
use rocket::http::{ContentType, Status};
use rocket::mtls::Certificate;
use rocket::request::Request;
use rocket::response::stream::ByteStream;
use rocket::response::{self, Responder, Response};
use rocket::{Config, Route, State, get, post, routes};
use tokio::sync::mpsc;

use super::bill::stream_bill;
use super::{ApiOutcome, ApiPath, ClientCert, dispatch};
use crate::simulator::faults::garble;
use crate::simulator::server::Mounted;

/// nginx's answer when a `/secapi` call presents no client certificate.
const NO_CERT_PAGE: &str = "<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>No required SSL certificate was sent</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

pub(crate) enum ApiResponse {
    Xml(String),
    Bill { gzip: bool, rx: mpsc::Receiver<Vec<u8>> },
    NoCertificate,
}

impl<'r> Responder<'r, 'r> for ApiResponse {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'r> {
        match self {
            ApiResponse::Xml(body) => Response::build()
                .header(ContentType::new("text", "xml").with_params(("charset", "utf-8")))
                .sized_body(body.len(), Cursor::new(body))
                .ok(),
            ApiResponse::NoCertificate => Response::build()
                .status(Status::BadRequest)
                .header(ContentType::HTML)
                .sized_body(NO_CERT_PAGE.len(), Cursor::new(NO_CERT_PAGE))
                .ok(),
            ApiResponse::Bill { gzip, rx } => {
                let chunks = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
                let content_type = if gzip {
                    ContentType::new("application", "x-gzip")
                } else {
                    ContentType::new("text", "plain").with_params(("charset", "utf-8"))
                };
                let mut response = ByteStream(chunks).respond_to(req)?;
                response.set_header(content_type);
                Ok(response)
            }
        }
    }
}

async fn call(sim: &Mounted, path: ApiPath, data: Data<'_>, cert: ClientCert) -> ApiResponse {
    // One byte over the XML reader's limit is enough for it to refuse the body.
    let body = match data.open((crate::wxpay::xml::DEFAULT_MAX_BYTES + 1).bytes()).into_bytes().await {
        Ok(capped) => capped.into_inner(),
        Err(_) => Vec::new(),
    };
    let sim = &sim.0;
    let faults = sim.roll_api();
    let outcome = dispatch(sim, path, &body, &cert, faults);
    if let Some(delay) = faults.slow {
        tokio::time::sleep(delay).await;
    }
    match outcome {
        ApiOutcome::Xml(xml) if faults.garbled => ApiResponse::Xml(garble(&xml)),
        ApiOutcome::Xml(xml) => ApiResponse::Xml(xml),
        ApiOutcome::Bill { gzip, bill_type, records } => {
            ApiResponse::Bill { gzip, rx: stream_bill(gzip, bill_type, records) }
        }
    }
}

#[post("/pay/unifiedorder", data = "<data>")]
async fn unified_order(sim: &State<Mounted>, data: Data<'_>) -> ApiResponse {
    call(sim, ApiPath::UnifiedOrder, data, ClientCert::Unchecked).await
}

#[post("/pay/orderquery", data = "<data>")]
async fn order_query(sim: &State<Mounted>, data: Data<'_>) -> ApiResponse {
    call(sim, ApiPath::OrderQuery, data, ClientCert::Unchecked).await
}

#[post("/pay/closeorder", data = "<data>")]
async fn close_order(sim: &State<Mounted>, data: Data<'_>) -> ApiResponse {
    call(sim, ApiPath::CloseOrder, data, ClientCert::Unchecked).await
}

#[post("/secapi/pay/refund", data = "<data>")]
async fn refund(sim: &State<Mounted>, config: &Config, cert: Option<Certificate<'_>>, data: Data<'_>) -> ApiResponse {
    let checks_certificates = config.tls.as_ref().and_then(|tls| tls.mutual()).is_some();
    let cert = match (checks_certificates, cert) {
        (false, _) => ClientCert::Unchecked,
        (true, None) => return ApiResponse::NoCertificate,
        (true, Some(c)) => ClientCert::Presented(c.subject().common_name().map(str::to_owned)),
    };
    call(sim, ApiPath::Refund, data, cert).await
}

#[post("/pay/refundquery", data = "<data>")]
async fn refund_query(sim: &State<Mounted>, data: Data<'_>) -> ApiResponse {
    call(sim, ApiPath::RefundQuery, data, ClientCert::Unchecked).await
}

#[post("/pay/downloadbill", data = "<data>")]
async fn download_bill(sim: &State<Mounted>, data: Data<'_>) -> ApiResponse {
    call(sim, ApiPath::DownloadBill, data, ClientCert::Unchecked).await
}

fn require_post() -> ApiResponse {
    ApiResponse::Xml(super::envelope::protocol_fail("请使用post方法"))
}

#[get("/pay/unifiedorder")]
fn get_unified_order() -> ApiResponse {
    require_post()
}

#[get("/pay/orderquery")]
fn get_order_query() -> ApiResponse {
    require_post()
}

#[get("/pay/closeorder")]
fn get_close_order() -> ApiResponse {
    require_post()
}

#[get("/secapi/pay/refund")]
fn get_refund() -> ApiResponse {
    require_post()
}

#[get("/pay/refundquery")]
fn get_refund_query() -> ApiResponse {
    require_post()
}

#[get("/pay/downloadbill")]
fn get_download_bill() -> ApiResponse {
    require_post()
}

pub(crate) fn routes() -> Vec<Route> {
    routes![
        unified_order,
        order_query,
        close_order,
        refund,
        refund_query,
        download_bill,
        get_unified_order,
        get_order_query,
        get_close_order,
        get_refund,
        get_refund_query,
        get_download_bill,
    ]
}
