//! `/docs/api`: the API reference as a page of its own, rendered on the server from the OpenAPI
//! document (no script, no asset from elsewhere: it works with no internet, under the app's CSP).

use std::sync::OnceLock;

use askama::Template;
use rocket::response::content::RawHtml;
use rocket::{get, routes};
use serde_json::Value;

use super::api::openapi;
use super::assets::Assets;
use super::page::render;
use crate::error::AppError;

pub fn routes() -> Vec<rocket::Route> {
    routes![api_reference]
}

struct Operation {
    method: String,
    path: String,
    anchor: String,
    summary: String,
    params: Vec<Field>,
    body: Option<String>,
    responses: Vec<(String, String, Option<String>)>,
}

struct Field {
    name: String,
    place: String,
    kind: String,
    required: bool,
    description: String,
}

struct SchemaView {
    name: String,
    description: String,
    fields: Vec<Field>,
    example: Option<String>,
}

#[derive(Template)]
#[template(path = "api_docs.html")]
struct ApiDocsPage {
    version: Assets,
    title: String,
    description: String,
    openapi: String,
    operations: Vec<Operation>,
    schemas: Vec<SchemaView>,
}

// The document is fixed for the life of the binary, so the page is rendered once.
#[get("/docs/api")]
fn api_reference() -> Result<RawHtml<String>, AppError> {
    static PAGE: OnceLock<String> = OnceLock::new();
    if let Some(html) = PAGE.get() {
        return Ok(RawHtml(html.clone()));
    }
    let doc: Value = serde_json::from_str(openapi::document()).map_err(|e| AppError::Internal(e.to_string()))?;
    let RawHtml(html) = render(&page(&doc))?;
    Ok(RawHtml(PAGE.get_or_init(|| html).clone()))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn page(doc: &Value) -> ApiDocsPage {
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            operations.push(operation(path, method, op));
        }
    }
    let mut schemas = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
        schemas.push(SchemaView {
            name: name.clone(),
            description: text(&schema["description"]),
            fields: fields(schema),
            example: schema.get("example").and_then(|e| serde_json::to_string_pretty(e).ok()),
        });
    }
    ApiDocsPage {
        version: Assets,
        title: text(&doc["info"]["title"]),
        description: text(&doc["info"]["description"]),
        openapi: text(&doc["openapi"]),
        operations,
        schemas,
    }
}

fn operation(path: &str, method: &str, op: &Value) -> Operation {
    let params = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| Field {
            name: text(&p["name"]),
            place: text(&p["in"]),
            kind: kind(&p["schema"]),
            required: p["required"].as_bool().unwrap_or(false),
            description: text(&p["description"]),
        })
        .collect();
    let body = op["requestBody"]["content"]["application/json"].get("schema").map(kind);
    let responses = op["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(status, r)| {
            let schema = r["content"]["application/json"].get("schema").map(kind);
            (status.clone(), text(&r["description"]), schema)
        })
        .collect();
    let method = method.to_uppercase();
    let anchor = format!("{method}-{path}").replace(['/', '{', '}'], "-");
    let summary = text(&op["summary"]);
    Operation { method, path: path.to_owned(), anchor, summary, params, body, responses }
}

fn fields(schema: &Value) -> Vec<Field> {
    let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, p)| Field {
            name: name.clone(),
            place: String::new(),
            kind: kind(p),
            required: required.contains(&name.as_str()),
            description: text(&p["description"]),
        })
        .collect()
}

/// A schema in a few words: `Order`, `string | null`, `array of Refund`, `one of PAID, CLOSED`.
fn kind(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| v.as_str().map_or(v.to_string(), str::to_owned)).collect();
        return format!("one of {}", values.join(", "));
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[combinator].as_array() {
            return options.iter().map(kind).collect::<Vec<_>>().join(" | ");
        }
    }
    let types: Vec<String> = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts.iter().map(text).collect(),
        _ => vec!["any".to_owned()],
    };
    types
        .into_iter()
        .map(|t| if t == "array" { format!("array of {}", kind(&schema["items"])) } else { t })
        .collect::<Vec<_>>()
        .join(" | ")
}
