//! What a v3 call brings: its method and canonical URL exactly as received (the mount prefix
//! included, since that is what the merchant signed), the `Authorization` and `Wechatpay-Serial`
//! headers, where it came to (for the bill's `download_url`), the raw body; and the strict JSON
//! reading of bodies and queries, whose failures are `400 PARAM_ERROR`.

use rocket::data::{Data, ToByteUnit};
use rocket::request::{FromRequest, Outcome, Request};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::answer::V3Error;

/// No v3 request body of this product comes near it.
const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// The request-line and headers of a v3 call.
#[derive(Clone, Debug)]
pub(crate) struct V3Call {
    pub method: String,
    /// Path and raw query as received.
    pub canonical_url: String,
    pub authorization: Option<String>,
    /// `Wechatpay-Serial`: a public key ID asks for public-key signatures.
    pub serial: Option<String>,
    /// `scheme://host[:port]` the call came to.
    pub origin: String,
    /// Where the v3 routes are mounted (`/simulator` inside the app, empty standalone).
    pub base: String,
}

/// The origin a call came to: the Host header (or the listening address), `https` when Rocket
/// serves TLS or a proxy in front says so with `X-Forwarded-Proto`.
fn origin(req: &Request<'_>) -> String {
    let config = req.rocket().config();
    let forwarded = req.headers().get_one("X-Forwarded-Proto");
    let tls = config.tls_enabled() || forwarded == Some("https");
    match req.host() {
        Some(host) => format!("{}://{host}", if tls { "https" } else { "http" }),
        None => crate::simulator::server::base_url(config.address, config.port, tls),
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for V3Call {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let header = |name: &str| req.headers().get_one(name).map(str::to_owned);
        let base = req.route().map(|r| r.uri.base().trim_end_matches('/').to_owned()).unwrap_or_default();
        Outcome::Success(V3Call {
            method: req.method().as_str().to_owned(),
            canonical_url: req.uri().to_string(),
            authorization: header("Authorization"),
            serial: header("Wechatpay-Serial"),
            origin: origin(req),
            base,
        })
    }
}

impl V3Call {
    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, query) = self.canonical_url.split_once('?')?;
        url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    /// A query parameter that must be there and not be empty.
    pub fn require_query(&self, name: &str) -> Result<String, V3Error> {
        self.query(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| V3Error::param(&format!("/query/{name}"), "必填性规则校验失败，此字段为必填项"))
    }
}

/// The raw body; None when it is larger than any v3 body may be.
pub(crate) async fn read_body(data: Data<'_>) -> Option<Vec<u8>> {
    let capped = data.open(MAX_BODY_BYTES.bytes()).into_bytes().await.ok()?;
    capped.is_complete().then(|| capped.into_inner())
}

/// The body as a JSON object.
pub(crate) fn json_object(body: &[u8]) -> Result<Value, V3Error> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(V3Error::param("/body", "请求体须为JSON对象")),
        Err(e) => Err(V3Error::param("/body", format!("请求体不是合法的JSON：{e}"))),
    }
}

/// Removes the optional fields WeChat documents that the simulator does not model (it accepts
/// them, as WeChat does, and ignores them), each named by a JSON pointer; they still take part
/// in the reentry comparison, which reads the original value.
pub(crate) fn without(mut value: Value, pointers: &[&str]) -> Value {
    for pointer in pointers {
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        if let Some(Value::Object(map)) = value.pointer_mut(parent) {
            map.remove(key);
        }
    }
    value
}

/// Reads a request body strictly: an undocumented field is refused, as WeChat refuses it.
pub(crate) fn strict<T: DeserializeOwned>(value: Value) -> Result<T, V3Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let pointer = if path == "." { "/body".to_owned() } else { format!("/body/{}", path.replace('.', "/")) };
        let inner = e.into_inner().to_string();
        if inner.starts_with("unknown field") {
            V3Error::new(400, "PARAM_ERROR", "请求中含有未在API文档中定义的参数")
                .with_detail(json!({ "location": null, "value": [pointer], "issue": inner }))
        } else {
            V3Error::param(&pointer, inner)
        }
    })
}

/// Every leaf of a JSON value under its dotted path: what a reentry must repeat.
pub(crate) fn flatten(value: &Value) -> std::collections::BTreeMap<String, String> {
    fn walk(v: &Value, path: String, out: &mut std::collections::BTreeMap<String, String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    walk(child, if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, format!("{path}[{i}]"), out);
                }
            }
            Value::Null => {}
            Value::String(s) => {
                out.insert(path, s.clone());
            }
            other => {
                out.insert(path, other.to_string());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(value, String::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::v3::models::{CloseRequest, PrepayRequest};

    #[test]
    fn unknown_fields_are_param_errors_naming_the_field() {
        let e = strict::<CloseRequest>(json!({ "mchid": "1", "extra": 1 })).unwrap_err();
        assert_eq!((e.status, e.code, e.message.as_str()), (400, "PARAM_ERROR", "请求中含有未在API文档中定义的参数"));
        let e = strict::<CloseRequest>(json!({})).unwrap_err();
        assert_eq!(e.code, "PARAM_ERROR");
        let body = json!({
            "appid": "wx1", "mchid": "1", "description": "d", "out_trade_no": "o", "notify_url": "https://a/n",
            "amount": { "total": "1" }, "payer": { "openid": "o" }
        });
        let e = strict::<PrepayRequest>(body).unwrap_err();
        assert_eq!(e.detail.unwrap()["field"], "/body/amount/total");
    }

    #[test]
    fn documented_extras_are_removed_and_leaves_flattened() {
        let v = json!({ "a": 1, "scene_info": { "payer_client_ip": "1.2.3.4", "store_info": { "id": "s" } } });
        let stripped = without(v.clone(), &["/scene_info/store_info", "/detail"]);
        assert_eq!(stripped, json!({ "a": 1, "scene_info": { "payer_client_ip": "1.2.3.4" } }));
        let flat = flatten(&json!({ "amount": { "total": 1 }, "limit_pay": ["no_credit"], "x": null }));
        assert_eq!(flat.get("amount.total").map(String::as_str), Some("1"));
        assert_eq!(flat.get("limit_pay[0]").map(String::as_str), Some("no_credit"));
        assert_eq!(flat.len(), 2);
    }
}
