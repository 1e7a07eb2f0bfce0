//! Tests of the bill parser, by area: every layout in `layouts`, how the text is read in `text`,
//! the error paths in `errors`. The helpers below build bills for all three.

use super::*;

mod errors;
mod layouts;
mod text;

/// The reference bill of the protocol notes (§9.3): one row under a summary that claims three.
const SAMPLE: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n\
`2021-01-28 17:07:11,`wx81be3101902f7cb2,`1601959334,`0,`,`4200000925202101284997714292,`S20210128170702357723,`ofyak5qR_1wYsC99CsWA6R9MJazA,`NATIVE,`SUCCESS,`OTHERS,`CNY,`0.01,`0.00,`0,`0,`0.00,`0.00,`,`,`for testing,`cipher code,`0.00000,`1.00%,`0.01,`0.00,`\r\n\
总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n\
`3,`0.03,`0.00,`0.00,`0.00000,`0.03,`0.00\r\n";

/// Rows until the first error, and how the bill ended.
fn parse(text: &str) -> (Vec<BillRow>, Result<BillSummary, BillError>) {
    parse_bytes(text.as_bytes())
}

fn parse_bytes(bytes: &[u8]) -> (Vec<BillRow>, Result<BillSummary, BillError>) {
    let mut reader = match BillReader::new(bytes) {
        Ok(reader) => reader,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut rows = Vec::new();
    for row in reader.by_ref() {
        match row {
            Ok(row) => rows.push(row),
            Err(_) => break,
        }
    }
    (rows, reader.finish())
}

fn error_of(text: &str) -> BillError {
    parse(text).1.expect_err("the bill should be refused")
}

fn fen(v: i64) -> Fen {
    Fen::new(v)
}

/// A valid payment-row value for a header name; tests override what they look at.
fn default_value(name: &str) -> &'static str {
    match name {
        "交易时间" => "2024-05-01 12:00:00",
        "公众账号ID" => "wx2421b1c4370ec43b",
        "商户号" => "1900000109",
        "特约商户号" | "子商户号" => "0",
        "微信订单号" => "4200000001202405011234567890",
        "商户订单号" => "T1",
        "用户标识" => "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "交易类型" => "JSAPI",
        "交易状态" => "SUCCESS",
        "付款银行" => "CMB_CREDIT",
        "货币种类" => "CNY",
        "应结订单金额" | "总金额" | "订单金额" => "1.00",
        "微信退款单号" | "商户退款单号" => "0",
        "商品名称" => "腾讯充值中心-QQ会员充值",
        "手续费" => "0.01000",
        "费率" => "0.60%",
        n if n.contains("金额") => "0.00",
        _ => "",
    }
}

/// A backtick-prefixed line for `header`, with `values` overriding the defaults by column name.
fn row_for(header: &str, values: &[(&str, &str)]) -> String {
    let cells: Vec<String> = header
        .split(',')
        .map(|name| {
            let value = values.iter().find(|(n, _)| *n == name).map_or(default_value(name), |(_, v)| *v);
            format!("`{value}")
        })
        .collect();
    cells.join(",")
}

fn summary_for(header: &str, values: &[&str]) -> String {
    let cells: Vec<String> = values.iter().map(|v| format!("`{v}")).collect();
    format!("{header}\r\n{}\r\n", cells.join(","))
}

fn bill(header: &str, rows: &[String], summary_header: &str, summary: &[&str]) -> String {
    let mut text = format!("{header}\r\n");
    for row in rows {
        text.push_str(row);
        text.push_str("\r\n");
    }
    text.push_str(&summary_for(summary_header, summary));
    text
}
