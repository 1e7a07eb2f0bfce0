//! Rocket routes of API v3 (under the API base, next to v2) and of its control (under the
//! simulator's own base). Every call runs the same way: the fault dice, the signature check, the
//! injected `SYSTEM_ERROR` (which changes nothing), the endpoint, the injected delay, then the
//! signed answer (probe and garbling faults included).

use rocket::data::Data;
use rocket::http::Status;
use rocket::{Route, State, get, post, routes};
use serde_json::json;

use super::answer::{Answer, V3Error, V3Reply, finish};
use super::request::{V3Call, read_body};
use super::{auth, bills, orders, refunds};
use crate::simulator::Simulator;
use crate::simulator::api::OrderRef;
use crate::simulator::server::Mounted;
use crate::simulator::web::{JsonReply, json_error, json_ok};
use crate::wxpay::v3::certificates::{CertificateEntry, CertificatesAnswer};
use crate::wxpay::v3::models::format_time;

/// Which endpoint a call is for.
enum Op {
    Prepay,
    QueryByNo(String),
    QueryById(String),
    Close(String),
    Refund,
    RefundQuery(String),
    Certificates,
    TradeBill,
    Download,
}

/// `GET /v3/certificates`: every platform certificate, each sealed with the caller's APIv3 key.
fn certificates(sim: &Simulator, merchant: &crate::simulator::config::SimV3Merchant) -> Result<Answer, V3Error> {
    let platform = sim.platform();
    let data = platform
        .certificates
        .iter()
        .map(|c| CertificateEntry {
            serial_no: c.certificate.serial_no.clone(),
            effective_time: format_time(c.certificate.not_before),
            expire_time: format_time(c.certificate.not_after),
            encrypt_certificate: crate::wxpay::v3::aead::EncryptedResource::seal(
                &merchant.apiv3_key,
                "certificate",
                None,
                c.certificate.pem.as_bytes(),
            ),
        })
        .collect();
    sim.write(|s| s.v3_certificate_downloads += 1);
    Ok(Answer::json(&CertificatesAnswer { data }))
}

fn run(sim: &Simulator, call: &V3Call, body: Option<&[u8]>, op: Op, system_error: bool) -> Result<Answer, V3Error> {
    let body = body.ok_or_else(|| V3Error::param("/body", "请求体过大"))?;
    let merchant = auth::verify(sim, call, body)?;
    if system_error {
        return Err(V3Error::system());
    }
    match op {
        Op::Prepay => orders::prepay(sim, &merchant, body),
        Op::QueryByNo(no) => orders::query(sim, &merchant, call, OrderRef::OutTradeNo(&no)),
        Op::QueryById(id) => orders::query(sim, &merchant, call, OrderRef::Transaction(&id)),
        Op::Close(no) => orders::close_order(sim, &merchant, &no, body),
        Op::Refund => refunds::create(sim, &merchant, body),
        Op::RefundQuery(no) => refunds::query(sim, &merchant, &no),
        Op::Certificates => certificates(sim, &merchant),
        Op::TradeBill => bills::trade_bill(sim, &merchant, call),
        Op::Download => bills::download(sim, &merchant, call),
    }
}

async fn serve(sim: &Simulator, call: V3Call, body: Option<Vec<u8>>, op: Op) -> V3Reply {
    let faults = sim.roll_api();
    let probe = sim.roll_signtest();
    let outcome = run(sim, &call, body.as_deref(), op, faults.system_error);
    if let Some(delay) = faults.slow {
        tokio::time::sleep(delay).await;
    }
    finish(sim, call.serial.as_deref(), outcome, faults.garbled, probe)
}

async fn serve_post(sim: &State<Mounted>, call: V3Call, data: Data<'_>, op: Op) -> V3Reply {
    let body = read_body(data).await;
    serve(&sim.0, call, body, op).await
}

#[post("/v3/pay/transactions/jsapi", data = "<data>")]
async fn prepay(sim: &State<Mounted>, call: V3Call, data: Data<'_>) -> V3Reply {
    serve_post(sim, call, data, Op::Prepay).await
}

#[get("/v3/pay/transactions/out-trade-no/<no>")]
async fn query_by_no(sim: &State<Mounted>, call: V3Call, no: &str) -> V3Reply {
    serve(&sim.0, call, Some(Vec::new()), Op::QueryByNo(no.to_owned())).await
}

#[get("/v3/pay/transactions/id/<id>")]
async fn query_by_id(sim: &State<Mounted>, call: V3Call, id: &str) -> V3Reply {
    serve(&sim.0, call, Some(Vec::new()), Op::QueryById(id.to_owned())).await
}

#[post("/v3/pay/transactions/out-trade-no/<no>/close", data = "<data>")]
async fn close(sim: &State<Mounted>, call: V3Call, no: &str, data: Data<'_>) -> V3Reply {
    serve_post(sim, call, data, Op::Close(no.to_owned())).await
}

#[post("/v3/refund/domestic/refunds", data = "<data>")]
async fn refund(sim: &State<Mounted>, call: V3Call, data: Data<'_>) -> V3Reply {
    serve_post(sim, call, data, Op::Refund).await
}

#[get("/v3/refund/domestic/refunds/<no>")]
async fn refund_query(sim: &State<Mounted>, call: V3Call, no: &str) -> V3Reply {
    serve(&sim.0, call, Some(Vec::new()), Op::RefundQuery(no.to_owned())).await
}

#[get("/v3/certificates")]
async fn get_certificates(sim: &State<Mounted>, call: V3Call) -> V3Reply {
    serve(&sim.0, call, Some(Vec::new()), Op::Certificates).await
}

#[get("/v3/bill/tradebill")]
async fn trade_bill(sim: &State<Mounted>, call: V3Call) -> V3Reply {
    serve(&sim.0, call, Some(Vec::new()), Op::TradeBill).await
}

#[get("/v3/billdownload/file")]
async fn download(sim: &State<Mounted>, call: V3Call) -> V3Reply {
    serve(&sim.0, call, Some(Vec::new()), Op::Download).await
}

/// Any other v3 path: a signed 404, as JSON like every v3 answer.
#[get("/v3/<_..>", rank = 30)]
fn unknown_get(sim: &State<Mounted>, call: V3Call) -> V3Reply {
    finish(&sim.0, call.serial.as_deref(), Err(not_found()), false, false)
}

#[post("/v3/<_..>", rank = 30)]
fn unknown_post(sim: &State<Mounted>, call: V3Call) -> V3Reply {
    finish(&sim.0, call.serial.as_deref(), Err(not_found()), false, false)
}

fn not_found() -> V3Error {
    V3Error::new(404, "NOT_FOUND", "请求的资源不存在")
}

/// The API routes (under the API base).
pub(crate) fn routes() -> Vec<Route> {
    routes![
        prepay,
        query_by_no,
        query_by_id,
        close,
        refund,
        refund_query,
        get_certificates,
        trade_bill,
        download,
        unknown_get,
        unknown_post
    ]
}

/// The current platform certificate and public key, as a merchant configures them.
#[get("/control/v3/platform")]
fn get_platform(sim: &State<Mounted>) -> JsonReply {
    json_ok(json!(sim.0.v3_platform()))
}

/// A new certificate signs from now on; both are listed by `/v3/certificates`.
#[post("/control/v3/rotate-certificate")]
async fn post_rotate(sim: &State<Mounted>) -> JsonReply {
    // Key generation takes a moment: off the async workers.
    let sim = sim.0.clone();
    match tokio::task::spawn_blocking(move || sim.rotate_v3_certificate()).await {
        Ok(info) => json_ok(json!(info)),
        Err(e) => json_error(Status::InternalServerError, e.to_string()),
    }
}

#[get("/control/v3/stats")]
fn get_stats(sim: &State<Mounted>) -> JsonReply {
    json_ok(json!({ "certificate_downloads": sim.0.v3_certificate_downloads() }))
}

/// The control routes (under the simulator's own base).
pub(crate) fn control_routes() -> Vec<Route> {
    routes![get_platform, post_rotate, get_stats]
}
