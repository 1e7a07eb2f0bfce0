//! The API's OpenAPI 3.1 document, generated from the handlers' annotations and the schemas, served
//! at `/api/v1/openapi.json` (no token needed: it is the public contract).

use std::sync::OnceLock;

use rocket::get;
use rocket::http::ContentType;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{orders, refunds, schema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wechat-checkout merchant API",
        description = "Orders and refunds over WeChat Pay. Money is integer fen; times are RFC 3339 UTC. \
            Every answer carries `simulated`. Errors share one shape; the codes are listed in docs/api.md.",
    ),
    paths(
        orders::post_order,
        orders::get_order,
        orders::list_orders,
        orders::close_order,
        refunds::post_refund,
        refunds::list_refunds,
        refunds::get_refund,
    ),
    components(schemas(schema::Order, schema::Refund, schema::OrderPage, schema::RefundList, schema::Error)),
    modifiers(&BearerToken),
    tags(
        (name = "orders", description = "Create, read, list and close orders"),
        (name = "refunds", description = "Request and read refunds"),
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
