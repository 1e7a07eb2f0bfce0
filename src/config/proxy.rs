//! Client addresses behind a reverse proxy: a header such as `X-Real-IP` is believed only when
//! the connection comes from a proxy named in `TRUSTED_PROXY`; from anyone else it is ignored,
//! since any client can send it.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{ConfigError, RawSettings, invalid};

/// The proxies whose client-address header we believe, and that header.
#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    /// Addresses or networks of the reverse proxies in front of us; empty: believe no header.
    pub trusted: Vec<IpNet>,
    /// `X-Real-IP` (one address, set by the proxy) or `X-Forwarded-For` (a list, appended to).
    pub header: String,
}

impl ProxySettings {
    pub(super) fn from_raw(raw: &RawSettings) -> Result<ProxySettings, ConfigError> {
        let trusted = match raw.trusted_proxy.as_deref().map(str::trim) {
            None | Some("") => Vec::new(),
            Some(list) => list.split(',').map(|item| parse_net(item.trim())).collect::<Result<_, _>>()?,
        };
        let header = raw.client_ip_header.trim().to_owned();
        if !header.eq_ignore_ascii_case("X-Real-IP") && !header.eq_ignore_ascii_case("X-Forwarded-For") {
            return Err(invalid("CLIENT_IP_HEADER", "must be X-Real-IP or X-Forwarded-For"));
        }
        Ok(ProxySettings { trusted, header })
    }

    fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted.iter().any(|net| net.contains(&peer))
    }

    /// The client's address: `peer` itself, or, when `peer` is a trusted proxy, what its header
    /// says. For `X-Forwarded-For` that is the right-most address not itself a trusted proxy,
    /// since everything left of the last trusted hop was written by the client.
    pub fn client_ip(&self, peer: IpAddr, header_value: Option<&str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let Some(value) = header_value else { return peer };
        let parse = |s: &str| s.trim().parse::<IpAddr>().ok();
        if self.header.eq_ignore_ascii_case("X-Real-IP") {
            return parse(value).unwrap_or(peer);
        }
        let mut hops = value.rsplit(',');
        match hops.find_map(|hop| parse(hop).filter(|ip| !self.trusts(*ip))) {
            Some(ip) => ip,
            None => peer,
        }
    }
}

fn parse_net(item: &str) -> Result<IpNet, ConfigError> {
    item.parse::<IpNet>()
        .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| invalid("TRUSTED_PROXY", format!("{item:?} is not an IP address or network (10.0.0.0/8)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(trusted: Option<&str>, header: &str) -> ProxySettings {
        let raw = RawSettings {
            trusted_proxy: trusted.map(str::to_owned),
            client_ip_header: header.into(),
            ..RawSettings::default()
        };
        ProxySettings::from_raw(&raw).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_a_trusted_proxy_the_header_is_ignored() {
        let s = settings(None, "X-Real-IP");
        assert_eq!(s.client_ip(ip("127.0.0.1"), Some("203.0.113.9")), ip("127.0.0.1"));
        assert_eq!(s.client_ip(ip("198.51.100.7"), Some("203.0.113.9")), ip("198.51.100.7"));
    }

    #[test]
    fn a_trusted_proxy_is_believed_and_only_it() {
        let s = settings(Some("127.0.0.1, 10.0.0.0/8"), "X-Real-IP");
        assert_eq!(s.client_ip(ip("127.0.0.1"), Some("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(s.client_ip(ip("10.4.5.6"), Some("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(s.client_ip(ip("::ffff:127.0.0.1"), Some("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(s.client_ip(ip("198.51.100.7"), Some("203.0.113.9")), ip("198.51.100.7"));
        assert_eq!(s.client_ip(ip("127.0.0.1"), Some("not an address")), ip("127.0.0.1"));
        assert_eq!(s.client_ip(ip("127.0.0.1"), None), ip("127.0.0.1"));
    }

    #[test]
    fn forwarded_for_takes_the_last_untrusted_hop() {
        let s = settings(Some("10.0.0.0/8"), "X-Forwarded-For");
        // The client wrote "1.1.1.1"; the proxies appended the real client and themselves.
        assert_eq!(s.client_ip(ip("10.0.0.2"), Some("1.1.1.1, 203.0.113.9, 10.0.0.1")), ip("203.0.113.9"));
        assert_eq!(s.client_ip(ip("198.51.100.7"), Some("203.0.113.9")), ip("198.51.100.7"));
    }

    #[test]
    fn bad_settings_are_named() {
        let raw = RawSettings { trusted_proxy: Some("127.0.0.1, nginx".into()), ..RawSettings::default() };
        assert!(ProxySettings::from_raw(&raw).unwrap_err().to_string().starts_with("TRUSTED_PROXY"));
        let raw = RawSettings { client_ip_header: "Forwarded".into(), ..RawSettings::default() };
        assert!(ProxySettings::from_raw(&raw).unwrap_err().to_string().starts_with("CLIENT_IP_HEADER"));
    }
}
