//! The protocol layer every API call goes through: body → XML fields → merchant → signature,
//! answered with an unsigned `return_code=FAIL` when anything is wrong; and the signed replies
//! (business success and `result_code=FAIL`) built in the request's own algorithm.

use crate::simulator::Simulator;
use crate::simulator::config::SimMerchant;
use crate::wxpay::nonce::nonce_str;
use crate::wxpay::sign::{self, SignType, VerifyError};
use crate::wxpay::xml::{self, Fields, XmlError};

/// What the transport knows about the client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ClientCert {
    /// Plain HTTP, or TLS without a client CA: nothing can be checked.
    Unchecked,
    /// A verified client certificate with this subject common name.
    Presented(Option<String>),
}

/// A request that passed the protocol layer.
pub(crate) struct ApiRequest {
    pub fields: Fields,
    pub merchant: SimMerchant,
    /// The algorithm the request was signed with; replies use it too.
    pub sign_type: SignType,
}

/// A business failure: `result_code=FAIL` with `err_code` and `err_code_des`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BizError {
    pub code: &'static str,
    pub des: String,
}

impl BizError {
    pub fn new(code: &'static str, des: impl Into<String>) -> BizError {
        BizError { code, des: des.into() }
    }

    pub fn lack(name: &str) -> BizError {
        BizError::new("LACK_PARAMS", format!("缺少参数{name}"))
    }

    pub fn invalid(des: impl Into<String>) -> BizError {
        BizError::new("INVALID_REQUEST", des)
    }
}

/// Business fields of a successful reply.
pub(crate) type BizFields = Vec<(&'static str, String)>;

/// An unsigned protocol-layer failure.
pub(crate) fn protocol_fail(return_msg: &str) -> String {
    xml::write_document("xml", [("return_code", "FAIL"), ("return_msg", return_msg)])
}

/// Checks the protocol layer in WeChat's order: body, encoding, XML, mch_id, (certificate),
/// appid, sign_type, signature. The error is the `return_msg` to answer with.
pub(crate) fn open(sim: &Simulator, body: &[u8], cert: &ClientCert) -> Result<ApiRequest, &'static str> {
    let fields = match xml::parse(body) {
        Ok(f) => f,
        Err(XmlError::Empty) => return Err("post数据为空"),
        Err(XmlError::NotUtf8 | XmlError::UnsupportedEncoding(_)) => return Err("编码格式错误"),
        Err(_) => return Err("XML格式错误"),
    };
    let mch_id = fields.get("mch_id").filter(|v| !v.is_empty()).ok_or("mch_id参数格式错误")?;
    let bound = sim.merchants_for_mch(mch_id);
    if bound.is_empty() {
        return Err("mch_id参数格式错误");
    }
    if let ClientCert::Presented(cn) = cert
        && cn.as_deref() != Some(mch_id)
    {
        return Err("证书错误");
    }
    let appid = fields.get("appid").filter(|v| !v.is_empty()).ok_or("appid参数长度有误")?;
    let merchant = bound.into_iter().find(|m| m.appid == appid).cloned().ok_or("appid和mch_id不匹配")?;
    let verified = sign::detect_and_verify(fields.pairs(), &merchant.api_key);
    match verified {
        Ok(sign_type) => Ok(ApiRequest { fields, merchant, sign_type }),
        Err(VerifyError::UnknownSignType(_)) => Err("sign_type参数格式错误"),
        Err(_) => Err("签名错误"),
    }
}

impl ApiRequest {
    /// A non-empty field.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).filter(|v| !v.is_empty())
    }

    /// A field that must be present: LACK_PARAMS otherwise.
    pub fn require(&self, key: &str) -> Result<&str, BizError> {
        self.get(key).ok_or_else(|| BizError::lack(key))
    }

    fn envelope(&self, result_code: &str) -> Fields {
        let mut f = Fields::new();
        f.insert("return_code", "SUCCESS");
        f.insert("return_msg", "OK");
        f.insert("appid", self.merchant.appid.clone());
        f.insert("mch_id", self.merchant.mch_id.clone());
        if let Some(device) = self.get("device_info") {
            f.insert("device_info", device);
        }
        f.insert("nonce_str", nonce_str());
        f.insert("result_code", result_code);
        f
    }

    fn signed(&self, mut f: Fields) -> String {
        let signature = sign::sign(f.pairs(), &self.merchant.api_key, self.sign_type);
        f.insert("sign", signature);
        f.to_xml()
    }

    /// `return_code=SUCCESS`, `result_code=SUCCESS`, the business fields, signed.
    pub fn success<K: Into<String>>(&self, business: Vec<(K, String)>) -> String {
        let mut f = self.envelope("SUCCESS");
        for (k, v) in business {
            if !v.is_empty() {
                f.insert(k, v);
            }
        }
        self.signed(f)
    }

    /// `return_code=SUCCESS`, `result_code=FAIL` with the error, signed.
    pub fn failure(&self, err: &BizError) -> String {
        let mut f = self.envelope("FAIL");
        f.insert("err_code", err.code);
        f.insert("err_code_des", err.des.clone());
        self.signed(f)
    }

    pub fn reply<K: Into<String>>(&self, outcome: Result<Vec<(K, String)>, BizError>) -> String {
        match outcome {
            Ok(fields) => self.success(fields),
            Err(e) => self.failure(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::config::SimulatorConfig;
    use crate::wxpay::demo::{DEMO_APPID, DEMO_MCH_ID};
    use crate::wxpay::merchant::Merchant;
    use crate::wxpay::reply::check_reply;

    fn sim() -> Simulator {
        Simulator::new(SimulatorConfig::default()).unwrap()
    }

    fn merchant(sign_type: SignType) -> Merchant {
        let m = crate::simulator::config::SimMerchant::demo();
        Merchant { appid: m.appid, mch_id: m.mch_id, key: m.api_key, sign_type }
    }

    #[test]
    fn protocol_failures_in_order() {
        let s = sim();
        let open = |b: &[u8]| open(&s, b, &ClientCert::Unchecked).err();
        assert_eq!(open(b""), Some("post数据为空"));
        assert_eq!(open(b"<xml><a>\xff</a></xml>"), Some("编码格式错误"));
        assert_eq!(open(b"<!DOCTYPE x []><xml/>"), Some("XML格式错误"));
        assert_eq!(open(b"<xml><appid>x</appid></xml>"), Some("mch_id参数格式错误"));
        assert_eq!(open(b"<xml><mch_id>1</mch_id></xml>"), Some("mch_id参数格式错误"));
        let m = format!("<xml><mch_id>{DEMO_MCH_ID}</mch_id>");
        assert_eq!(open(format!("{m}</xml>").as_bytes()), Some("appid参数长度有误"));
        assert_eq!(open(format!("{m}<appid>wx1</appid></xml>").as_bytes()), Some("appid和mch_id不匹配"));
        let a = format!("{m}<appid>{DEMO_APPID}</appid>");
        assert_eq!(
            open(format!("{a}<sign_type>SHA1</sign_type><sign>A</sign></xml>").as_bytes()),
            Some("sign_type参数格式错误")
        );
        assert_eq!(open(format!("{a}</xml>").as_bytes()), Some("签名错误"));
        assert_eq!(
            open(format!("{a}<sign>9A0A8659F005D6984697E2CA0A9CF3B7</sign></xml>").as_bytes()),
            Some("签名错误")
        );
    }

    #[test]
    fn replies_are_signed_in_the_request_algorithm() {
        let s = sim();
        for st in [SignType::Md5, SignType::HmacSha256] {
            let m = merchant(st);
            let body = m.signed_request(vec![("out_trade_no", "o1".into())]).to_xml();
            let req = open(&s, body.as_bytes(), &ClientCert::Unchecked).unwrap();
            assert_eq!(req.sign_type, st);
            let ok = req.success(vec![("prepay_id", "wx1".into())]);
            assert_eq!(check_reply(ok.as_bytes(), &m).unwrap().get("prepay_id"), Some("wx1"));
            let sig_len = xml::parse(ok.as_bytes()).unwrap().get("sign").unwrap().len();
            assert_eq!(sig_len, st.hex_len());
            let err = req.failure(&BizError::lack("body"));
            let e = check_reply(err.as_bytes(), &m).unwrap_err();
            assert_eq!(e.err_code().map(|c| c.as_str().to_owned()), Some("LACK_PARAMS".into()));
        }
    }

    #[test]
    fn certificates_must_name_the_merchant() {
        let s = sim();
        let body = merchant(SignType::Md5).signed_request(vec![]).to_xml();
        let wrong = ClientCert::Presented(Some("1900000109".into()));
        assert_eq!(open(&s, body.as_bytes(), &wrong).err(), Some("证书错误"));
        assert_eq!(open(&s, body.as_bytes(), &ClientCert::Presented(None)).err(), Some("证书错误"));
        let right = ClientCert::Presented(Some(DEMO_MCH_ID.into()));
        assert!(open(&s, body.as_bytes(), &right).is_ok());
    }
}
