//! Request signing: the `Authorization: WECHATPAY2-SHA256-RSA2048 …` header every v3 request
//! carries, and its parsing (the simulator checks it as WeChat does).

use std::sync::Arc;

use super::keys::MerchantKey;

/// The scheme of `Authorization` and the value of `Wechatpay-Signature-Type`.
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// The five-line message a request signature covers: method, canonical URL (path and raw query as
/// sent), timestamp, nonce, body, each line ending in `\n` (a GET's empty body included).
pub fn request_message(method: &str, canonical_url: &str, timestamp: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{method}\n{canonical_url}\n{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// The merchant identity requests are signed as: its mchid, the API certificate's serial, and
/// the private key.
#[derive(Clone, Debug)]
pub struct RequestSigner {
    pub mchid: String,
    /// The merchant API certificate's serial, upper-case hex.
    pub serial_no: String,
    pub key: Arc<MerchantKey>,
}

impl RequestSigner {
    /// The `Authorization` value for a request sent now with a fresh nonce.
    pub fn authorization(&self, method: &str, canonical_url: &str, body: &[u8]) -> String {
        let now = chrono::Utc::now().timestamp();
        self.authorization_at(method, canonical_url, body, now, &crate::wxpay::nonce::nonce_str())
    }

    pub fn authorization_at(
        &self,
        method: &str,
        canonical_url: &str,
        body: &[u8],
        timestamp: i64,
        nonce: &str,
    ) -> String {
        let signature = self.key.sign(&request_message(method, canonical_url, timestamp, nonce, body));
        format!(
            "{SCHEME} mchid=\"{}\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"{}\",signature=\"{signature}\"",
            self.mchid, self.serial_no
        )
    }
}

/// A parsed `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub mchid: String,
    pub nonce_str: String,
    pub timestamp: String,
    pub serial_no: String,
    pub signature: String,
}

impl Authorization {
    /// Parses `SCHEME key="value",…` with the pairs in any order, as WeChat accepts them. A
    /// missing, repeated or unknown key, or another scheme, is refused with the reason.
    pub fn parse(header: &str) -> Result<Authorization, String> {
        let pairs = header
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or_else(|| format!("the scheme is not {SCHEME}"))?;
        let mut fields: [Option<String>; 5] = Default::default();
        const KEYS: [&str; 5] = ["mchid", "nonce_str", "timestamp", "serial_no", "signature"];
        for pair in pairs.split(',') {
            let (key, value) = pair.split_once('=').ok_or_else(|| format!("`{pair}` is not key=\"value\""))?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| format!("the value of {key} is not quoted"))?;
            let slot = KEYS.iter().position(|k| *k == key).ok_or_else(|| format!("unknown key `{key}`"))?;
            if fields[slot].replace(value.to_owned()).is_some() {
                return Err(format!("`{key}` appears twice"));
            }
        }
        let [mchid, nonce_str, timestamp, serial_no, signature] = fields.map(|f| f.filter(|v| !v.is_empty()));
        let need = |v: Option<String>, k: &str| v.ok_or_else(|| format!("`{k}` is missing"));
        Ok(Authorization {
            mchid: need(mchid, "mchid")?,
            nonce_str: need(nonce_str, "nonce_str")?,
            timestamp: need(timestamp, "timestamp")?,
            serial_no: need(serial_no, "serial_no")?,
            signature: need(signature, "signature")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn official_signer() -> RequestSigner {
        RequestSigner {
            mchid: "1900007291".into(),
            serial_no: "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB".into(),
            key: Arc::new(MerchantKey::from_pem(include_str!("vectors/official_doc_key.pem")).unwrap()),
        }
    }

    /// The official request-signature example (reference §9.1).
    #[test]
    fn official_request_signature() {
        let body = r#"{"appid":"wxd678efh567hg6787","mchid":"1900007291","description":"Image形象店-深圳腾大-QQ公仔","out_trade_no":"1217752501201407033233368018","notify_url":"https://www.weixin.qq.com/wxpay/pay.php","amount":{"total":100,"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}}"#;
        let header = official_signer().authorization_at(
            "POST",
            "/v3/pay/transactions/jsapi",
            body.as_bytes(),
            1554208460,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
        );
        let parsed = Authorization::parse(&header).unwrap();
        assert_eq!(
            parsed.signature,
            "jnks4dlrPw3ZX+ozVvSK39oa0t7OMBsg83BHAwd8BRdUFiVaQNTLTvci+wURgP1OQBbKYhFGvt7iqYpDSTQkp7Uq1sltaQKyncCyrA1g88m5bsKERQfPyT0ahSwKTYJ1CAn9QiJuSJRq1QsQs07eehbU/k9BCS51jTyc1Jpsi2H77HF9f/BnjXAOP3/sPObg6V5Ee4EzwLox684hhuMuIwHo7D8KFk3LIHOKDcNI4It1aCXydFWNpNK+SG86VUDe5kwoDpw4Ulqfu9z8OFDGbDs9TCxEv8iqQzbpxOlEVoOe2kalSYM5kApQb3nZcxdUtoE0liJGW3RGUNE0t4v01A=="
        );
        assert_eq!(parsed.mchid, "1900007291");
        assert_eq!(parsed.timestamp, "1554208460");
        assert_eq!(parsed.serial_no, "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB");
    }

    #[test]
    fn a_get_message_ends_with_an_empty_body_line() {
        assert_eq!(request_message("GET", "/v3/certificates", 1, "n", b""), b"GET\n/v3/certificates\n1\nn\n\n");
    }

    #[test]
    fn pairs_in_any_order_and_refusals() {
        let ok = Authorization::parse(
            r#"WECHATPAY2-SHA256-RSA2048 serial_no="S",signature="x",mchid="1",timestamp="2",nonce_str="n""#,
        )
        .unwrap();
        assert_eq!((ok.mchid.as_str(), ok.serial_no.as_str()), ("1", "S"));
        for bad in [
            r#"Bearer mchid="1""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n",timestamp="2",serial_no="S""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",mchid="1",nonce_str="n",timestamp="2",serial_no="S",signature="x""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid=1,nonce_str="n",timestamp="2",serial_no="S",signature="x""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n",timestamp="2",serial_no="S",signature="x",extra="y""#,
        ] {
            assert!(Authorization::parse(bad).is_err(), "{bad}");
        }
    }
}
