//! The six parameters `WeixinJSBridge.invoke('getBrandWCPayRequest', …)` takes, and their
//! `paySign`: a second signature, separate from the unifiedorder one, over the camel-case keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::merchant::Merchant;
use super::nonce::nonce_str;
use super::sign::{self, ApiKey, SignType, VerifyError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsapiParams {
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Unix seconds as a string; milliseconds break the payment.
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=…`.
    pub package: String,
    /// Must equal the `sign_type` the order was created with.
    #[serde(rename = "signType")]
    pub sign_type: String,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

impl JsapiParams {
    /// Parameters for a prepay, signed with the merchant's key and algorithm.
    pub fn new(merchant: &Merchant, prepay_id: &str, now: DateTime<Utc>) -> JsapiParams {
        Self::with_nonce(merchant, prepay_id, now.timestamp(), nonce_str())
    }

    pub fn with_nonce(merchant: &Merchant, prepay_id: &str, unix_seconds: i64, nonce: String) -> JsapiParams {
        let mut params = JsapiParams {
            app_id: merchant.appid.clone(),
            time_stamp: unix_seconds.to_string(),
            nonce_str: nonce,
            package: format!("prepay_id={prepay_id}"),
            sign_type: merchant.sign_type.as_str().to_owned(),
            pay_sign: String::new(),
        };
        params.pay_sign = sign::sign(params.signed_pairs(), &merchant.key, merchant.sign_type);
        params
    }

    fn signed_pairs(&self) -> [(&str, &str); 5] {
        [
            ("appId", &self.app_id),
            ("timeStamp", &self.time_stamp),
            ("nonceStr", &self.nonce_str),
            ("package", &self.package),
            ("signType", &self.sign_type),
        ]
    }

    /// The prepay id inside `package`, if it has the `prepay_id=` form.
    pub fn prepay_id(&self) -> Option<&str> {
        self.package.strip_prefix("prepay_id=").filter(|p| !p.is_empty())
    }

    /// Checks `paySign` as the WeChat client does: with the algorithm named by `signType`.
    pub fn verify(&self, key: &ApiKey) -> Result<SignType, VerifyError> {
        let sign_type =
            SignType::parse(&self.sign_type).ok_or_else(|| VerifyError::UnknownSignType(self.sign_type.clone()))?;
        if self.pay_sign.len() != sign_type.hex_len() {
            return Err(VerifyError::MalformedSign);
        }
        let expected = sign::sign(self.signed_pairs(), key, sign_type);
        if subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), self.pay_sign.to_ascii_uppercase().as_bytes()).into() {
            Ok(sign_type)
        } else {
            Err(VerifyError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant(sign_type: SignType) -> Merchant {
        Merchant {
            appid: "wxd930ea5d5a258f4f".into(),
            mch_id: "10000100".into(),
            key: ApiKey::new("192006250b4c09247ec02edce69f6a2d").unwrap(),
            sign_type,
        }
    }

    fn vector(sign_type: SignType) -> JsapiParams {
        JsapiParams::with_nonce(
            &merchant(sign_type),
            "wx201410272009395522657a690389285100",
            1414561699,
            "5K8264ILTKCH16CQ2502SI8ZNMTM67VS".into(),
        )
    }

    #[test]
    fn pay_sign_vectors() {
        assert_eq!(vector(SignType::Md5).pay_sign, "FD19D752A746E5F238A6E53BD99EEBD0");
        assert_eq!(
            vector(SignType::HmacSha256).pay_sign,
            "FC7A79E4918B4FFA96E836F5AD4A510F31241FB46C14C971D6D7B4F8E15AF262"
        );
    }

    #[test]
    fn serializes_with_the_exact_key_names() {
        let json = serde_json::to_value(vector(SignType::Md5)).unwrap();
        for key in ["appId", "timeStamp", "nonceStr", "package", "signType", "paySign"] {
            assert!(json.get(key).is_some_and(|v| v.is_string()), "{key}");
        }
        assert_eq!(json["package"], "prepay_id=wx201410272009395522657a690389285100");
        assert_eq!(json["timeStamp"], "1414561699");
    }

    #[test]
    fn verification_catches_any_change() {
        let key = merchant(SignType::Md5).key;
        let good = vector(SignType::Md5);
        assert_eq!(good.verify(&key), Ok(SignType::Md5));
        let mut millis = good.clone();
        millis.time_stamp = "1414561699000".into();
        assert_eq!(millis.verify(&key), Err(VerifyError::Mismatch));
        let mut switched = good.clone();
        switched.sign_type = "HMAC-SHA256".into();
        assert_eq!(switched.verify(&key), Err(VerifyError::MalformedSign));
        assert_eq!(good.prepay_id(), Some("wx201410272009395522657a690389285100"));
    }
}
