//! The simulator's WeChat Pay API over real HTTP, driven with raw requests where the product's
//! client cannot go: protocol failures, business errors, reentry, closeorder's 5-minute rule,
//! refunds and refund queries, the refund notify, bills, and API faults.

#[path = "common/simulator_support.rs"]
mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use support::*;
use wechat_checkout::simulator::{Faults, Outcome, SimError, SimulatorHandle};
use wechat_checkout::wxpay::refund_notify::parse_refund_notify;
use wechat_checkout::wxpay::reply::check_reply;
use wechat_checkout::wxpay::types::RefundStatus;
use wechat_checkout::wxpay::{SignType, time};

fn assert_protocol_fail(r: &Raw, msg: &str) {
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/xml"), "{}", r.content_type);
    let f = r.fields();
    assert_eq!(f.get("return_code"), Some("FAIL"), "{}", r.text());
    assert_eq!(f.get("return_msg"), Some(msg), "{}", r.text());
    assert!(f.get("sign").is_none(), "protocol failures are unsigned");
}

#[tokio::test]
async fn protocol_layer_failures_are_unsigned_fail_replies() {
    let sim = start(fast()).await;
    let url = format!("{}/pay/unifiedorder", sim.api_base());
    assert_protocol_fail(&post_raw(&url, Vec::new()).await, "post数据为空");
    assert_protocol_fail(&post_raw(&url, b"<xml><body>\xb2\xe2\xca\xd4</body></xml>".to_vec()).await, "编码格式错误");
    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><mch_id>&x;</mch_id></xml>";
    assert_protocol_fail(&post_raw(&url, xxe).await, "XML格式错误");
    assert_protocol_fail(&post_raw(&url, "<xml><a>1</a>").await, "XML格式错误");
    assert_protocol_fail(&get_raw(&url).await, "请使用post方法");
    assert_protocol_fail(&get_raw(&format!("{}/secapi/pay/refund", sim.api_base())).await, "请使用post方法");

    let m = merchant(SignType::Md5);
    let mut signed = m.signed_request(vec![("out_trade_no", "P1".into())]);
    let good = signed.to_xml();
    signed.insert("out_trade_no", "P2");
    assert_protocol_fail(&post_raw(&url, signed.to_xml()).await, "签名错误");
    signed.remove("sign");
    assert_protocol_fail(&post_raw(&url, signed.to_xml()).await, "签名错误");
    assert_protocol_fail(&post_raw(&url, good.replace("10000100", "19999999")).await, "mch_id参数格式错误");
    assert_protocol_fail(
        &post_raw(&url, good.replace("wxd930ea5d5a258f4f", "wx0000000000000000")).await,
        "appid和mch_id不匹配",
    );
    let mut no_appid = m.signed_request(vec![]);
    no_appid.remove("appid");
    assert_protocol_fail(&post_raw(&url, no_appid.to_xml()).await, "appid参数长度有误");
    assert_protocol_fail(&post_raw(&url, good.replace(">MD5<", ">SHA1<")).await, "sign_type参数格式错误");
    sim.shutdown().await;
}

#[tokio::test]
async fn business_errors_are_signed_and_precise() {
    let sim = start(fast()).await;
    let m = merchant(SignType::HmacSha256);
    let mut fields = order_fields("B1", "100", "https://shop.example/notify");
    fields.retain(|(k, _)| *k != "body");
    let body = m.signed_request(fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()).to_xml();
    let r = post_raw(&format!("{}/pay/unifiedorder", sim.api_base()), body).await;
    let err = check_reply(&r.body, &m).expect_err("LACK_PARAMS is a business failure");
    assert_eq!(err.err_code().map(|c| c.as_str().to_owned()).as_deref(), Some("LACK_PARAMS"));
    let f = r.fields();
    assert_eq!(f.get("err_code_des"), Some("缺少参数body"));
    assert_eq!(f.get("sign").map(str::len), Some(64), "signed with the request's HMAC-SHA256");

    let mut no_openid = order_fields("B2", "100", "https://shop.example/notify");
    no_openid.retain(|(k, _)| *k != "openid");
    let f = call(&sim, "/pay/unifiedorder", &m, &no_openid).await;
    assert_eq!((result(&f), f.get("err_code_des")), (("FAIL", "LACK_PARAMS"), Some("JSAPI支付必须传openid")));
    for (k, v) in [
        ("total_fee", "0.01"),
        ("total_fee", "0"),
        ("total_fee", "-1"),
        ("out_trade_no", "订单1"),
        ("notify_url", "https://shop.example/notify?x=1"),
        ("spbill_create_ip", "not-an-ip"),
        ("trade_type", "PAYPAL"),
    ] {
        let mut fields = order_fields("B3", "100", "https://shop.example/notify");
        fields.retain(|(key, _)| *key != k);
        fields.push((k, v));
        let f = call(&sim, "/pay/unifiedorder", &m, &fields).await;
        assert_eq!(result(&f), ("FAIL", "INVALID_REQUEST"), "{k}={v}: {f:?}");
        assert!(f.get("err_code_des").is_some_and(|d| d.contains(k)), "{k}: {f:?}");
    }
    let f = call(&sim, "/pay/orderquery", &m, &[]).await;
    assert_eq!(result(&f), ("FAIL", "LACK_PARAMS"));
    let f = call(&sim, "/pay/orderquery", &m, &[("out_trade_no", "NOPE")]).await;
    assert_eq!((result(&f), f.get("err_code_des")), (("FAIL", "ORDERNOTEXIST"), Some("order not exist")));
    sim.shutdown().await;
}

#[tokio::test]
async fn reentry_returns_the_same_prepay_or_refuses() {
    let sim = start(fast()).await;
    let m = merchant(SignType::Md5);
    let url = "https://shop.example/notify";
    let first = prepay(&sim, &m, "RE1", "1990", url).await;
    assert!(first.starts_with("wx") && first.len() <= 64, "{first}");
    assert_eq!(prepay(&sim, &m, "RE1", "1990", url).await, first, "identical request, new nonce: same prepay");
    let f = call(&sim, "/pay/unifiedorder", &m, &order_fields("RE1", "1991", url)).await;
    assert_eq!((result(&f), f.get("err_code_des")), (("FAIL", "INVALID_REQUEST"), Some("201 商户订单号重复")));
    let mut native = order_fields("RE1", "1990", url);
    native.retain(|(k, _)| *k != "trade_type");
    native.extend([("trade_type", "NATIVE"), ("product_id", "P1")]);
    let f = call(&sim, "/pay/unifiedorder", &m, &native).await;
    assert_eq!((result(&f), f.get("err_code_des")), (("FAIL", "OUT_TRADE_NO_USED"), Some("商户订单号重复")));

    // After two hours the same request gets a new prepay; the old one can no longer be paid.
    sim.sim.advance_clock(Duration::from_secs(2 * 3600 + 1));
    let renewed = prepay(&sim, &m, "RE1", "1990", url).await;
    assert_ne!(renewed, first);
    assert_eq!(sim.sim.pay(&first, Outcome::Ok).await, Err(SimError::PrepayExpired));
    sim.sim.pay(&renewed, Outcome::Ok).await.unwrap();
    let f = call(&sim, "/pay/unifiedorder", &m, &order_fields("RE1", "1990", url)).await;
    assert_eq!((result(&f), f.get("err_code_des")), (("FAIL", "ORDERPAID"), Some("该订单已支付")));
    sim.shutdown().await;
}

#[tokio::test]
async fn query_and_the_five_minute_close_rule() {
    let sim = start(fast()).await;
    let m = merchant(SignType::Md5);
    let p = prepay(&sim, &m, "CL1", "500", "https://shop.example/notify").await;
    let f = call(&sim, "/pay/orderquery", &m, &[("out_trade_no", "CL1")]).await;
    assert_eq!(
        (f.get("trade_state"), f.get("total_fee"), f.get("transaction_id")),
        (Some("NOTPAY"), Some("500"), None)
    );
    let f = call(&sim, "/pay/closeorder", &m, &[("out_trade_no", "CL1")]).await;
    assert_eq!((result(&f), f.get("err_code_des")), (("FAIL", "TRADE_STATE_ERROR"), Some("订单创建后5分钟内不能关单")));
    sim.sim.advance_clock(Duration::from_secs(5 * 60));
    let f = call(&sim, "/pay/closeorder", &m, &[("out_trade_no", "CL1")]).await;
    assert_eq!(result(&f), ("SUCCESS", "-"), "{f:?}");
    let f = call(&sim, "/pay/orderquery", &m, &[("out_trade_no", "CL1")]).await;
    assert_eq!(f.get("trade_state"), Some("CLOSED"));
    let f = call(&sim, "/pay/closeorder", &m, &[("out_trade_no", "CL1")]).await;
    assert_eq!(result(&f), ("FAIL", "ORDERCLOSED"));
    let f = call(&sim, "/pay/unifiedorder", &m, &order_fields("CL1", "500", "https://shop.example/notify")).await;
    assert_eq!(result(&f), ("FAIL", "ORDERCLOSED"));
    assert_eq!(sim.sim.pay(&p, Outcome::Ok).await, Err(SimError::OrderClosed));
    let f = call(&sim, "/pay/closeorder", &m, &[("out_trade_no", "CL404")]).await;
    assert_eq!(result(&f), ("FAIL", "ORDERNOTEXIST"));

    let p = prepay(&sim, &m, "CL2", "500", "https://shop.example/notify").await;
    let paid = sim.sim.pay(&p, Outcome::Ok).await.unwrap();
    let tx = paid.transaction_id.unwrap();
    assert!(tx.len() == 28 && tx.starts_with("42000"), "{tx}");
    // transaction_id wins over out_trade_no.
    let f = call(&sim, "/pay/orderquery", &m, &[("transaction_id", &tx), ("out_trade_no", "CL1")]).await;
    assert_eq!((f.get("trade_state"), f.get("out_trade_no")), (Some("SUCCESS"), Some("CL2")));
    assert_eq!(
        (f.get("cash_fee"), f.get("bank_type"), f.get("is_subscribe")),
        (Some("500"), Some("OTHERS"), Some("N"))
    );
    assert_eq!(f.get("time_end").map(str::len), Some(14));
    sim.sim.advance_clock(Duration::from_secs(5 * 60));
    let f = call(&sim, "/pay/closeorder", &m, &[("out_trade_no", "CL2")]).await;
    assert_eq!(result(&f), ("FAIL", "ORDERPAID"));
    sim.shutdown().await;
}

fn refund_fields<'a>(no: &'a str, total: &'a str, fee: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![("out_trade_no", "RF1"), ("out_refund_no", no), ("total_fee", total), ("refund_fee", fee)]
}

#[tokio::test]
async fn refund_rules_and_idempotency() {
    let sim = start(fast()).await;
    let m = merchant(SignType::Md5);
    let refund = |no: &'static str, total: &'static str, fee: &'static str| {
        let sim = &sim;
        let m = &m;
        async move { call(sim, "/secapi/pay/refund", m, &refund_fields(no, total, fee)).await }
    };
    prepay(&sim, &m, "RF1", "100", "https://shop.example/notify").await;
    assert_eq!(result(&refund("R0", "100", "10").await), ("FAIL", "ORDERNOTEXIST"), "unpaid orders cannot be refunded");
    let p = sim.sim.order("RF1").unwrap().prepay_id;
    sim.sim.pay(&p, Outcome::Ok).await.unwrap();

    let f = call(&sim, "/secapi/pay/refund", &m, &[("out_trade_no", "RF1"), ("total_fee", "100"), ("refund_fee", "1")])
        .await;
    assert_eq!(result(&f), ("FAIL", "LACK_PARAMS"));
    assert_eq!(result(&refund("R1", "99", "10").await), ("FAIL", "PARAM_ERROR"));
    assert_eq!(result(&refund("R1", "100", "0").await), ("FAIL", "PARAM_ERROR"));
    let first = refund("R1", "100", "60").await;
    assert_eq!(result(&first), ("SUCCESS", "-"), "{first:?}");
    let refund_id = first.get("refund_id").unwrap().to_owned();
    assert!(refund_id.len() == 29 && refund_id.starts_with("50"), "{refund_id}");
    // The same out_refund_no with the same amounts is the same refund.
    assert_eq!(refund("R1", "100", "60").await.get("refund_id"), Some(refund_id.as_str()));
    let f = refund("R1", "100", "50").await;
    assert_eq!(
        (result(&f), f.get("err_code_des")),
        (("FAIL", "PARAM_ERROR"), Some("订单金额或退款金额与之前请求不一致，请核实后再试"))
    );
    assert_eq!(result(&refund("R2", "100", "40").await), ("FAIL", "INVALID_REQ_TOO_MUCH"));
    sim.sim.advance_clock(Duration::from_secs(61));
    let f = refund("R2", "100", "41").await;
    assert_eq!((result(&f), f.get("err_code_des")), (("FAIL", "ERROR"), Some("累计退款金额大于支付金额")));
    assert_eq!(result(&refund("R2", "100", "40").await), ("SUCCESS", "-"));
    sim.sim.advance_clock(Duration::from_secs(61));
    let f = refund("R3", "100", "1").await;
    assert_eq!((result(&f), f.get("err_code_des")), (("FAIL", "ERROR"), Some("订单已全额退款")));

    let f = call(&sim, "/pay/orderquery", &m, &[("out_trade_no", "RF1")]).await;
    assert_eq!(f.get("trade_state"), Some("REFUND"));
    let f = call(&sim, "/pay/refundquery", &m, &[("out_trade_no", "RF1")]).await;
    assert_eq!((f.get("refund_count"), f.get("total_refund_count")), (Some("2"), Some("2")));
    assert_eq!((f.get("out_refund_no_0"), f.get("refund_fee_1")), (Some("R1"), Some("40")));
    assert_eq!((f.get("refund_channel_0"), f.get("refund_recv_accout_0")), (Some("ORIGINAL"), Some("支付用户零钱")));
    let f = call(&sim, "/pay/refundquery", &m, &[("refund_id", &refund_id), ("out_trade_no", "nope")]).await;
    assert_eq!((f.get("refund_count"), f.get("out_refund_no_0")), (Some("1"), Some("R1")));
    let f = call(&sim, "/pay/refundquery", &m, &[("offset", "10"), ("out_trade_no", "RF1")]).await;
    assert_eq!(result(&f), ("FAIL", "REFUNDNOTEXIST"));
    let f = call(&sim, "/pay/refundquery", &m, &[("out_refund_no", "R9")]).await;
    assert_eq!(result(&f), ("FAIL", "REFUNDNOTEXIST"));
    assert_eq!(result(&call(&sim, "/pay/refundquery", &m, &[]).await), ("FAIL", "LACK_PARAMS"));
    sim.shutdown().await;
}

#[tokio::test]
async fn refunds_settle_and_send_an_encrypted_refund_notify() {
    let sim = start(fast()).await;
    let rx = receiver(vec![(200, NOTIFY_OK)]).await;
    let m = merchant(SignType::HmacSha256);
    let p = prepay(&sim, &m, "RN1", "300", "https://shop.example/notify").await;
    sim.sim.pay(&p, Outcome::Ok).await.unwrap();
    let mut fields = refund_fields("RN-R1", "300", "120");
    fields[0] = ("out_trade_no", "RN1");
    fields.push(("notify_url", &rx.url));
    let f = call(&sim, "/secapi/pay/refund", &m, &fields).await;
    assert_eq!(result(&f), ("SUCCESS", "-"));
    let got = rx.wait_for(1).await;
    let n = parse_refund_notify(got[0].body.as_bytes(), &m).expect("the refund notify decrypts");
    assert_eq!((n.out_trade_no.as_str(), n.out_refund_no.as_str()), ("RN1", "RN-R1"));
    assert_eq!((n.refund_fee.get(), n.total_fee.get(), n.refund_status), (120, 300, RefundStatus::Success));
    assert_eq!(n.recv_account.as_deref(), Some("支付用户零钱"));
    assert_eq!(n.request_source.as_deref(), Some("API"));
    assert!(n.success_time.is_some() && n.outer.get("sign").is_none());
    assert!(got[0].content_type.starts_with("text/xml"));
    let f = call(&sim, "/pay/refundquery", &m, &[("out_refund_no", "RN-R1")]).await;
    assert_eq!(f.get("refund_status_0"), Some("SUCCESS"));
    assert_eq!(f.get("refund_success_time_0").map(str::len), Some(19));

    // A forced outcome sends a second notify.
    sim.sim.settle_refund("RN-R1", RefundStatus::Change).await.unwrap();
    let got = rx.wait_for(2).await;
    assert_eq!(parse_refund_notify(got[1].body.as_bytes(), &m).unwrap().refund_status, RefundStatus::Change);
    assert!(sim.sim.settle_refund("nope", RefundStatus::Success).await.is_err());
    sim.shutdown().await;
}

fn beijing_instant(d: NaiveDate, h: u32, min: u32) -> chrono::DateTime<Utc> {
    time::beijing().from_local_datetime(&d.and_hms_opt(h, min, 0).unwrap()).unwrap().with_timezone(&Utc)
}

fn advance_to(sim: &SimulatorHandle, t: chrono::DateTime<Utc>) {
    let by = (t - sim.sim.now()).to_std().expect("the simulated clock only moves forward");
    sim.sim.advance_clock(by);
}

async fn bill(sim: &SimulatorHandle, date: &str, bill_type: &str, tar: &str) -> Raw {
    let m = merchant(SignType::Md5);
    let body = m
        .signed_request(vec![
            ("bill_date", date.to_owned()),
            ("bill_type", bill_type.to_owned()),
            ("tar_type", tar.to_owned()),
        ])
        .to_xml();
    post_raw(&format!("{}/pay/downloadbill", sim.api_base()), body).await
}

fn bill_error(r: &Raw) -> (String, String) {
    let f = r.fields();
    assert_eq!(f.get("return_code"), Some("FAIL"));
    assert!(f.get("sign").is_none() && f.get("err_code").is_none());
    (f.get("return_msg").unwrap_or_default().to_owned(), f.get("error_code").unwrap_or_default().to_owned())
}

#[tokio::test]
async fn bills_errors_and_a_successful_all_bill() {
    let sim = start(fast()).await;
    let m = merchant(SignType::Md5);
    // Day D starts tomorrow (Beijing): pay two orders and refund one at noon.
    let day = time::beijing_date(sim.sim.now()).succ_opt().unwrap();
    advance_to(&sim, beijing_instant(day, 12, 0));
    for (no, fee) in [("BL1", "1990"), ("BL2", "1")] {
        let p = prepay(&sim, &m, no, fee, "https://shop.example/notify").await;
        sim.sim.pay(&p, Outcome::Ok).await.unwrap();
    }
    let f = call(
        &sim,
        "/secapi/pay/refund",
        &m,
        &[("out_trade_no", "BL1"), ("out_refund_no", "BL1-R"), ("total_fee", "1990"), ("refund_fee", "990")],
    )
    .await;
    assert_eq!(result(&f), ("SUCCESS", "-"));
    // The refund settles on a timer (10 ms at this speed); on a loaded machine it could settle
    // between the two downloads below, which must see the same bill.
    let mut settled = false;
    for _ in 0..500 {
        let q = call(&sim, "/pay/refundquery", &m, &[("out_refund_no", "BL1-R")]).await;
        if q.get("refund_status_0") == Some("SUCCESS") {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(settled, "the refund settles");
    let d = time::format_bill_date(day);
    let next = time::format_bill_date(day.succ_opt().unwrap());
    let before = time::format_bill_date(day.pred_opt().unwrap());

    advance_to(&sim, beijing_instant(day.succ_opt().unwrap(), 8, 0));
    assert_eq!(bill_error(&bill(&sim, &d, "ALL", "").await), ("Bill Creating".into(), "20002".into()));
    assert_eq!(bill_error(&bill(&sim, &next, "ALL", "").await).0, "invalid bill_date", "today");
    assert_eq!(bill_error(&bill(&sim, "20990101", "ALL", "").await).0, "invalid bill_date", "future");
    assert_eq!(bill_error(&bill(&sim, "2024-1-1", "ALL", "").await).0, "invalid bill_date");
    let old = time::format_bill_date(day.checked_sub_months(chrono::Months::new(4)).unwrap());
    assert_eq!(bill_error(&bill(&sim, &old, "ALL", "").await).0, "invalid bill_date", "older than 3 months");
    assert_eq!(bill_error(&bill(&sim, &d, "EVERYTHING", "").await).0, "invalid bill_type");
    assert_eq!(bill_error(&bill(&sim, &d, "ALL", "ZIP").await).0, "invalid tar_type");
    assert_eq!(bill_error(&bill(&sim, &before, "ALL", "").await), ("No Bill Exist".into(), "20002".into()));

    advance_to(&sim, beijing_instant(day.succ_opt().unwrap(), 10, 5));
    let plain = bill(&sim, &d, "ALL", "").await;
    assert_eq!(plain.status, 200);
    assert!(plain.content_type.starts_with("text/plain"), "{}", plain.content_type);
    let text = plain.text();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 6, "header, 3 rows, summary header, totals:\n{text}");
    assert!(lines[0].starts_with("交易时间,公众账号ID,商户号"));
    assert!(text.contains("`BL1,") && text.contains("`BL2,") && text.contains("`BL1-R,"));
    assert!(lines[5].starts_with("`3,"), "{}", lines[5]);
    let gz = bill(&sim, &d, "ALL", "GZIP").await;
    assert_eq!(gz.content_type, "application/x-gzip");
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&gz.body[..]).read_to_string(&mut unzipped).unwrap();
    assert_eq!(unzipped, text);
    let refunds = bill(&sim, &d, "REFUND", "").await.text();
    assert!(refunds.contains("`BL1-R,") && !refunds.contains("`BL2,"));

    sim.sim.set_faults(Faults { bill_creating: true, ..Faults::default() });
    assert_eq!(bill_error(&bill(&sim, &d, "ALL", "").await).0, "Bill Creating");
    sim.shutdown().await;
}

#[tokio::test]
async fn api_faults_systemerror_garbled_and_slow() {
    let sim = start(fast()).await;
    let m = merchant(SignType::Md5);
    let url = "https://shop.example/notify";
    sim.sim.set_faults(Faults { system_error_rate: 1.0, ..Faults::default() });
    let body = m.signed_request(order_fields("F1", "100", url).iter().map(|(k, v)| (*k, (*v).to_owned())).collect());
    let r = post_raw(&format!("{}/pay/unifiedorder", sim.api_base()), body.to_xml()).await;
    let err = check_reply(&r.body, &m).unwrap_err();
    assert_eq!(err.err_code().map(|c| c.as_str().to_owned()).as_deref(), Some("SYSTEMERROR"));
    assert_eq!(r.fields().get("err_code_des"), Some("系统繁忙,请稍后再试"));
    sim.sim.set_faults(Faults::default());
    assert!(sim.sim.order("F1").is_none(), "a SYSTEMERROR changes nothing");

    sim.sim.set_faults(Faults { garbled_rate: 1.0, ..Faults::default() });
    let r = post_raw(&format!("{}/pay/unifiedorder", sim.api_base()), body.to_xml()).await;
    assert_eq!(r.status, 200);
    assert!(wechat_checkout::wxpay::xml::parse(&r.body).is_err(), "{}", r.text());
    assert!(sim.sim.order("F1").is_some(), "a garbled reply still processed the request");

    sim.sim.set_faults(Faults { slow_rate: 1.0, slow_ms: 300, ..Faults::default() });
    let started = Instant::now();
    let r = post_raw(&format!("{}/pay/unifiedorder", sim.api_base()), body.to_xml()).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.fields().get("prepay_id"), Some(sim.sim.order("F1").unwrap().prepay_id.as_str()));
    sim.shutdown().await;
}
