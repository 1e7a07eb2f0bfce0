//! The merchant identity a request is signed with, and the envelope common to every request.

use super::nonce::nonce_str;
use super::sign::{self, ApiKey, SignType};
use super::xml::Fields;

/// An Official Account bound to a merchant account, with the APIv2 key and chosen algorithm.
#[derive(Clone, Debug)]
pub struct Merchant {
    pub appid: String,
    pub mch_id: String,
    pub key: ApiKey,
    pub sign_type: SignType,
}

impl Merchant {
    /// Wraps business fields in the common envelope (appid, mch_id, nonce_str, sign_type) and
    /// signs the result. `sign_type` is always sent, so WeChat and the JSAPI `signType` agree.
    pub fn signed_request(&self, business: Vec<(&'static str, String)>) -> Fields {
        let mut fields = Fields::new();
        fields.insert("appid", self.appid.clone());
        fields.insert("mch_id", self.mch_id.clone());
        fields.insert("nonce_str", nonce_str());
        fields.insert("sign_type", self.sign_type.as_str());
        for (k, v) in business {
            if !v.is_empty() {
                fields.insert(k, v);
            }
        }
        let signature = sign::sign(fields.pairs(), &self.key, self.sign_type);
        fields.insert("sign", signature);
        fields
    }

    /// The same merchant under another appid bound to its mch_id (a Mini Program's): same key,
    /// same algorithm.
    pub fn with_appid(&self, appid: &str) -> Merchant {
        Merchant { appid: appid.to_owned(), ..self.clone() }
    }

    /// Signs an arbitrary field set with this merchant's key and algorithm (replies, notifies).
    pub fn sign(&self, fields: &Fields) -> String {
        sign::sign(fields.pairs(), &self.key, self.sign_type)
    }
}
