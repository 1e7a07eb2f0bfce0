//! The order list `GET /admin/orders`: filters (state, Beijing date range, amount range), one
//! search box for any of an order's numbers, and keyset pagination with an opaque cursor. The
//! filter parsing here is shared with the CSV export (`orders_csv`).

use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Days, NaiveDate, Utc};
use rocket::form::FromForm;
use rocket::http::{RawStr, Status};
use rocket::request::FlashMessage;
use rocket::response::content::RawHtml;
use rocket::{State, get, routes};

use super::labels;
use super::layout::Chrome;
use super::session::Staff;
use super::view::{beijing_time, opt_time, yuan};
use crate::domain::listing::{Key, ListFilter, ListedOrder, Seek};
use crate::domain::{Fen, OrderState};
use crate::error::AppError;
use crate::payments::Payments;
use crate::web::page::render;
use crate::wxpay::time::beijing_day_start;

/// Rows on one page.
pub const PAGE_SIZE: usize = 50;
/// Longer than any order, transaction, merchant or refund number.
const MAX_SEARCH_CHARS: usize = 64;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_orders]
}

/// The list's query string, exactly as typed. Every field is a plain optional string so that no
/// input can fail the route (a Rocket form error would be a bare 422 or 404); [`parse`] checks
/// them and says what is wrong.
#[derive(FromForm, Default, Debug, Clone)]
pub struct ListParams {
    pub state: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub min: Option<String>,
    pub max: Option<String>,
    pub q: Option<String>,
    pub after: Option<String>,
    pub before: Option<String>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl ListParams {
    /// The filters as `(name, value)` pairs, blanks left out: what links and the audit keep.
    pub fn filter_pairs(&self) -> Vec<(&'static str, &str)> {
        let fields = [
            ("state", &self.state),
            ("from", &self.from),
            ("to", &self.to),
            ("min", &self.min),
            ("max", &self.max),
            ("q", &self.q),
        ];
        fields.into_iter().filter_map(|(name, value)| given(value).map(|v| (name, v))).collect()
    }

    /// The filters as a query string (no leading `?`), for links that keep them.
    pub fn filter_query(&self, extra: Option<(&str, &str)>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.filter_pairs() {
            query.append_pair(name, value);
        }
        if let Some((name, value)) = extra {
            query.append_pair(name, value);
        }
        query.finish()
    }

    fn value(&self, field: &Option<String>) -> String {
        field.clone().unwrap_or_default()
    }
}

/// Parses the filters; every problem is reported at once, in words a staff member can act on.
pub fn parse_filter(params: &ListParams) -> Result<ListFilter, Vec<String>> {
    let mut errors = Vec::new();
    let mut filter = ListFilter::default();
    if let Some(s) = given(&params.state).filter(|s| *s != "all") {
        match OrderState::parse(s) {
            Some(state) => filter.state = Some(state),
            None => errors.push(format!("未知的订单状态“{s}”，请从列表中选择")),
        }
    }
    let from = given(&params.from).and_then(|s| date(s, "开始日期", &mut errors));
    let to = given(&params.to).and_then(|s| date(s, "结束日期", &mut errors));
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        errors.push("开始日期不能晚于结束日期".into());
    }
    // Beijing calendar days, both ends inclusive: [start of `from`, start of the day after `to`).
    filter.created_from = from.map(|d| beijing_day_start(d).naive_utc());
    filter.created_before = to.and_then(|d| d.checked_add_days(Days::new(1))).map(|d| beijing_day_start(d).naive_utc());
    let min = given(&params.min).and_then(|s| amount(s, "最低金额", &mut errors));
    let max = given(&params.max).and_then(|s| amount(s, "最高金额", &mut errors));
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        errors.push("最低金额不能高于最高金额".into());
    }
    filter.min_fen = min.map(Fen::get);
    filter.max_fen = max.map(Fen::get);
    if let Some(q) = given(&params.q) {
        if q.chars().count() > MAX_SEARCH_CHARS {
            errors.push(format!("搜索内容过长（最多 {MAX_SEARCH_CHARS} 个字符）"));
        } else if q.chars().any(char::is_control) {
            // No number holds one, and PostgreSQL cannot even look up a NUL.
            errors.push("搜索内容不能包含控制字符".into());
        } else {
            filter.search = Some(q.to_owned());
        }
    }
    if errors.is_empty() { Ok(filter) } else { Err(errors) }
}

/// A `YYYY-MM-DD` date as `<input type=date>` sends it. Years are kept to four digits so the
/// day's start (and the day after) can always be computed.
fn date(s: &str, name: &str, errors: &mut Vec<String>) -> Option<NaiveDate> {
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) if shaped => Some(d),
        _ => {
            errors.push(format!("{name}“{s}”无效，请按 年-月-日 填写，例如 2026-01-31"));
            None
        }
    }
}

/// A yuan amount, exactly (`19.9`, `19.90`, `¥20`); never negative.
fn amount(s: &str, name: &str, errors: &mut Vec<String>) -> Option<Fen> {
    let digits = s.trim_start_matches(['¥', '￥']).trim();
    match Fen::parse_yuan(digits) {
        Ok(fen) if fen.get() >= 0 => Some(fen),
        Ok(_) => {
            errors.push(format!("{name}不能为负数"));
            None
        }
        Err(_) => {
            errors.push(format!("{name}“{s}”无效，请填写以元为单位、最多两位小数的金额，例如 19.90"));
            None
        }
    }
}

/// The cursor in page links: opaque to staff, `<created_at in µs>.<out_trade_no>` inside.
pub fn encode_cursor(key: &Key) -> String {
    let micros = key.created_at.and_utc().timestamp_micros();
    URL_SAFE_NO_PAD.encode(format!("{micros}.{}", key.out_trade_no))
}

pub fn decode_cursor(s: &str) -> Option<Key> {
    if s.len() > 200 {
        return None;
    }
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s.trim()).ok()?).ok()?;
    let (micros, out_trade_no) = raw.split_once('.')?;
    let created_at = DateTime::<Utc>::from_timestamp_micros(micros.parse().ok()?)?.naive_utc();
    (!out_trade_no.is_empty()).then(|| Key { created_at, out_trade_no: out_trade_no.to_owned() })
}

fn seek_of(params: &ListParams) -> Result<Seek, String> {
    let bad = || "翻页链接无效或已损坏，请从第一页重新浏览".to_owned();
    match (given(&params.after), given(&params.before)) {
        (None, None) => Ok(Seek::First),
        (Some(a), None) => decode_cursor(a).map(Seek::After).ok_or_else(bad),
        (None, Some(b)) => decode_cursor(b).map(Seek::Before).ok_or_else(bad),
        (Some(_), Some(_)) => Err(bad()),
    }
}

/// One row of the table, formatted.
pub struct RowView {
    pub created: String,
    pub out_trade_no: String,
    pub href: String,
    pub merchant_order_id: String,
    pub description: String,
    pub amount: String,
    pub state_label: &'static str,
    pub state_class: &'static str,
    pub paid_at: String,
    pub transaction_id: String,
    pub refunded: Option<String>,
}

impl From<&ListedOrder> for RowView {
    fn from(o: &ListedOrder) -> RowView {
        RowView {
            created: beijing_time(o.created_at),
            out_trade_no: o.out_trade_no.clone(),
            href: format!("/admin/orders/{}", RawStr::new(&o.out_trade_no).percent_encode()),
            merchant_order_id: o.merchant_order_id.clone(),
            description: o.description.clone(),
            amount: yuan(o.amount),
            state_label: labels::order_state(o.state),
            state_class: labels::order_state_class(o.state),
            paid_at: opt_time(o.paid_at),
            transaction_id: o.transaction_id.clone().unwrap_or_default(),
            refunded: o.refunded.is_positive().then(|| yuan(o.refunded)),
        }
    }
}

pub struct StateOption {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "admin/orders.html")]
struct OrdersPage {
    chrome: Chrome,
    states: Vec<StateOption>,
    from: String,
    to: String,
    min: String,
    max: String,
    q: String,
    errors: Vec<String>,
    filtered: bool,
    rows: Vec<RowView>,
    newer_href: Option<String>,
    older_href: Option<String>,
    first_href: Option<String>,
    export_href: String,
}

#[get("/admin/orders?<params..>")]
async fn get_orders(
    staff: Staff,
    params: ListParams,
    flash: Option<FlashMessage<'_>>,
    payments: &State<Payments>,
) -> Result<(Status, RawHtml<String>), AppError> {
    let parsed = parse_filter(&params).and_then(|f| seek_of(&params).map(|s| (f, s)).map_err(|e| vec![e]));
    let selected = given(&params.state).unwrap_or("");
    let mut states = vec![StateOption { value: "", label: "全部状态", selected: selected.is_empty() }];
    states.extend(OrderState::ALL.iter().map(|s| StateOption {
        value: s.as_str(),
        label: labels::order_state(*s),
        selected: selected == s.as_str(),
    }));
    let mut page = OrdersPage {
        chrome: Chrome::new(&staff, "orders", flash),
        states,
        from: params.value(&params.from),
        to: params.value(&params.to),
        min: params.value(&params.min),
        max: params.value(&params.max),
        q: params.value(&params.q),
        errors: Vec::new(),
        filtered: !params.filter_pairs().is_empty(),
        rows: Vec::new(),
        newer_href: None,
        older_href: None,
        first_href: None,
        export_href: with_query("/admin/orders.csv", &params.filter_query(None)),
    };
    let (filter, seek) = match parsed {
        Ok(ok) => ok,
        Err(errors) => {
            page.errors = errors;
            return Ok((Status::UnprocessableEntity, render(&page)?));
        }
    };
    let first_page = seek == Seek::First;
    let list = payments.list_orders(filter, seek, PAGE_SIZE).await?;
    let link = |name: &str, row: Option<&ListedOrder>| {
        row.map(|r| with_query("/admin/orders", &params.filter_query(Some((name, &encode_cursor(&r.key()))))))
    };
    page.newer_href = if list.has_newer { link("before", list.rows.first()) } else { None };
    page.older_href = if list.has_older { link("after", list.rows.last()) } else { None };
    page.first_href = (!first_page).then(|| with_query("/admin/orders", &params.filter_query(None)));
    page.rows = list.rows.iter().map(RowView::from).collect();
    Ok((Status::Ok, render(&page)?))
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> ListParams {
        let mut p = <ListParams as Default>::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "state" => p.state = v,
                "from" => p.from = v,
                "to" => p.to = v,
                "min" => p.min = v,
                "max" => p.max = v,
                "q" => p.q = v,
                _ => unreachable!(),
            }
        }
        p
    }

    #[test]
    fn beijing_days_are_inclusive_and_amounts_exact() {
        let f = parse_filter(&params(&[("from", "2026-01-31"), ("to", "2026-01-31"), ("min", "19.9"), ("max", "¥20")]))
            .unwrap();
        assert_eq!(f.created_from.unwrap().to_string(), "2026-01-30 16:00:00");
        assert_eq!(f.created_before.unwrap().to_string(), "2026-01-31 16:00:00");
        assert_eq!((f.min_fen, f.max_fen), (Some(1990), Some(2000)));
    }

    #[test]
    fn bad_input_is_named_not_a_crash() {
        let bad = [
            ("state", "REFUNDED"),
            ("from", "31/01/2026"),
            ("to", "+20000-01-01"),
            ("min", "1e3"),
            ("max", "-1"),
            ("q", &"x".repeat(65)),
        ];
        let errors = parse_filter(&params(&bad)).unwrap_err();
        assert_eq!(errors.len(), 6, "{errors:?}");
        let errors = parse_filter(&params(&[("min", "5"), ("max", "4.99")])).unwrap_err();
        assert_eq!(errors, ["最低金额不能高于最高金额"]);
        assert!(parse_filter(&params(&[("from", "2026-02-02"), ("to", "2026-02-01")])).is_err());
        assert_eq!(parse_filter(&params(&[("state", "all"), ("q", "  ")])).unwrap(), ListFilter::default());
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let key = Key {
            created_at: DateTime::<Utc>::from_timestamp_micros(1_790_000_000_123_456).unwrap().naive_utc(),
            out_trade_no: "WC20260101000000123456789012".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&key)), Some(key));
        for junk in ["", "!!!", "bm90LWEtY3Vyc29y", &"A".repeat(300)] {
            assert_eq!(decode_cursor(junk), None, "{junk}");
        }
    }
}
