//! Reading replies: the `return_code` / `result_code` layers, the reply signature, and typed
//! field access for the message modules.

use chrono::{DateTime, Utc};

use super::err_code::ErrCode;
use super::error::WxError;
use super::merchant::Merchant;
use super::money::Fen;
use super::sign;
use super::time;
use super::xml::{self, Fields};

/// Checks a reply body layer by layer and returns its fields when both layers say SUCCESS.
///
/// Order matters: FAIL replies are unsigned, so `return_code` is looked at first; a SUCCESS reply
/// must verify before anything in it (including `result_code`) is believed.
pub fn check_reply(body: &[u8], merchant: &Merchant) -> Result<Fields, WxError> {
    let fields = xml::parse(body).map_err(WxError::MalformedReply)?;
    check_fields(fields, merchant)
}

/// [`check_reply`] for a merchant with other appids bound to its mch_id (a Mini Program's): a
/// reply naming one of them is checked as that appid's, since WeChat may answer about an order
/// with the appid it was made under. Same key, so the signature check is unchanged.
pub fn check_reply_bound(body: &[u8], merchant: &Merchant, bound_appids: &[String]) -> Result<Fields, WxError> {
    let fields = xml::parse(body).map_err(WxError::MalformedReply)?;
    match fields.get("appid") {
        Some(appid) if appid != merchant.appid && bound_appids.iter().any(|b| b == appid) => {
            let answering = merchant.with_appid(appid);
            check_fields(fields, &answering)
        }
        _ => check_fields(fields, merchant),
    }
}

/// [`check_reply`] on an already-parsed message.
pub fn check_fields(fields: Fields, merchant: &Merchant) -> Result<Fields, WxError> {
    match fields.get("return_code") {
        Some("SUCCESS") => {}
        Some("FAIL") => {
            return Err(WxError::ReturnFail { return_msg: fields.get("return_msg").unwrap_or_default().to_owned() });
        }
        _ => return Err(WxError::bad_field("return_code", "missing or not SUCCESS/FAIL")),
    }
    // Only the configured algorithm: a reply signed with the other one is not believed.
    sign::verify(fields.pairs(), &merchant.key, merchant.sign_type).map_err(WxError::BadReplySignature)?;
    check_merchant(&fields, merchant)?;
    match fields.get("result_code") {
        Some("SUCCESS") => Ok(fields),
        Some("FAIL") => Err(WxError::Business {
            code: ErrCode::parse(fields.get("err_code").unwrap_or_default()),
            description: fields.get("err_code_des").unwrap_or_default().to_owned(),
            reply: Box::new(fields),
        }),
        _ => Err(WxError::bad_field("result_code", "missing or not SUCCESS/FAIL")),
    }
}

/// A signed message naming another appid or mch_id is not for us.
pub fn check_merchant(fields: &Fields, merchant: &Merchant) -> Result<(), WxError> {
    for (field, ours) in [("appid", &merchant.appid), ("mch_id", &merchant.mch_id)] {
        if let Some(got) = fields.get(field)
            && got != ours
        {
            return Err(WxError::ForeignReply { field, got: got.to_owned() });
        }
    }
    Ok(())
}

pub(crate) fn req_str(f: &Fields, key: &str) -> Result<String, WxError> {
    f.require(key).map(str::to_owned).map_err(|_| WxError::bad_field(key, "missing"))
}

pub(crate) fn opt_str(f: &Fields, key: &str) -> Option<String> {
    f.get(key).filter(|v| !v.is_empty()).map(str::to_owned)
}

pub(crate) fn req_fen(f: &Fields, key: &str) -> Result<Fen, WxError> {
    let raw = f.require(key).map_err(|_| WxError::bad_field(key, "missing"))?;
    Fen::parse_api(raw).map_err(|e| WxError::bad_field(key, e.to_string()))
}

pub(crate) fn opt_fen(f: &Fields, key: &str) -> Result<Option<Fen>, WxError> {
    match f.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(raw) => Fen::parse_api(raw).map(Some).map_err(|e| WxError::bad_field(key, e.to_string())),
    }
}

pub(crate) fn opt_compact_time(f: &Fields, key: &str) -> Result<Option<DateTime<Utc>>, WxError> {
    match f.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(raw) => time::parse_compact(raw).map(Some).map_err(|e| WxError::bad_field(key, e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::sign::{ApiKey, SignType};

    fn merchant() -> Merchant {
        Merchant {
            appid: "wx2421b1c4370ec43b".into(),
            mch_id: "10000100".into(),
            key: ApiKey::new("192006250b4c09247ec02edce69f6a2d").unwrap(),
            sign_type: SignType::Md5,
        }
    }

    fn signed(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut f: Fields = pairs.iter().copied().collect();
        f.insert("sign", merchant().sign(&f));
        f.to_xml().into_bytes()
    }

    #[test]
    fn layers_are_checked_in_order() {
        let fail = b"<xml><return_code>FAIL</return_code><return_msg>\xe7\xad\xbe\xe5\x90\x8d\xe9\x94\x99\xe8\xaf\xaf</return_msg></xml>";
        assert!(
            matches!(check_reply(fail, &merchant()), Err(WxError::ReturnFail { return_msg }) if return_msg == "签名错误")
        );

        let ok = signed(&[
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("appid", "wx2421b1c4370ec43b"),
            ("prepay_id", "wx1"),
        ]);
        assert_eq!(check_reply(&ok, &merchant()).unwrap().get("prepay_id"), Some("wx1"));

        let business = signed(&[
            ("return_code", "SUCCESS"),
            ("result_code", "FAIL"),
            ("err_code", "ORDERPAID"),
            ("err_code_des", "该订单已支付"),
        ]);
        let err = check_reply(&business, &merchant()).unwrap_err();
        assert_eq!(err.err_code(), Some(ErrCode::ORDERPAID));
        assert!(!err.is_retryable());

        let foreign = signed(&[("return_code", "SUCCESS"), ("result_code", "SUCCESS"), ("mch_id", "999")]);
        assert!(matches!(check_reply(&foreign, &merchant()), Err(WxError::ForeignReply { field: "mch_id", .. })));
    }

    #[test]
    fn a_reply_may_name_a_bound_appid_and_no_other() {
        let naming = |appid: &str| {
            signed(&[
                ("return_code", "SUCCESS"),
                ("result_code", "SUCCESS"),
                ("appid", appid),
                ("trade_state", "SUCCESS"),
            ])
        };
        let bound = ["wx5f1a7c3e9b2d4068".to_owned()];
        assert!(check_reply_bound(&naming("wx5f1a7c3e9b2d4068"), &merchant(), &bound).is_ok());
        assert!(check_reply_bound(&naming("wx2421b1c4370ec43b"), &merchant(), &bound).is_ok());
        let stranger = check_reply_bound(&naming("wx0000000000000001"), &merchant(), &bound);
        assert!(matches!(stranger, Err(WxError::ForeignReply { field: "appid", .. })), "{stranger:?}");
        let unbound = check_reply_bound(&naming("wx5f1a7c3e9b2d4068"), &merchant(), &[]);
        assert!(matches!(unbound, Err(WxError::ForeignReply { field: "appid", .. })));
    }

    #[test]
    fn a_reply_signed_with_the_other_algorithm_is_rejected() {
        let pairs = [("return_code", "SUCCESS"), ("result_code", "SUCCESS"), ("prepay_id", "wx1")];
        let with_type = |m: &Merchant, sign_type: Option<SignType>| {
            let mut f: Fields = pairs.iter().copied().collect();
            if let Some(st) = sign_type {
                f.insert("sign_type", st.as_str());
            }
            f.insert("sign", sign::sign(f.pairs(), &m.key, m.sign_type));
            f.to_xml().into_bytes()
        };
        for (configured, other) in [(SignType::HmacSha256, SignType::Md5), (SignType::Md5, SignType::HmacSha256)] {
            let ours = Merchant { sign_type: configured, ..merchant() };
            let theirs = Merchant { sign_type: other, ..merchant() };
            assert!(check_reply(&with_type(&ours, None), &ours).is_ok());
            assert!(check_reply(&with_type(&ours, Some(configured)), &ours).is_ok());
            for body in [with_type(&theirs, None), with_type(&theirs, Some(other)), with_type(&ours, Some(other))] {
                let err = check_reply(&body, &ours).unwrap_err();
                assert!(matches!(err, WxError::BadReplySignature(_)), "{configured}: {err:?}");
            }
        }
    }

    #[test]
    fn a_tampered_or_unsigned_success_is_rejected() {
        let mut body =
            String::from_utf8(signed(&[("return_code", "SUCCESS"), ("result_code", "SUCCESS"), ("total_fee", "1")]))
                .unwrap();
        body = body.replace("<total_fee>1<", "<total_fee>2<");
        assert!(matches!(check_reply(body.as_bytes(), &merchant()), Err(WxError::BadReplySignature(_))));
        let unsigned = b"<xml><return_code>SUCCESS</return_code><result_code>SUCCESS</result_code></xml>";
        assert!(matches!(check_reply(unsigned, &merchant()), Err(WxError::BadReplySignature(_))));
    }
}
