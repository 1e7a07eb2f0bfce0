//! Rendering askama pages as responses, and the shared error page.

use askama::Template;
use rocket::http::{ContentType, Status};
use rocket::response::{self, Responder};
use rocket::{Request, Response};

use crate::error::AppError;

/// Renders a template now (so it may borrow the handler's locals).
pub fn render(t: &impl Template) -> Result<rocket::response::content::RawHtml<String>, AppError> {
    t.render().map(rocket::response::content::RawHtml).map_err(|e| AppError::Internal(format!("template: {e}")))
}

/// Renders any template as an HTML response.
pub struct Html<T: Template>(pub Status, pub T);

impl<'r, T: Template> Responder<'r, 'static> for Html<T> {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        match self.1.render() {
            Ok(body) => Response::build_from((ContentType::HTML, body).respond_to(req)?).status(self.0).ok(),
            Err(e) => {
                tracing::error!(error = %e, "template failed to render");
                Err(Status::InternalServerError)
            }
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorTemplate {
    pub title: String,
    pub message: String,
}

/// The error page of the shopper-facing site.
pub struct ErrorPage {
    status: Status,
    page: ErrorTemplate,
}

impl ErrorPage {
    pub fn new(status: Status, title: &str, message: &str) -> ErrorPage {
        ErrorPage { status, page: ErrorTemplate { title: title.into(), message: message.into() } }
    }
}

impl<'r> Responder<'r, 'static> for ErrorPage {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        Html(self.status, self.page).respond_to(req)
    }
}

impl<'r> Responder<'r, 'static> for AppError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        self.log();
        let title = match self.status().code {
            404 => "订单不存在",
            400..=499 => "无法继续",
            _ => "服务暂时不可用",
        };
        ErrorPage { status: self.status(), page: ErrorTemplate { title: title.into(), message: self.public_message() } }
            .respond_to(req)
    }
}
