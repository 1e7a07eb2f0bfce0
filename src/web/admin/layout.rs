//! What every admin page shows around its content: who is signed in, the navigation, the
//! logout form's CSRF token, a one-time flash message, and the URLs of the console's assets.

use rocket::request::FlashMessage;

use super::session::Staff;
use crate::db::staff::Role;
use crate::web::assets::{Assets, VERSION};

pub struct Chrome {
    pub username: String,
    pub role: Role,
    pub csrf: String,
    /// Which navigation entry is current: dashboard, orders, notifies, exceptions, users, tokens, audit.
    pub active: &'static str,
    pub flash: Option<(String, String)>,
    /// The content-hashed URLs of the stylesheets: `{{ chrome.version.url("css/admin.css") }}`.
    pub version: Assets,
}

impl Chrome {
    pub fn new(staff: &Staff, active: &'static str, flash: Option<FlashMessage<'_>>) -> Chrome {
        Chrome {
            username: staff.username.clone(),
            role: staff.role,
            csrf: staff.csrf.clone(),
            active,
            flash: flash.map(|f| (f.kind().to_owned(), f.message().to_owned())),
            version: VERSION,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role >= Role::Admin
    }

    pub fn is_operator(&self) -> bool {
        self.role >= Role::Operator
    }
}
