//! `GET /admin/orders.csv`: the order list under the same filters, streamed as CSV for Excel.
//!
//! Rows are read in keyset batches on the blocking pool and written as they come, so memory
//! stays flat however many orders match. The file is UTF-8 with a BOM (so Excel does not read it
//! as GBK), RFC 4180 quoted, with CRLF line ends, and every cell that a spreadsheet would take as
//! a formula is defused with a leading `'`.

use chrono::Utc;
use rocket::futures::stream::{self, Stream, StreamExt};
use rocket::http::{ContentType, Status};
use rocket::response::stream::ByteStream;
use rocket::response::{self, Responder};
use rocket::{Request, Response, State, get, routes};

use super::labels;
use super::orders::{ListParams, parse_filter};
use super::session::Staff;
use super::view::{beijing_time, opt_time};
use crate::domain::listing::{Key, ListFilter, ListedOrder};
use crate::error::AppError;
use crate::payments::Payments;
use crate::wxpay::time::beijing_date;

/// Rows read per database round trip.
pub const BATCH: usize = 1000;

const HEADER: [&str; 11] = [
    "创建时间",
    "商户订单号",
    "业务单号",
    "商品描述",
    "订单金额（元）",
    "状态",
    "状态代码",
    "支付时间",
    "微信支付单号",
    "实付金额（元）",
    "已退款金额（元）",
];

/// Written as the last line when reading fails part way: the response has already begun (200,
/// headers sent) and Rocket ends a failed stream like a finished one, so the file itself must say
/// that it is incomplete.
const INCOMPLETE: &str = "# 导出未完成：读取数据库时出错，此文件不完整，请重新导出\r\n";

pub fn routes() -> Vec<rocket::Route> {
    routes![get_orders_csv]
}

/// Whether a spreadsheet would evaluate a cell with this text (OWASP "CSV injection").
fn is_formula_like(value: &str) -> bool {
    matches!(value.chars().next(), Some('=' | '+' | '-' | '@' | '\t' | '\r'))
}

/// Appends one cell: a formula-like value gets a leading `'`, then the cell is quoted (inner
/// quotes doubled) when it holds a comma, a quote or a line break.
pub fn push_cell(line: &mut String, value: &str) {
    let guard = if is_formula_like(value) { "'" } else { "" };
    if value.contains([',', '"', '\n', '\r']) {
        line.push('"');
        line.push_str(guard);
        line.push_str(&value.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(guard);
        line.push_str(value);
    }
}

/// Appends one record and its CRLF.
pub fn push_record<'a>(out: &mut String, cells: impl IntoIterator<Item = &'a str>) {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_cell(out, cell);
    }
    out.push_str("\r\n");
}

fn push_order(out: &mut String, o: &ListedOrder) {
    let created = beijing_time(o.created_at);
    let amount = o.amount.to_yuan_string();
    let paid_at = opt_time(o.paid_at);
    let paid = o.paid.map(|f| f.to_yuan_string()).unwrap_or_default();
    let refunded = o.refunded.to_yuan_string();
    push_record(
        out,
        [
            created.as_str(),
            &o.out_trade_no,
            &o.merchant_order_id,
            &o.description,
            &amount,
            labels::order_state(o.state),
            o.state.as_str(),
            &paid_at,
            o.transaction_id.as_deref().unwrap_or(""),
            &paid,
            &refunded,
        ],
    );
}

fn encode(rows: &[ListedOrder]) -> Vec<u8> {
    let mut out = String::with_capacity(rows.len() * 200);
    for row in rows {
        push_order(&mut out, row);
    }
    out.into_bytes()
}

/// The BOM and the header line.
fn preamble() -> Vec<u8> {
    let mut out = String::from('\u{feff}');
    push_record(&mut out, HEADER);
    out.into_bytes()
}

/// Where the export stands between two chunks.
struct Cursor {
    payments: Payments,
    filter: ListFilter,
    /// The first batch, read before the response began so a failing database is a proper error.
    pending: Option<Vec<ListedOrder>>,
    after: Option<Key>,
    done: bool,
}

async fn next_chunk(mut cur: Cursor) -> Option<(Vec<u8>, Cursor)> {
    if cur.done {
        return None;
    }
    let rows = match cur.pending.take() {
        Some(rows) => rows,
        None => {
            let (filter, after) = (cur.filter.clone(), cur.after.clone());
            match cur.payments.orders_batch(filter, after, BATCH).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "order export failed part way");
                    cur.done = true;
                    return Some((INCOMPLETE.as_bytes().to_vec(), cur));
                }
            }
        }
    };
    // A short batch is the last one; an empty one ends the stream now.
    cur.done = rows.len() < BATCH;
    let last = rows.last()?;
    cur.after = Some(last.key());
    Some((encode(&rows), cur))
}

/// A CSV attachment whose body is produced as it is sent.
pub struct CsvDownload<S> {
    filename: String,
    body: S,
}

impl<'r, S> Responder<'r, 'r> for CsvDownload<S>
where
    S: Stream<Item = Vec<u8>> + Send + 'r,
{
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'r> {
        Response::build_from(ByteStream(self.body).respond_to(req)?)
            .status(Status::Ok)
            .header(ContentType::new("text", "csv").with_params(("charset", "utf-8")))
            .raw_header("Content-Disposition", format!("attachment; filename=\"{}\"", self.filename))
            .ok()
    }
}

#[get("/admin/orders.csv?<params..>")]
async fn get_orders_csv(
    staff: Staff,
    params: ListParams,
    payments: &State<Payments>,
) -> Result<CsvDownload<impl Stream<Item = Vec<u8>> + Send + 'static>, AppError> {
    let filter = parse_filter(&params).map_err(|errors| AppError::invalid("筛选条件", errors.join("；")))?;
    let detail: serde_json::Map<String, serde_json::Value> =
        params.filter_pairs().into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
    payments.record_export(&staff.actor(), detail.into()).await?;
    let first = payments.orders_batch(filter.clone(), None, BATCH).await?;
    let payments = payments.inner().clone();
    let cursor = Cursor { payments, filter, pending: Some(first), after: None, done: false };
    let body = stream::once(async { preamble() }).chain(stream::unfold(cursor, next_chunk));
    let filename = format!("orders-{}.csv", beijing_date(Utc::now()).format("%Y-%m-%d"));
    Ok(CsvDownload { filename, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(cells: &[&str]) -> String {
        let mut out = String::new();
        push_record(&mut out, cells.iter().copied());
        out
    }

    #[test]
    fn quoting_follows_rfc_4180() {
        assert_eq!(
            line(&["a", "b,c", "say \"hi\"", "two\nlines", ""]),
            "a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n"
        );
    }

    #[test]
    fn formulas_are_defused() {
        assert_eq!(line(&["=HYPERLINK(\"http://evil\")"]), "\"'=HYPERLINK(\"\"http://evil\"\")\"\r\n");
        for (raw, want) in
            [("=1+1", "'=1+1"), ("+86", "'+86"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx")]
        {
            assert_eq!(line(&[raw]), format!("{want}\r\n"));
        }
        assert_eq!(line(&["\rx"]), "\"'\rx\"\r\n");
        assert_eq!(line(&["19.90", "a=b", "龙井茶"]), "19.90,a=b,龙井茶\r\n");
    }

    #[test]
    fn the_file_starts_with_a_bom_and_the_header() {
        let p = String::from_utf8(preamble()).unwrap();
        assert!(p.starts_with("\u{feff}创建时间,商户订单号,"));
        assert!(p.ends_with("已退款金额（元）\r\n"));
    }
}
