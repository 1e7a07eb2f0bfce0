//! The refund notify: an unsigned outer `<xml>` whose `req_info` is AES-256-ECB ciphertext
//! (key = lower-case hex MD5 of the API key, PKCS#7 padding) of a `<root>` document.
//! Authenticity rests on the decryption succeeding under our key, plus appid and mch_id.

use aes::Aes256;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyInit, block_padding::Pkcs7};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};

use super::merchant::Merchant;
use super::money::Fen;
use super::notify::{NotifyError, bad, check_merchant, optional, require};
use super::sign::{ApiKey, md5_lower_hex};
use super::time;
use super::types::RefundStatus;
use super::xml::{self, Fields, ReadOptions};

type Aes256EcbDec = ecb::Decryptor<Aes256>;
type Aes256EcbEnc = ecb::Encryptor<Aes256>;

/// A decrypted, checked refund notify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundNotify {
    pub transaction_id: String,
    pub out_trade_no: String,
    pub refund_id: String,
    pub out_refund_no: String,
    pub total_fee: Fen,
    pub refund_fee: Fen,
    pub settlement_refund_fee: Option<Fen>,
    pub refund_status: RefundStatus,
    /// `yyyy-MM-dd HH:mm:ss` in the message, unlike the other v2 times.
    pub success_time: Option<DateTime<Utc>>,
    pub recv_account: Option<String>,
    pub refund_account: Option<String>,
    pub request_source: Option<String>,
    /// The outer message as received.
    pub outer: Fields,
    /// The decrypted `<root>` fields.
    pub info: Fields,
}

fn aes_key(api_key: &ApiKey) -> [u8; 32] {
    let hex = md5_lower_hex(api_key.expose().as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(hex.as_bytes());
    key
}

/// Encrypts a `<root>` document into a `req_info` value (what WeChat does; the simulator uses it).
pub fn encrypt_req_info(root_xml: &str, api_key: &ApiKey) -> String {
    let cipher = Aes256EcbEnc::new(&aes_key(api_key).into());
    BASE64.encode(cipher.encrypt_padded_vec::<Pkcs7>(root_xml.as_bytes()))
}

/// Decrypts `req_info` and reads the `<root>` document inside.
pub fn decrypt_req_info(req_info: &str, api_key: &ApiKey) -> Result<Fields, NotifyError> {
    let cipher_bytes = BASE64.decode(req_info.trim()).map_err(|e| NotifyError::Decrypt(format!("not base64: {e}")))?;
    if cipher_bytes.is_empty() || cipher_bytes.len() % 16 != 0 {
        return Err(NotifyError::Decrypt("ciphertext is not a whole number of AES blocks".into()));
    }
    let plain = Aes256EcbDec::new(&aes_key(api_key).into())
        .decrypt_padded_vec::<Pkcs7>(&cipher_bytes)
        .map_err(|_| NotifyError::Decrypt("bad padding: wrong key or corrupted data".into()))?;
    let opts = ReadOptions { root: "root", ..ReadOptions::default() };
    xml::parse_with(&plain, opts)
        .map_err(|e| NotifyError::Decrypt(format!("decrypted data is not a <root> document: {e}")))
}

/// Parses, checks and decrypts a refund notify body.
pub fn parse_refund_notify(body: &[u8], merchant: &Merchant) -> Result<RefundNotify, NotifyError> {
    let outer = xml::parse(body)?;
    if outer.get("return_code") != Some("SUCCESS") {
        // req_info is absent on FAIL; reading it is a classic bug (WxJava#2442).
        return Err(NotifyError::ReturnFail(outer.get("return_msg").unwrap_or("missing return_code").to_owned()));
    }
    check_merchant(&outer, merchant)?;
    let info = decrypt_req_info(require(&outer, "req_info")?, &merchant.key)?;

    let fen = |field: &str| -> Result<Fen, NotifyError> {
        Fen::parse_api(require(&info, field)?).map_err(|e| bad(field, e.to_string()))
    };
    let status_raw = require(&info, "refund_status")?;
    let refund_status =
        RefundStatus::parse(status_raw).ok_or_else(|| bad("refund_status", format!("unknown value {status_raw:?}")))?;
    let success_time = match optional(&info, "success_time") {
        None => None,
        Some(t) => Some(time::parse_dashed(&t).map_err(|e| bad("success_time", e.to_string()))?),
    };
    let settlement_refund_fee = match optional(&info, "settlement_refund_fee") {
        None => None,
        Some(v) => Some(Fen::parse_api(&v).map_err(|e| bad("settlement_refund_fee", e.to_string()))?),
    };
    Ok(RefundNotify {
        transaction_id: require(&info, "transaction_id")?.to_owned(),
        out_trade_no: require(&info, "out_trade_no")?.to_owned(),
        refund_id: require(&info, "refund_id")?.to_owned(),
        out_refund_no: require(&info, "out_refund_no")?.to_owned(),
        total_fee: fen("total_fee")?,
        refund_fee: fen("refund_fee")?,
        settlement_refund_fee,
        refund_status,
        success_time,
        recv_account: optional(&info, "refund_recv_accout"),
        refund_account: optional(&info, "refund_account"),
        request_source: optional(&info, "refund_request_source"),
        outer,
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::sign::SignType;

    fn merchant(key: &str) -> Merchant {
        Merchant {
            appid: "wx2421b1c4370ec43b".into(),
            mch_id: "10000100".into(),
            key: ApiKey::new(key).unwrap(),
            sign_type: SignType::Md5,
        }
    }

    fn body(m: &Merchant) -> String {
        let root = xml::write_document(
            "root",
            [
                ("out_refund_no", "R1"),
                ("out_trade_no", "O1"),
                ("refund_account", "REFUND_SOURCE_RECHARGE_FUNDS"),
                ("refund_fee", "100"),
                ("refund_id", "50000000382019052709732678859"),
                ("refund_recv_accout", "支付用户零钱"),
                ("refund_request_source", "API"),
                ("refund_status", "SUCCESS"),
                ("settlement_refund_fee", "100"),
                ("settlement_total_fee", "300"),
                ("success_time", "2019-05-27 14:10:10"),
                ("total_fee", "300"),
                ("transaction_id", "4200000316201905271212345678"),
            ],
        );
        let req_info = encrypt_req_info(&root, &m.key);
        xml::write_document(
            "xml",
            [
                ("return_code", "SUCCESS"),
                ("appid", m.appid.as_str()),
                ("mch_id", m.mch_id.as_str()),
                ("nonce_str", "TeqClE3i0mvn3DrK"),
                ("req_info", req_info.as_str()),
            ],
        )
    }

    #[test]
    fn decrypts_with_the_right_key() {
        let m = merchant("192006250b4c09247ec02edce69f6a2d");
        let n = parse_refund_notify(body(&m).as_bytes(), &m).unwrap();
        assert_eq!(n.out_refund_no, "R1");
        assert_eq!(n.refund_fee, Fen::new(100));
        assert_eq!(n.refund_status, RefundStatus::Success);
        assert_eq!(n.recv_account.as_deref(), Some("支付用户零钱"));
        assert_eq!(time::format_dashed(n.success_time.unwrap()), "2019-05-27 14:10:10");
    }

    #[test]
    fn a_wrong_key_is_rejected() {
        let sender = merchant("192006250b4c09247ec02edce69f6a2d");
        let receiver = merchant("00000000000000000000000000000000");
        assert!(matches!(parse_refund_notify(body(&sender).as_bytes(), &receiver), Err(NotifyError::Decrypt(_))));
    }

    #[test]
    fn garbage_req_info_is_rejected() {
        let m = merchant("192006250b4c09247ec02edce69f6a2d");
        for junk in ["", "!!!", "AAAA", &BASE64.encode([0u8; 32])] {
            assert!(decrypt_req_info(junk, &m.key).is_err(), "{junk:?}");
        }
    }
}
