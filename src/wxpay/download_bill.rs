//! `POST /pay/downloadbill`: the request, and how its two kinds of reply are told apart (an XML
//! error document, or the bill itself as text or GZIP).

use chrono::NaiveDate;

use super::error::WxError;
use super::time;
use super::types::BillType;
use super::xml;

pub const PATH: &str = "/pay/downloadbill";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadBill {
    pub bill_date: NaiveDate,
    pub bill_type: BillType,
    pub gzip: bool,
    pub device_info: Option<String>,
}

impl DownloadBill {
    pub fn business_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("bill_date", time::format_bill_date(self.bill_date)),
            // Always sent: some merchants found it effectively required (jasl/wx_pay#37).
            ("bill_type", self.bill_type.as_str().to_owned()),
            ("tar_type", if self.gzip { "GZIP".to_owned() } else { String::new() }),
            ("device_info", self.device_info.clone().unwrap_or_default()),
        ]
    }
}

/// Where a downloaded bill went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BillDownload {
    /// The bill was written to the destination file; `gzip` says whether it is compressed.
    Written { bytes: u64, gzip: bool },
    /// "No Bill Exist": no successful trade that day, which is an empty bill, not a failure.
    NoBill,
}

/// Whether the first bytes of a reply are an XML error document rather than a bill.
pub fn looks_like_xml_error(prefix: &[u8]) -> bool {
    let trimmed = prefix.iter().position(|b| !b.is_ascii_whitespace()).map_or(&prefix[..0], |i| &prefix[i..]);
    trimmed.starts_with(b"<xml") || trimmed.starts_with(b"<?xml")
}

/// Whether bytes start with the GZIP magic number.
pub fn is_gzip(prefix: &[u8]) -> bool {
    prefix.starts_with(&[0x1f, 0x8b])
}

/// Interprets the XML error document of a failed download (unsigned; note `error_code`, not
/// `err_code`).
pub fn classify_error(body: &[u8]) -> Result<BillDownload, WxError> {
    let fields = xml::parse(body).map_err(WxError::MalformedReply)?;
    let msg = fields.get("return_msg").unwrap_or_default();
    match msg.trim().to_ascii_lowercase().as_str() {
        "no bill exist" => Ok(BillDownload::NoBill),
        "bill creating" => Err(WxError::BillCreating),
        // Transient, per the documented list: retry with the same request.
        "system error" | "compressgzip error" | "uncompressgzip error" => Err(WxError::Business {
            code: super::err_code::ErrCode::SYSTEMERROR,
            description: msg.to_owned(),
            reply: Box::new(fields),
        }),
        _ => Err(WxError::ReturnFail {
            return_msg: format!("{msg} (error_code {})", fields.get("error_code").unwrap_or("none")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_are_classified() {
        let no_bill = b"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[No Bill Exist]]></return_msg><error_code><![CDATA[20002]]></error_code></xml>";
        assert_eq!(classify_error(no_bill).unwrap(), BillDownload::NoBill);
        let creating = b"<xml><return_code>FAIL</return_code><return_msg>Bill Creating</return_msg><error_code>20002</error_code></xml>";
        assert!(matches!(classify_error(creating), Err(WxError::BillCreating)));
        let system = b"<xml><return_code>FAIL</return_code><return_msg>system error</return_msg><error_code>20003</error_code></xml>";
        assert!(classify_error(system).unwrap_err().is_retryable());
        let invalid = b"<xml><return_code>FAIL</return_code><return_msg>invalid bill_date</return_msg><error_code>20001</error_code></xml>";
        assert!(matches!(classify_error(invalid), Err(WxError::ReturnFail { .. })));
    }

    #[test]
    fn reply_kinds() {
        assert!(looks_like_xml_error(b"\r\n<xml><return_code>"));
        assert!(!looks_like_xml_error("交易时间,".as_bytes()));
        assert!(is_gzip(&[0x1f, 0x8b, 8, 0]));
    }
}
