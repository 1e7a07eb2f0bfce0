//! The URL rules: base URLs (ours and WeChat's hosts), webhook URLs, which the global
//! `WEBHOOK_URL` and an order's own `webhook_url` share: their form, and their host as written
//! against the address rule (`domain::address`), and an order's `return_url` (the same form; its
//! host against `RETURN_URL_HOSTS`, in `return_hosts`).

use super::{ConfigError, invalid};
use crate::domain::address::{AddressPolicy, Refusal};

/// `value` without trailing slashes, when it is an absolute http(s) URL with a host and no query
/// (paths are appended to it).
pub(super) fn validate_base(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none() => {
            Ok(trimmed.to_owned())
        }
        _ => Err(invalid(var, format!("{value:?} is not an absolute http(s) URL without a query"))),
    }
}

/// The longest webhook URL, in bytes.
pub const MAX_WEBHOOK_URL_BYTES: usize = 512;

/// What is wrong with a webhook URL, the global `WEBHOOK_URL` or an order's own, if anything: it
/// must be absolute http(s) with a host, with no credentials or fragment, at most
/// [`MAX_WEBHOOK_URL_BYTES`].
pub fn webhook_url_problem(url: &str) -> Option<String> {
    if url.len() > MAX_WEBHOOK_URL_BYTES {
        return Some(format!("must be at most {MAX_WEBHOOK_URL_BYTES} bytes"));
    }
    // The URL is stored and sent exactly as given, so it must not rely on the parser's clean-up
    // of surrounding spaces or control characters.
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain spaces or control characters".into());
    }
    match url::Url::parse(url) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) => {
            Some("must be an absolute http:// or https:// URL".into())
        }
        // Credentials would be stored and shown in the console; the signature authenticates.
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            Some("must not contain a user name or password".into())
        }
        Ok(u) if u.fragment().is_some() => Some("must not contain a #fragment".into()),
        Ok(_) => None,
        Err(e) => Some(format!("must be an absolute http:// or https:// URL ({e})")),
    }
}

/// The query parameters the shopper is sent back to a `return_url` with (`Order::return_link`).
pub const RETURN_URL_PARAMS: [&str; 2] = ["out_trade_no", "merchant_order_id"];

/// What is wrong with an order's `return_url`, if anything: the form of a webhook URL
/// ([`webhook_url_problem`]: absolute http(s), no credentials or fragment, at most 512 bytes, no
/// spaces or control characters), and none of [`RETURN_URL_PARAMS`] in its query already, since
/// they are appended to it. Its host is judged apart (`ReturnUrlHosts`).
pub fn return_url_problem(url: &str) -> Option<String> {
    if let Some(problem) = webhook_url_problem(url) {
        return Some(problem);
    }
    let parsed = url::Url::parse(url).ok()?;
    let taken = parsed.query_pairs().find(|(name, _)| RETURN_URL_PARAMS.contains(&name.as_ref()));
    taken.map(|(name, _)| format!("must not have {name} in its query: it is appended when the shopper is sent back"))
}

/// The refusal of a well-formed webhook URL's host as written, before any lookup: an IP literal
/// (in any spelling the URL parser normalises, `http://2130706433/` being 127.0.0.1) or a name
/// refused by itself (`localhost`, a metadata service's name).
pub fn webhook_host_refusal(url: &str, addresses: AddressPolicy) -> Option<Refusal> {
    let parsed = url::Url::parse(url).ok()?;
    addresses.check_host(&parsed.host()?).err()
}
