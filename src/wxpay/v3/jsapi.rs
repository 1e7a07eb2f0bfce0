//! The JSAPI front-end parameters under v3: the same six keys as v2, `signType` `RSA`, and a
//! `paySign` made with the merchant API private key over `appId\ntimeStamp\nnonceStr\npackage\n`.

use super::keys::{MerchantKey, VerifyingKey};
use crate::wxpay::jsapi::JsapiParams;

/// The `signType` of v3 parameters.
pub const SIGN_TYPE: &str = "RSA";

/// The four-line message `paySign` covers (`package` whole, `prepay_id=` included).
pub fn pay_sign_message(app_id: &str, time_stamp: &str, nonce_str: &str, package: &str) -> Vec<u8> {
    format!("{app_id}\n{time_stamp}\n{nonce_str}\n{package}\n").into_bytes()
}

/// Parameters for `prepay_id`, paid in the app `appid` (the Official Account's, or a Mini
/// Program's: `wx.requestPayment` takes no `appId`, but the signature still covers it).
pub fn params(key: &MerchantKey, appid: &str, prepay_id: &str, unix_seconds: i64, nonce: String) -> JsapiParams {
    let time_stamp = unix_seconds.to_string();
    let package = format!("prepay_id={prepay_id}");
    let pay_sign = key.sign(&pay_sign_message(appid, &time_stamp, &nonce, &package));
    JsapiParams {
        app_id: appid.to_owned(),
        time_stamp,
        nonce_str: nonce,
        package,
        sign_type: SIGN_TYPE.to_owned(),
        pay_sign,
    }
}

/// Checks an RSA `paySign` as the WeChat client does, with the merchant's public key.
pub fn verify(p: &JsapiParams, merchant_public: &VerifyingKey) -> bool {
    p.sign_type == SIGN_TYPE
        && merchant_public.verify(&pay_sign_message(&p.app_id, &p.time_stamp, &p.nonce_str, &p.package), &p.pay_sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official JSAPI `paySign` example (reference §9.1).
    #[test]
    fn official_pay_sign() {
        let key = MerchantKey::from_pem(include_str!("vectors/official_doc_key.pem")).unwrap();
        let p = params(
            &key,
            "wx2421b1c4370ec43b",
            "wx201410272009395522657a690389285100",
            1554208460,
            "593BEC0C930BF1AFEB40B4A08C8FB242".into(),
        );
        assert_eq!(
            p.pay_sign,
            "mI35pfNEQV6777ke/1T+LJLQDNTm7yeoUJH+j/adPGhmCCi0PbgkvYQTRcXH0uibcLVtvFLdGLpmoYO9FV6lBBsTAjuhh5YOvQi0e2g3e0yytitiNET9FEuqM0pjnKfRW4K6LIZDdbWJv9KhZUx3DrJa5TL7OJ7VdADVivxVySIlPVKjGwuCXzuXSJes0UcILgWQUMyha5/3nYofuHtS7r+KYyMuxD+oJ9VM1Qdxk4UIG59CP5Y3wtYIFybyF3bdu1caHTRRX+DLyMXyYA/IrTmiW01c4RPjpHBX5Dk1sZyY1zVsWNsvMHr2e1NTWtBxKJ+qk5N61J7caYoepHFaxw=="
        );
        assert_eq!(p.sign_type, "RSA");
        assert_eq!(p.package, "prepay_id=wx201410272009395522657a690389285100");
        assert!(verify(&p, &key.verifying_key()));
        let mut tampered = p.clone();
        tampered.time_stamp = "1554208461".into();
        assert!(!verify(&tampered, &key.verifying_key()));
    }

    /// The official APP `sign` example signs the bare prepay_id on line 4.
    #[test]
    fn official_app_sign() {
        let key = MerchantKey::from_pem(include_str!("vectors/official_doc_key.pem")).unwrap();
        let message = pay_sign_message(
            "wx2421b1c4370ec43b",
            "1554208460",
            "593BEC0C930BF1AFEB40B4A08C8FB242",
            "wx201410272009395522657a690389285100",
        );
        assert_eq!(
            key.sign(&message),
            "gXx9KhTP6IooKV1SuG3OCGlBIgZbKtubCZvnau6khw1iffvNT28IzLbKmztq2xA/RCNbZa1XOsoiuVmAEeTZQicWfhv4P+O4oBRIrx0X9f3cnWFkMBU9alTWs0nyQ1N9fcILOTe0f4kxOhVh+/Xhn5hOiUK7Sz3XA1mcpa3R2NCWf/e+0ow/RDf15iTymOHgDrEkT/gedg/3E0iXfDX3mFicSZhrHESZDOTXcl9RzELREBUFznd/o2NQM99WcL86m23HY0cTy+QGWU4QDmNrbQ9ihmLW71qPb0Cx/d7EQvw/Kyx0A6s64ZQp3hHdcmiRcLnjVXrKCk7LShaCK+lS3Q=="
        );
    }
}
