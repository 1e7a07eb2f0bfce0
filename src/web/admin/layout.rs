//! What every admin page shows around its content: who is signed in, the navigation, the
//! logout form's CSRF token, and a one-time flash message.

use rocket::request::FlashMessage;

use super::labels::RoleName;
use super::session::Staff;
use crate::domain::Permission;
use crate::web::assets::VERSION;

pub struct Chrome {
    pub username: String,
    pub role: RoleName,
    pub csrf: String,
    /// Which navigation entry is current: dashboard, orders, notifies, exceptions, users, tokens, audit.
    pub active: &'static str,
    pub flash: Option<(String, String)>,
    pub version: &'static str,
}

impl Chrome {
    pub fn new(staff: &Staff, active: &'static str, flash: Option<FlashMessage<'_>>) -> Chrome {
        Chrome {
            username: staff.username.clone(),
            role: RoleName(staff.role),
            csrf: staff.csrf.clone(),
            active,
            flash: flash.map(|f| (f.kind().to_owned(), f.message().to_owned())),
            version: VERSION,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role.0.may(Permission::Administer)
    }

    pub fn is_operator(&self) -> bool {
        self.role.0.may(Permission::Operate)
    }

    /// Whether the viewer may refund (the refund form is shown only then).
    pub fn can_refund(&self) -> bool {
        self.role.0.may(Permission::Refund)
    }
}
