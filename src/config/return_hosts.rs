//! `RETURN_URL_HOSTS`: the hosts an order's `return_url` may send the shopper back to, so that a
//! leaked or misused API token cannot turn the checkout into a redirect to anywhere. Unset, any
//! host is taken (the form is checked either way, by `urls::return_url_problem`).

use std::fmt;

use super::{ConfigError, RawSettings, invalid};

/// One allowed host: a name (or IP address) exactly, or `*.name`, every subdomain of a name
/// (not the name itself).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// The suffix, with its leading dot: `.example.com`.
    Subdomains(String),
}

/// The hosts of `RETURN_URL_HOSTS`, normalised as a URL's host is (lower case, IDNA, IP
/// addresses in their usual spelling); empty when it is unset: then any host is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReturnUrlHosts(Vec<HostPattern>);

impl ReturnUrlHosts {
    pub(super) fn from_raw(raw: &RawSettings) -> Result<ReturnUrlHosts, ConfigError> {
        match raw.return_url_hosts.as_deref().map(str::trim) {
            None | Some("") => Ok(ReturnUrlHosts::default()),
            Some(list) => list.split(',').map(|item| parse_pattern(item.trim())).collect::<Result<_, _>>().map(Self),
        }
    }

    /// Whether a list was given (otherwise every host is allowed).
    pub fn is_restricted(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether the host of `url` (an absolute URL) may be returned to.
    pub fn allows(&self, url: &str) -> bool {
        if !self.is_restricted() {
            return true;
        }
        let Some(host) = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)) else {
            return false;
        };
        self.0.iter().any(|pattern| match pattern {
            HostPattern::Exact(name) => host == *name,
            HostPattern::Subdomains(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        })
    }
}

/// The list as an operator would write it (normalised), for messages.
impl fmt::Display for ReturnUrlHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .0
            .iter()
            .map(|p| match p {
                HostPattern::Exact(name) => name.clone(),
                HostPattern::Subdomains(suffix) => format!("*{suffix}"),
            })
            .collect();
        f.write_str(&names.join(", "))
    }
}

fn parse_pattern(item: &str) -> Result<HostPattern, ConfigError> {
    let bad = |why: &str| invalid("RETURN_URL_HOSTS", format!("{item:?} {why}"));
    let (wildcard, name) = match item.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, item),
    };
    if name.is_empty() || name.contains('*') {
        return Err(bad("is not a host name or *.name (leave RETURN_URL_HOSTS unset to allow any host)"));
    }
    let host = match url::Host::parse(name) {
        Ok(host) => host,
        Err(_) => return Err(bad("is not a host name (give names only: no scheme, port or path)")),
    };
    match (wildcard, host) {
        (true, url::Host::Domain(domain)) => Ok(HostPattern::Subdomains(format!(".{domain}"))),
        (true, _) => Err(bad("names subdomains of an IP address")),
        (false, host) => Ok(HostPattern::Exact(host.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: Option<&str>) -> Result<ReturnUrlHosts, ConfigError> {
        ReturnUrlHosts::from_raw(&RawSettings { return_url_hosts: list.map(str::to_owned), ..RawSettings::default() })
    }

    #[test]
    fn unset_or_empty_allows_any_host() {
        for list in [None, Some(""), Some("  ")] {
            let h = hosts(list).unwrap();
            assert!(!h.is_restricted() && h.allows("https://anywhere.example/x"), "{list:?}");
        }
    }

    #[test]
    fn names_match_exactly_and_star_dot_matches_subdomains_only() {
        let h = hosts(Some("Shop.Example.com, *.mall.example ,127.0.0.1, [::1]")).unwrap();
        assert_eq!(h.to_string(), "shop.example.com, *.mall.example, 127.0.0.1, [::1]");
        for ok in [
            "https://shop.example.com/done",
            "http://SHOP.example.com:8080/?a=1",
            "https://a.mall.example/",
            "https://b.a.mall.example/x",
            "http://127.0.0.1:9000/shop",
            "http://[::1]:9000/",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for refused in [
            "https://example.com/",
            "https://evil-shop.example.com/",
            "https://shop.example.com.evil.example/",
            "https://mall.example/",
            "https://evilmall.example/",
            "http://127.0.0.2/",
            "not a url",
        ] {
            assert!(!h.allows(refused), "{refused}");
        }
    }

    #[test]
    fn anything_but_names_is_refused_naming_the_variable() {
        for bad in [
            "*",
            "*.",
            "shop.example.com:443",
            "https://shop.example.com",
            "shop.example.com/x",
            "a,,b",
            "*.10.0.0.1",
            "a*.example",
        ] {
            let e = hosts(Some(bad)).unwrap_err().to_string();
            assert!(e.starts_with("RETURN_URL_HOSTS: "), "{bad}: {e}");
        }
    }
}
