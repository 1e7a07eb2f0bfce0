//! First start: the merchant API token and the first admin's one-time password, generated when
//! none exist, handed to the operator once and never through the log. On a terminal they are
//! printed; otherwise (a container, a service manager, where stderr ends up in log storage)
//! they are written to a file only the owner can read, and the log names that file.

use std::io::IsTerminal;
use std::path::Path;

use super::StartError;
use crate::config::AppConfig;
use crate::db::{self, Db, tokens};
use crate::staff::accounts::{OneTimeAdmin, bootstrap_first_admin};

/// Where the generated credentials go when stderr is not a terminal (relative to the working
/// directory, like `data/secret_key`).
pub const CREDENTIALS_FILE: &str = "data/initial-credentials.txt";

/// Makes the API token and the first admin when there are none, and hands over what was made.
pub(super) fn bootstrap_credentials(db: &Db, config: &AppConfig) -> Result<(), StartError> {
    let token = bootstrap_api_token(db, config)?;
    let admin =
        bootstrap_first_admin(db, config.admin_username.as_deref(), config.admin_password.as_ref().map(|p| p.expose()))
            .map_err(|e| StartError::Other(format!("first admin account: {e}")))?;
    if token.is_none() && admin.is_none() {
        return Ok(());
    }
    if std::io::stderr().is_terminal() {
        eprintln!("{}", banner(token.as_deref(), admin.as_ref()));
        return Ok(());
    }
    let path = Path::new(CREDENTIALS_FILE);
    append_private(path, &file_lines(token.as_deref(), admin.as_ref()))
        .map_err(|e| StartError::Other(format!("cannot write {}: {e}", path.display())))?;
    tracing::warn!(
        path = %path.display(),
        "initial credentials generated and written to this file (readable only by its owner): \
         store them, then delete the file"
    );
    Ok(())
}

/// With no `API_TOKEN` and no token stored yet, makes one.
fn bootstrap_api_token(db: &Db, config: &AppConfig) -> Result<Option<String>, StartError> {
    if config.api_token.is_some() {
        return Ok(None);
    }
    let mut conn = db.conn()?;
    if tokens::count_active(&mut conn)? > 0 {
        return Ok(None);
    }
    let token = crate::wxpay::nonce::random_alphanumeric(40);
    let hash = crate::domain::records::token_hash(&token);
    // The first token is the one the README's first steps use: it may do everything.
    let scope = crate::domain::ApiScope::Refund.as_str();
    tokens::insert(&mut conn, &tokens::NewToken { name: "initial", token_hash: &hash, created_at: db::now(), scope })?;
    Ok(Some(token))
}

fn banner(token: Option<&str>, admin: Option<&OneTimeAdmin>) -> String {
    let mut text = String::from("\n================================================================\n");
    if let Some(token) = token {
        text.push_str(&format!(
            "Merchant API token (shown only once, store it now):\n\n    {token}\n\n\
             Use it as:  Authorization: Bearer <token>\n\n"
        ));
    }
    if let Some(a) = admin {
        text.push_str(&format!(
            "Admin console: /admin   user: {}\n\
             One-time password (shown only once, change it at first sign-in):\n\n    {}\n\n",
            a.username, a.password
        ));
    }
    text.push_str("================================================================\n");
    text
}

/// `key=value` lines, easy for a person and a script to read.
fn file_lines(token: Option<&str>, admin: Option<&OneTimeAdmin>) -> String {
    let mut lines = format!("# written {} by wechat-checkout at first start; delete after use\n", db::now());
    if let Some(token) = token {
        lines.push_str(&format!("api_token={token}\n"));
    }
    if let Some(a) = admin {
        lines.push_str(&format!("admin_username={}\nadmin_password={}\n", a.username, a.password));
    }
    lines
}

/// Appends to `path` (created with mode 0600, its directory too): a second instance's or a later
/// start's credentials must not overwrite ones nobody has read yet.
fn append_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // A file that existed before with looser permissions is tightened before writing to it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(content.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_each_credential_on_its_own_line() {
        let admin = OneTimeAdmin { username: "admin".into(), password: "pw123".into() };
        let text = file_lines(Some("tok456"), Some(&admin));
        assert!(text.lines().any(|l| l == "api_token=tok456"));
        assert!(text.lines().any(|l| l == "admin_username=admin"));
        assert!(text.lines().any(|l| l == "admin_password=pw123"));
        assert!(!file_lines(None, Some(&admin)).contains("api_token"));
        let shown = banner(Some("tok456"), None);
        assert!(shown.contains("tok456") && !shown.contains("One-time password"));
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_and_appended_to() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/creds.txt");
        append_private(&path, "a=1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        append_private(&path, "b=2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a=1\nb=2\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
