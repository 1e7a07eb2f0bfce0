//! Webhook destinations against the address rule of `domain::address`, where names become
//! addresses: at order creation (a name that resolves only to refused addresses is refused) and
//! at connect time, through [`GuardedResolver`], the DNS resolver of the delivery client. It
//! hands the connector only the addresses the rule allows, so the address checked is the address
//! connected to: no second lookup, no DNS-rebinding window. IP literals never reach a resolver
//! (the connector dials them directly), so they are checked before sending with
//! [`literal_refusal`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::domain::address::{AddressPolicy, Refusal};

/// How long order creation waits for a webhook URL's name to resolve. A name that does not
/// resolve in time is taken: delivery checks it again, at connect time.
pub const CREATION_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a webhook host yields no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// Every address it resolved to is refused (the first refusal is named).
    #[error("refused: {0}")]
    Refused(Refusal),
    #[error("{0}")]
    Lookup(std::io::Error),
}

/// The addresses of `host` (with `port`) that `policy` allows, in the resolver's order.
pub async fn allowed_addresses(host: &str, port: u16, policy: AddressPolicy) -> Result<Vec<SocketAddr>, Unreachable> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await.map_err(Unreachable::Lookup)?.collect();
    let mut first_refusal = None;
    let mut allowed = Vec::with_capacity(resolved.len());
    for addr in resolved {
        match policy.check_ip(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    match (allowed.is_empty(), first_refusal) {
        (false, _) => Ok(allowed),
        (true, Some(refusal)) => Err(Unreachable::Refused(refusal.resolved_from(host))),
        (true, None) => Err(Unreachable::Lookup(std::io::Error::other(format!("{host} has no address")))),
    }
}

/// The delivery client's resolver: [`allowed_addresses`], or an [`Unreachable`] error that
/// fails the connection.
#[derive(Clone, Copy, Debug)]
pub struct GuardedResolver {
    pub policy: AddressPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            // Port 0: the connector puts the URL's port in.
            let addrs = allowed_addresses(name.as_str(), 0, policy).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal of a URL whose host is an IP literal `policy` refuses (in whatever spelling the
/// URL parser normalised: `http://2130706433/` is 127.0.0.1).
pub fn literal_refusal(url: &str, policy: AddressPolicy) -> Option<Refusal> {
    let parsed = url::Url::parse(url).ok()?;
    match parsed.host()? {
        host @ (url::Host::Ipv4(_) | url::Host::Ipv6(_)) => policy.check_host(&host).err(),
        url::Host::Domain(_) => None,
    }
}

/// Why a new order's webhook URL (already well formed) may not be taken: its host is refused by
/// the rule itself (an IP literal, `localhost`, a metadata name), or its name resolves, within
/// [`CREATION_LOOKUP_TIMEOUT`], only to refused addresses. A name that does not resolve is taken.
pub async fn refusal_at_creation(url: &str, policy: AddressPolicy) -> Option<Refusal> {
    if let Some(refusal) = crate::config::webhook_host_refusal(url, policy) {
        return Some(refusal);
    }
    let parsed = url::Url::parse(url).ok()?;
    let Some(url::Host::Domain(name)) = parsed.host() else { return None };
    resolution_refusal(name, parsed.port_or_known_default().unwrap_or(0), policy).await
}

/// The refusal of a name that resolves, within [`CREATION_LOOKUP_TIMEOUT`], only to addresses
/// `policy` refuses.
async fn resolution_refusal(name: &str, port: u16, policy: AddressPolicy) -> Option<Refusal> {
    match tokio::time::timeout(CREATION_LOOKUP_TIMEOUT, allowed_addresses(name, port, policy)).await {
        Ok(Err(Unreachable::Refused(refusal))) => Some(refusal),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use reqwest::dns::Resolve;

    use super::*;

    const STRICT: AddressPolicy = AddressPolicy { allow_private: false };
    const LOCAL: AddressPolicy = AddressPolicy { allow_private: true };

    #[tokio::test]
    async fn the_resolver_refuses_a_name_of_this_machine_unless_private_is_allowed() {
        let strict = GuardedResolver { policy: STRICT };
        let refused = match strict.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        };
        assert!(refused.starts_with("refused: address ") && refused.ends_with("(localhost) is loopback"), "{refused}");

        let addrs: Vec<SocketAddr> =
            GuardedResolver { policy: LOCAL }.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_lookup_error_not_a_refusal() {
        let e = allowed_addresses("hooks.invalid", 80, STRICT).await.unwrap_err();
        assert!(matches!(e, Unreachable::Lookup(_)), "{e}");
        assert_eq!(refusal_at_creation("https://hooks.invalid/wechat", STRICT).await, None);
    }

    #[tokio::test]
    async fn creation_refuses_literals_rule_names_and_names_that_resolve_inwards() {
        for url in ["http://10.0.0.1/h", "http://[::ffff:7f00:1]:8080/h", "http://localhost/h", "http://2130706433/"] {
            assert!(refusal_at_creation(url, STRICT).await.is_some(), "{url}");
            assert!(refusal_at_creation(url, LOCAL).await.is_none(), "{url} with WEBHOOK_ALLOW_PRIVATE=on");
        }
        assert!(refusal_at_creation("http://169.254.169.254/", LOCAL).await.is_some(), "metadata, always");
        // A name the rule alone lets pass is judged by what it resolves to (`localhost` is the
        // one name every test machine resolves to an internal address).
        let inwards = resolution_refusal("localhost", 8080, STRICT).await.expect("localhost resolves to loopback");
        assert_eq!(inwards.class, crate::domain::address::AddressClass::Loopback);
        assert!(inwards.to_string().ends_with("(localhost) is loopback"), "{inwards}");
        assert_eq!(resolution_refusal("localhost", 8080, LOCAL).await, None);
    }

    #[test]
    fn literal_hosts_are_found_in_every_spelling_and_names_are_left_to_the_resolver() {
        assert_eq!(
            literal_refusal("http://2130706433/h", STRICT).unwrap().to_string(),
            "address 127.0.0.1 is loopback"
        );
        assert_eq!(
            literal_refusal("http://[fd00::1]/h", STRICT).unwrap().to_string(),
            "address fd00::1 is unique local (private IPv6)"
        );
        assert_eq!(literal_refusal("http://localhost/h", STRICT), None);
        assert_eq!(literal_refusal("https://8.8.8.8/h", STRICT), None);
        assert_eq!(literal_refusal("http://10.0.0.1/h", LOCAL), None);
    }
}
