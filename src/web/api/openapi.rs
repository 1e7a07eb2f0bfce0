//! The API's OpenAPI 3.1 document, generated from the handlers' annotations and the schemas, served
//! at `/api/v1/openapi.json` (no token needed: it is the public contract).

use std::sync::OnceLock;

use rocket::get;
use rocket::http::ContentType;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{orders, payment, refunds, schema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wechat-checkout merchant API",
        description = "Orders, refunds and payments from your own front end (Mini Program, H5 pages) over WeChat Pay. Money is integer fen; times are RFC 3339 UTC. \
            Every answer carries `simulated`. Errors share one shape; the codes are listed in docs/api.md.",
    ),
    paths(
        orders::post_order,
        orders::get_order,
        orders::list_orders,
        orders::close_order,
        payment::post_payment,
        refunds::post_refund,
        refunds::list_refunds,
        refunds::get_refund,
        payment::post_mini_program_session,
    ),
    components(schemas(
        schema::Order,
        schema::Refund,
        schema::OrderPage,
        schema::RefundList,
        schema::Error,
        schema::MiniProgramSession,
        schema::Payment,
    )),
    modifiers(&BearerToken),
    tags(
        (name = "orders", description = "Create, read, list and close orders"),
        (name = "refunds", description = "Request and read refunds"),
        (name = "mini-program", description = "Sign a Mini Program's shopper in (wx.login code → openid)"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer token every operation names in its `security`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("A token from the console (scope read, write or refund) or API_TOKEN"))
            .build();
        openapi.components.get_or_insert_default().add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes"))
}

#[get("/openapi.json")]
pub(super) fn openapi_json() -> (ContentType, &'static str) {
    (ContentType::JSON, document())
}
