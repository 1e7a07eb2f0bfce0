//! What every admin page shows around its content: who is signed in, the navigation, the
//! logout form's CSRF token, a one-time flash message, and the URLs of the console's assets.

use rocket::request::FlashMessage;

use super::labels::RoleName;
use super::session::Staff;
use crate::domain::{Permission, Role};
use crate::web::assets::{Assets, VERSION};

pub struct Chrome {
    pub username: String,
    pub role: RoleName,
    pub csrf: String,
    /// Which navigation entry is current: one of the keys of [`NAV`] ("" for none).
    pub active: &'static str,
    pub flash: Option<(String, String)>,
    /// The content-hashed URLs of the stylesheets: `{{ chrome.version.url("css/admin.css") }}`.
    pub version: Assets,
    /// Simulator mode: a banner on every page says no real money moves.
    pub simulated: bool,
}

/// One entry of the navigation as a page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NavEntry {
    pub key: &'static str,
    pub href: &'static str,
    pub label: &'static str,
    /// The page being shown is this entry's (rendered as `aria-current="page"`).
    pub current: bool,
}

/// The console's sections in menu order: key (what handlers pass as `active`), link, label, and
/// the permission it needs (the handlers refuse the rest; the menu just does not offer it).
const NAV: &[(&str, &str, &str, Permission)] = &[
    ("dashboard", "/admin", "概览", Permission::Read),
    ("orders", "/admin/orders", "订单", Permission::Read),
    ("notifies", "/admin/notifies", "通知日志", Permission::Read),
    ("exceptions", "/admin/exceptions", "异常", Permission::Read),
    ("reconciliation", "/admin/reconciliation", "对账", Permission::Read),
    ("webhooks", "/admin/webhooks", "Webhook", Permission::Read),
    ("users", "/admin/users", "用户", Permission::Administer),
    ("tokens", "/admin/tokens", "API 令牌", Permission::Administer),
    ("audit", "/admin/audit", "审计日志", Permission::Administer),
];

impl Chrome {
    pub fn new(staff: &Staff, active: &'static str, flash: Option<FlashMessage<'_>>) -> Chrome {
        Chrome {
            username: staff.username.clone(),
            role: RoleName(staff.role),
            csrf: staff.csrf.clone(),
            active,
            flash: flash.map(|f| (f.kind().to_owned(), f.message().to_owned())),
            version: VERSION,
            simulated: staff.simulated,
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

    /// The navigation entries this viewer's role may open, the current one marked.
    pub fn nav(&self) -> Vec<NavEntry> {
        nav_for(self.role.0, self.active)
    }
}

fn nav_for(role: Role, active: &str) -> Vec<NavEntry> {
    NAV.iter()
        .filter(|(_, _, _, needs)| role.may(*needs))
        .map(|&(key, href, label, _)| NavEntry { key, href, label, current: key == active })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(role: Role) -> Vec<&'static str> {
        nav_for(role, "").iter().map(|e| e.key).collect()
    }

    #[test]
    fn admin_sections_are_offered_to_admins_only() {
        let everyone = ["dashboard", "orders", "notifies", "exceptions", "reconciliation", "webhooks"];
        assert_eq!(keys(Role::Viewer), everyone);
        assert_eq!(keys(Role::Operator), everyone);
        let admin: Vec<&str> = everyone.iter().copied().chain(["users", "tokens", "audit"]).collect();
        assert_eq!(keys(Role::Admin), admin);
    }

    #[test]
    fn exactly_the_active_entry_is_current() {
        let nav = nav_for(Role::Admin, "orders");
        let current: Vec<&NavEntry> = nav.iter().filter(|e| e.current).collect();
        assert_eq!(current.len(), 1);
        assert_eq!((current[0].href, current[0].label), ("/admin/orders", "订单"));
        assert!(nav_for(Role::Admin, "").iter().all(|e| !e.current), "the password page marks none");
        // An admin-only page seen by a viewer cannot happen (the handler refuses), but marks nothing.
        assert!(nav_for(Role::Viewer, "users").iter().all(|e| !e.current));
    }

    #[test]
    fn keys_and_links_are_unique() {
        let keys: std::collections::BTreeSet<&str> = NAV.iter().map(|e| e.0).collect();
        let hrefs: std::collections::BTreeSet<&str> = NAV.iter().map(|e| e.1).collect();
        assert_eq!((keys.len(), hrefs.len()), (NAV.len(), NAV.len()));
    }
}
