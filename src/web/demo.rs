//! The demo shop at `/` (simulator mode only): pick a product, get an order, pay it through the
//! simulated WeChat.

use askama::Template;
use rocket::form::{Form, FromForm};
use rocket::http::CookieJar;
use rocket::response::Redirect;
use rocket::response::content::RawHtml;
use rocket::{State, get, post, routes};

use crate::error::AppError;
use crate::payments::Payments;
use crate::payments::create::{CreateOrder, Created};
use crate::web::assets::VERSION;
use crate::web::client::SameOrigin;
use crate::web::csrf;
use crate::web::page::render;
use crate::wxpay::nonce::random_alphanumeric;

pub fn routes() -> Vec<rocket::Route> {
    routes![get_shop, post_order]
}

pub struct Product {
    pub id: &'static str,
    pub name: &'static str,
    pub fen: i64,
}

pub const PRODUCTS: &[Product] = &[
    Product { id: "tea", name: "明前龙井 50g", fen: 1990 },
    Product { id: "mooncake", name: "广式月饼礼盒", fen: 12800 },
    Product { id: "cent", name: "一分钱体验", fen: 1 },
];

struct ProductView {
    id: &'static str,
    name: &'static str,
    price: String,
}

#[derive(Template)]
#[template(path = "demo/shop.html")]
struct ShopPage<'a> {
    merchant: &'a str,
    products: Vec<ProductView>,
    csrf: String,
    version: crate::web::assets::Assets,
}

#[get("/")]
fn get_shop(payments: &State<Payments>, cookies: &CookieJar<'_>) -> Result<RawHtml<String>, AppError> {
    let products = PRODUCTS
        .iter()
        .map(|p| ProductView { id: p.id, name: p.name, price: crate::domain::Fen::new(p.fen).to_yuan_string() })
        .collect();
    render(&ShopPage {
        merchant: &payments.config.merchant_name,
        products,
        csrf: csrf::token(cookies, payments.config.is_https()),
        version: VERSION,
    })
}

#[derive(FromForm)]
struct OrderForm<'r> {
    product: &'r str,
    csrf: &'r str,
}

#[post("/demo/orders", data = "<form>")]
async fn post_order(
    form: Form<OrderForm<'_>>,
    _same_origin: SameOrigin,
    cookies: &CookieJar<'_>,
    payments: &State<Payments>,
) -> Result<Redirect, AppError> {
    if !csrf::verify(cookies, form.csrf) {
        return Err(AppError::Forbidden("表单已过期，请刷新页面后重试".into()));
    }
    let product = PRODUCTS.iter().find(|p| p.id == form.product).ok_or(AppError::NotFound("product"))?;
    let created = payments
        .create_order(CreateOrder {
            amount_fen: product.fen,
            description: format!("{}-{}", payments.config.merchant_name, product.name),
            merchant_order_id: format!("DEMO-{}", random_alphanumeric(20)),
            attach: Some(product.id.to_owned()),
            expires_in_seconds: Some(30 * 60),
            // The demo's paid page stays put (no shop to go back to but this one).
            return_url: None,
        })
        .await?;
    let order = match created {
        Created::New(o) | Created::Existing(o) => o,
    };
    Ok(Redirect::to(format!("/pay/{}", order.out_trade_no)))
}
