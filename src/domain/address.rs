//! Which addresses a webhook may go to. A webhook URL comes from the merchant's API request (or
//! the operator's `WEBHOOK_URL`), and the server POSTs to it from inside its own network: without
//! a rule, an order could make the server talk to its database, its admin ports or the cloud's
//! metadata service (server-side request forgery). The rule is pure: an [`IpAddr`] or a host
//! name in, a [`Refusal`] out. The checks at start-up, at order creation and at connect time
//! (after DNS resolution, in `payments::webhook_address`) all ask it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not a public one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    /// 0.0.0.0 and `::`: connecting to them reaches this machine.
    Unspecified,
    /// 0.0.0.0/8 other than 0.0.0.0.
    ThisNetwork,
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, and IPv6 site-local fec0::/10.
    Private,
    /// 100.64/10, carrier-grade NAT.
    SharedCgnat,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// fc00::/7.
    UniqueLocal,
    /// A cloud's instance metadata service (credentials live there): refused even when
    /// private addresses are allowed.
    Metadata,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    /// Reserved for protocols or future use; never a web server.
    Reserved,
}

impl AddressClass {
    /// The classes of an internal network, which `WEBHOOK_ALLOW_PRIVATE=on` allows for local
    /// testing. The others never are a merchant's web server (or are the metadata service).
    pub fn is_internal_network(self) -> bool {
        use AddressClass::*;
        matches!(self, Loopback | Private | SharedCgnat | LinkLocal | UniqueLocal)
    }

    fn describe(self) -> &'static str {
        use AddressClass::*;
        match self {
            Unspecified => "unspecified",
            ThisNetwork => "in \"this network\" (0.0.0.0/8)",
            Loopback => "loopback",
            Private => "private",
            SharedCgnat => "shared address space (CGNAT, 100.64.0.0/10)",
            LinkLocal => "link-local",
            UniqueLocal => "unique local (private IPv6)",
            Metadata => "a cloud metadata service",
            Multicast => "multicast",
            Broadcast => "broadcast",
            Documentation => "reserved for documentation",
            Benchmarking => "reserved for benchmarking",
            Reserved => "reserved",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Cloud metadata services at addresses of their own: AWS, GCP, Azure and OpenStack
/// (169.254.169.254), AWS ECS tasks (169.254.170.2), Tencent Cloud (169.254.0.23), Alibaba Cloud
/// (100.100.100.200), Azure's host (168.63.129.16, a public address), Oracle Cloud (192.0.0.192).
const METADATA_V4: [Ipv4Addr; 6] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 0, 23),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
    Ipv4Addr::new(192, 0, 0, 192),
];
/// AWS's metadata service over IPv6.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
/// Names of metadata services (others resolve to the addresses above and are refused then).
const METADATA_NAMES: [&str; 2] = ["metadata.google.internal", "metadata.tencentyun.com"];

/// IPv4 ranges that are not public, first match wins (255.255.255.255 before 240/4).
const V4_RANGES: [(Ipv4Addr, u32, AddressClass); 17] = {
    use AddressClass::*;
    [
        (Ipv4Addr::new(0, 0, 0, 0), 32, Unspecified),
        (Ipv4Addr::new(0, 0, 0, 0), 8, ThisNetwork),
        (Ipv4Addr::new(10, 0, 0, 0), 8, Private),
        (Ipv4Addr::new(100, 64, 0, 0), 10, SharedCgnat),
        (Ipv4Addr::new(127, 0, 0, 0), 8, Loopback),
        (Ipv4Addr::new(169, 254, 0, 0), 16, LinkLocal),
        (Ipv4Addr::new(172, 16, 0, 0), 12, Private),
        (Ipv4Addr::new(192, 0, 0, 0), 24, Reserved),
        (Ipv4Addr::new(192, 0, 2, 0), 24, Documentation),
        (Ipv4Addr::new(192, 88, 99, 0), 24, Reserved),
        (Ipv4Addr::new(192, 168, 0, 0), 16, Private),
        (Ipv4Addr::new(198, 18, 0, 0), 15, Benchmarking),
        (Ipv4Addr::new(198, 51, 100, 0), 24, Documentation),
        (Ipv4Addr::new(203, 0, 113, 0), 24, Documentation),
        (Ipv4Addr::new(224, 0, 0, 0), 4, Multicast),
        (Ipv4Addr::new(255, 255, 255, 255), 32, Broadcast),
        (Ipv4Addr::new(240, 0, 0, 0), 4, Reserved),
    ]
};

/// IPv6 ranges that are not public, after the forms that carry an IPv4 address (see
/// [`embedded_v4`]) have been judged by that address.
const V6_RANGES: [(Ipv6Addr, u32, AddressClass); 11] = {
    use AddressClass::*;
    [
        (Ipv6Addr::UNSPECIFIED, 128, Unspecified),
        (Ipv6Addr::LOCALHOST, 128, Loopback),
        (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, LinkLocal),
        (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, Private),
        (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, UniqueLocal),
        (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, Multicast),
        (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, Documentation),
        (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, Documentation),
        (Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0), 48, Benchmarking),
        (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, Reserved),
        // Local-use NAT64 (RFC 8215): its IPv4 part may sit anywhere, so the whole prefix goes.
        (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, Reserved),
    ]
};

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    if METADATA_V4.contains(&ip) {
        return Some(AddressClass::Metadata);
    }
    let bits = u32::from(ip);
    V4_RANGES.iter().find(|(net, len, _)| prefix_matches(bits, u32::from(*net), *len)).map(|(_, _, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if ip == METADATA_V6 {
        return Some(AddressClass::Metadata);
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let bits = u128::from(ip);
    V6_RANGES.iter().find(|(net, len, _)| prefix_matches(bits, u128::from(*net), *len)).map(|(_, _, class)| *class)
}

/// The IPv4 address an IPv6 address stands for, where the packets end up there: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, but
/// not `::` and `::1`), NAT64 (`64:ff9b::a.b.c.d`), 6to4 (`2002:AABB:CCDD::`) and Teredo
/// (`2001:0::`, the client's address inverted in the last 32 bits).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let last = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last),
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, _, _] => Some(last),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8)),
        [0x2001, 0, ..] => Some(Ipv4Addr::from(!u32::from(last))),
        _ => None,
    }
}

fn prefix_matches<T>(addr: T, net: T, len: u32) -> bool
where
    T: Copy + std::ops::Shr<u32, Output = T> + PartialEq,
{
    let width = (std::mem::size_of::<T>() * 8) as u32;
    len == 0 || addr >> (width - len) == net >> (width - len)
}

/// What kind of non-public host a name is by itself, before any lookup: `localhost` and
/// `*.localhost` (always loopback, RFC 6761) and the metadata services' names. Case and a
/// trailing dot do not matter.
pub fn classify_name(host: &str) -> Option<AddressClass> {
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        Some(AddressClass::Loopback)
    } else if METADATA_NAMES.contains(&name.as_str()) {
        Some(AddressClass::Metadata)
    } else {
        None
    }
}

/// The rule in force: every non-public address is refused, unless `allow_private`
/// (`WEBHOOK_ALLOW_PRIVATE=on`, for local testing) lets internal networks through. The metadata
/// services stay refused either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    pub allow_private: bool,
}

impl AddressPolicy {
    fn allows(self, class: AddressClass) -> bool {
        self.allow_private && class.is_internal_network()
    }

    /// `Err` when a webhook may not connect to `ip`.
    pub fn check_ip(self, ip: IpAddr) -> Result<(), Refusal> {
        match classify(ip) {
            Some(class) if !self.allows(class) => Err(Refusal { subject: format!("address {ip}"), class }),
            _ => Ok(()),
        }
    }

    /// `Err` when a webhook may not go to the host `name`, judged by the name alone.
    pub fn check_name(self, name: &str) -> Result<(), Refusal> {
        match classify_name(name) {
            Some(class) if !self.allows(class) => Err(Refusal { subject: format!("host {name}"), class }),
            _ => Ok(()),
        }
    }

    /// `Err` when a webhook may not go to the host of a parsed URL: an IP literal (in whatever
    /// spelling the URL parser normalised) by its address, a name by [`Self::check_name`].
    pub fn check_host(self, host: &url::Host<&str>) -> Result<(), Refusal> {
        match host {
            url::Host::Ipv4(v4) => self.check_ip(IpAddr::V4(*v4)),
            url::Host::Ipv6(v6) => self.check_ip(IpAddr::V6(*v6)),
            url::Host::Domain(name) => self.check_name(name),
        }
    }
}

/// A refused destination: "address 10.0.0.1 is private", "host localhost is loopback".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    subject: String,
    pub class: AddressClass,
}

impl Refusal {
    /// The same refusal for an address that `name` resolved to: "address 127.0.0.1 (localhost)".
    pub fn resolved_from(self, name: &str) -> Refusal {
        Refusal { subject: format!("{} ({name})", self.subject), ..self }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}", self.subject, self.class)
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests;
