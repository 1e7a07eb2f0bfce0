//! v3 answers: the error body `{code, message, detail}` with its HTTP status, the `Request-ID`,
//! and the signature every answer carries (errors and 204 included; only the bill file goes
//! unsigned), made with the key the request's `Wechatpay-Serial` selects. The answer faults act
//! here too: a `WECHATPAY/SIGNTEST/` probe in place of the signature, or a body cut after signing.

use std::io::Cursor;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::simulator::faults::garble;
use crate::simulator::{Simulator, ids};
use crate::wxpay::v3::models::ErrorAnswer;
use crate::wxpay::v3::verify::HEADER_NONCE;

/// What a v3 call answers, before signing.
pub(crate) enum Answer {
    /// 200 with a JSON body.
    Json(Vec<u8>),
    /// 204, no body.
    NoContent,
    /// The raw bill file (unsigned), gzipped when asked.
    File { gzip: bool, bytes: Vec<u8> },
}

impl Answer {
    pub fn json<T: Serialize>(value: &T) -> Answer {
        Answer::Json(serde_json::to_vec(value).expect("answers serialize"))
    }
}

/// A refused call: status, code, message and, sometimes, detail.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct V3Error {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<Value>,
}

impl V3Error {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> V3Error {
        V3Error { status, code, message: message.into(), detail: None }
    }

    pub fn with_detail(mut self, detail: Value) -> V3Error {
        self.detail = Some(detail);
        self
    }

    /// `400 PARAM_ERROR` naming the field (a JSON pointer such as `/body/amount/total`).
    pub fn param(field: &str, why: impl std::fmt::Display) -> V3Error {
        let location = field.trim_start_matches('/').split('/').next().unwrap_or("body").to_owned();
        V3Error::new(400, "PARAM_ERROR", format!("输入源“{field}”校验失败：{why}"))
            .with_detail(json!({ "field": field, "location": location, "issue": why.to_string() }))
    }

    pub fn system() -> V3Error {
        V3Error::new(500, "SYSTEM_ERROR", "系统错误")
    }

    /// The numeric code after the last `-` of `Request-ID`: the ones seen in real answers, and
    /// made-up ones in the same range for the rest (only their being non-zero matters).
    fn number(&self) -> u32 {
        let field = self.detail.as_ref().and_then(|d| d.get("field")).and_then(|f| f.as_str());
        match (self.code, self.message.as_str()) {
            ("PARAM_ERROR", m) if m.contains("未在API文档中定义") => 270924358,
            ("SIGN_ERROR", _) if field == Some("timestamp") => 268443699,
            ("NOT_ENOUGH", _) => 268892709,
            ("INVALID_REQUEST", m) if m.contains("不一致") => 268498688,
            ("ORDER_PAID", _) => 268449538,
            ("PARAM_ERROR", _) => 268435457,
            ("SIGN_ERROR", _) => 268435458,
            ("ORDER_NOT_EXIST" | "RESOURCE_NOT_EXISTS", _) => 268435459,
            ("SYSTEM_ERROR", _) => 268435460,
            _ => 268435461,
        }
    }
}

/// A finished answer: signed JSON (or 204), or the unsigned bill file.
pub(crate) enum V3Reply {
    Signed { status: Status, headers: Vec<(&'static str, String)>, body: Vec<u8> },
    File { gzip: bool, bytes: Vec<u8> },
}

/// Signs the outcome with the key `serial` (the request's `Wechatpay-Serial`) selects, then
/// applies the answer faults.
pub(crate) fn finish(
    sim: &Simulator,
    serial: Option<&str>,
    outcome: Result<Answer, V3Error>,
    garbled: bool,
    probe: bool,
) -> V3Reply {
    let (status, body, number) = match outcome {
        Ok(Answer::File { gzip, bytes }) => return V3Reply::File { gzip, bytes },
        Ok(Answer::Json(body)) => (200, body, 0),
        Ok(Answer::NoContent) => (204, Vec::new(), 0),
        Err(e) => {
            let number = e.number();
            let answer = ErrorAnswer { code: e.code.to_owned(), message: e.message, detail: e.detail };
            (e.status, serde_json::to_vec(&answer).expect("errors serialize"), number)
        }
    };
    let platform = sim.platform();
    let public_key = serial == Some(platform.public_key_id.as_str());
    let mut headers = platform.sign(public_key, &body, probe);
    headers.push(("Request-ID", format!("{}-{number}", ids::random_hex(44).to_uppercase())));
    let body = match garbled {
        false => body,
        // Cut after signing, so the signature no longer matches; an empty body cannot be cut,
        // so its nonce changes instead, with the same effect.
        true if body.is_empty() => {
            headers.iter_mut().filter(|(n, _)| *n == HEADER_NONCE).for_each(|(_, v)| *v = ids::random_hex(32));
            body
        }
        true => garble(&String::from_utf8_lossy(&body)).into_bytes(),
    };
    V3Reply::Signed { status: Status::from_code(status).unwrap_or(Status::InternalServerError), headers, body }
}

impl<'r> Responder<'r, 'static> for V3Reply {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        match self {
            V3Reply::Signed { status, headers, body } => {
                let mut response = Response::build();
                response.status(status);
                response.header(ContentType::new("application", "json").with_params(("charset", "utf-8")));
                for (name, value) in headers {
                    response.header(Header::new(name, value));
                }
                response.sized_body(body.len(), Cursor::new(body)).ok()
            }
            V3Reply::File { gzip, bytes } => {
                let content_type = if gzip {
                    ContentType::new("application", "x-gzip")
                } else {
                    ContentType::new("text", "plain").with_params(("charset", "utf-8"))
                };
                Response::build().header(content_type).sized_body(bytes.len(), Cursor::new(bytes)).ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::config::SimulatorConfig;

    fn header<'a>(reply: &'a V3Reply, name: &str) -> Option<&'a str> {
        match reply {
            V3Reply::Signed { headers, .. } => headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()),
            V3Reply::File { .. } => None,
        }
    }

    #[test]
    fn errors_are_signed_with_their_number_and_the_key_the_serial_asks_for() {
        let sim = Simulator::new(SimulatorConfig::default()).unwrap();
        let info = sim.v3_platform();
        let err = V3Error::new(404, "ORDER_NOT_EXIST", "订单不存在");
        let reply = finish(&sim, None, Err(err.clone()), false, false);
        let V3Reply::Signed { status, body, .. } = &reply else { panic!("signed") };
        assert_eq!(status.code, 404);
        let parsed: ErrorAnswer = serde_json::from_slice(body).unwrap();
        assert_eq!((parsed.code.as_str(), parsed.message.as_str()), ("ORDER_NOT_EXIST", "订单不存在"));
        assert_eq!(header(&reply, "Wechatpay-Serial"), Some(info.certificate_serial.as_str()));
        assert!(header(&reply, "Request-ID").unwrap().ends_with("-268435459"));
        let reply = finish(&sim, Some(&info.public_key_id), Ok(Answer::NoContent), false, false);
        assert_eq!(header(&reply, "Wechatpay-Serial"), Some(info.public_key_id.as_str()));
        assert!(header(&reply, "Request-ID").unwrap().ends_with("-0"));
        let file = finish(&sim, None, Ok(Answer::File { gzip: false, bytes: b"x".to_vec() }), true, true);
        assert!(matches!(file, V3Reply::File { .. }) && header(&file, "Wechatpay-Signature").is_none());
    }

    #[test]
    fn garbling_cuts_the_body_after_signing() {
        let sim = Simulator::new(SimulatorConfig::default()).unwrap();
        let body = br#"{"prepay_id":"wx201410272009395522657a690389285100"}"#.to_vec();
        let V3Reply::Signed { body: cut, .. } = finish(&sim, None, Ok(Answer::Json(body.clone())), true, false) else {
            panic!("signed")
        };
        assert!(cut.len() < body.len() && body.starts_with(&cut));
    }
}
