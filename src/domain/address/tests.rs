//! The address rule as a table: every range, in both IP versions and every IPv6 form that
//! carries an IPv4 address, against what `WEBHOOK_ALLOW_PRIVATE` changes.

use std::net::IpAddr;

use super::AddressClass::*;
use super::*;

const STRICT: AddressPolicy = AddressPolicy { allow_private: false };
const LOCAL: AddressPolicy = AddressPolicy { allow_private: true };

/// (address, its class or None for public).
const TABLE: &[(&str, Option<AddressClass>)] = &[
    // Public addresses, including neighbours of the ranges below.
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("9.255.255.255", None),
    ("11.0.0.0", None),
    ("100.63.255.255", None),
    ("100.128.0.0", None),
    ("126.255.255.255", None),
    ("128.0.0.0", None),
    ("169.253.255.255", None),
    ("172.15.255.255", None),
    ("172.32.0.0", None),
    ("192.167.255.255", None),
    ("192.169.0.0", None),
    ("223.255.255.255", None),
    ("2400:3200::1", None),
    ("2001:4860:4860::8888", None),
    ("::ffff:8.8.8.8", None),
    ("64:ff9b::808:808", None),
    ("2002:808:808::1", None),
    // IPv4.
    ("0.0.0.0", Some(Unspecified)),
    ("0.1.2.3", Some(ThisNetwork)),
    ("127.0.0.1", Some(Loopback)),
    ("127.255.255.254", Some(Loopback)),
    ("10.0.0.1", Some(Private)),
    ("10.255.255.255", Some(Private)),
    ("172.16.0.1", Some(Private)),
    ("172.31.255.255", Some(Private)),
    ("192.168.1.1", Some(Private)),
    ("169.254.1.1", Some(LinkLocal)),
    ("100.64.0.1", Some(SharedCgnat)),
    ("100.127.255.255", Some(SharedCgnat)),
    ("169.254.169.254", Some(Metadata)),
    ("169.254.170.2", Some(Metadata)),
    ("169.254.0.23", Some(Metadata)),
    ("100.100.100.200", Some(Metadata)),
    ("168.63.129.16", Some(Metadata)),
    ("192.0.0.192", Some(Metadata)),
    ("192.0.0.8", Some(Reserved)),
    ("192.0.2.1", Some(Documentation)),
    ("198.51.100.7", Some(Documentation)),
    ("203.0.113.7", Some(Documentation)),
    ("198.18.0.1", Some(Benchmarking)),
    ("198.19.255.255", Some(Benchmarking)),
    ("224.0.0.1", Some(Multicast)),
    ("239.255.255.250", Some(Multicast)),
    ("240.0.0.1", Some(Reserved)),
    ("255.255.255.255", Some(Broadcast)),
    // IPv6.
    ("::", Some(Unspecified)),
    ("::1", Some(Loopback)),
    ("fe80::1", Some(LinkLocal)),
    ("febf::1", Some(LinkLocal)),
    ("fec0::1", Some(Private)),
    ("fc00::1", Some(UniqueLocal)),
    ("fd00::1", Some(UniqueLocal)),
    ("fd00:ec2::254", Some(Metadata)),
    ("ff02::1", Some(Multicast)),
    ("2001:db8::1", Some(Documentation)),
    ("3fff::1", Some(Documentation)),
    ("2001:2::1", Some(Benchmarking)),
    ("100::1", Some(Reserved)),
    ("64:ff9b:1::a00:1", Some(Reserved)),
    // IPv6 forms of IPv4 addresses are judged by the IPv4 address.
    ("::ffff:127.0.0.1", Some(Loopback)),
    ("::ffff:10.0.0.1", Some(Private)),
    ("::ffff:169.254.169.254", Some(Metadata)),
    ("::ffff:100.64.0.1", Some(SharedCgnat)),
    ("::ffff:0.0.0.0", Some(Unspecified)),
    ("::ffff:0:192.168.0.1", Some(Private)),
    ("::127.0.0.1", Some(Loopback)),
    ("::10.0.0.1", Some(Private)),
    ("::169.254.169.254", Some(Metadata)),
    ("64:ff9b::127.0.0.1", Some(Loopback)),
    ("64:ff9b::10.1.2.3", Some(Private)),
    ("64:ff9b::a9fe:a9fe", Some(Metadata)),
    ("2002:7f00:1::", Some(Loopback)),
    ("2002:c0a8:101::1", Some(Private)),
    // Teredo: the client 10.0.0.1 inverted is f5ff:fffe.
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", Some(Private)),
];

#[test]
fn every_range_is_classified() {
    for (text, class) in TABLE {
        let ip: IpAddr = text.parse().unwrap();
        assert_eq!(classify(ip), *class, "{text}");
    }
}

#[test]
fn the_policy_refuses_each_non_public_address_and_allow_private_lifts_only_internal_networks() {
    for (text, class) in TABLE {
        let ip: IpAddr = text.parse().unwrap();
        match class {
            None => {
                assert_eq!(STRICT.check_ip(ip), Ok(()), "{text}");
                assert_eq!(LOCAL.check_ip(ip), Ok(()), "{text}");
            }
            Some(class) => {
                let refused = STRICT.check_ip(ip).unwrap_err();
                assert_eq!(refused.class, *class, "{text}");
                assert_eq!(refused.to_string(), format!("address {ip} is {class}"));
                let internal = matches!(class, Loopback | Private | SharedCgnat | LinkLocal | UniqueLocal);
                assert_eq!(LOCAL.check_ip(ip).is_ok(), internal, "{text} with WEBHOOK_ALLOW_PRIVATE=on");
            }
        }
    }
}

#[test]
fn refusals_read_as_a_reason() {
    let refused = STRICT.check_ip("10.0.0.1".parse().unwrap()).unwrap_err();
    assert_eq!(refused.to_string(), "address 10.0.0.1 is private");
    assert_eq!(refused.resolved_from("hooks.example").to_string(), "address 10.0.0.1 (hooks.example) is private");
    assert_eq!(STRICT.check_name("localhost").unwrap_err().to_string(), "host localhost is loopback");
}

#[test]
fn names_are_judged_before_any_lookup() {
    for (name, class) in [
        ("localhost", Some(Loopback)),
        ("LOCALHOST.", Some(Loopback)),
        ("shop.localhost", Some(Loopback)),
        ("metadata.google.internal", Some(Metadata)),
        ("Metadata.Google.Internal.", Some(Metadata)),
        ("metadata.tencentyun.com", Some(Metadata)),
        ("localhost.example.com", None),
        ("notlocalhost", None),
        ("merchant.example", None),
    ] {
        assert_eq!(classify_name(name), class, "{name}");
        assert_eq!(STRICT.check_name(name).is_ok(), class.is_none(), "{name}");
    }
    assert!(LOCAL.check_name("localhost").is_ok());
    assert!(LOCAL.check_name("metadata.google.internal").is_err(), "metadata stays refused");
}

#[test]
fn url_hosts_are_judged_in_every_spelling_the_parser_normalises() {
    for url in [
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0x7f.0.0.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[0:0:0:0:0:ffff:127.0.0.1]/",
        "http://LOCALHOST/",
        "http://localhost./",
        "http://[fd00:ec2::254]/",
    ] {
        let parsed = url::Url::parse(url).unwrap();
        assert!(STRICT.check_host(&parsed.host().unwrap()).is_err(), "{url} is {:?}", parsed.host());
    }
    let public = url::Url::parse("https://134744072/").unwrap();
    assert_eq!(STRICT.check_host(&public.host().unwrap()), Ok(()), "8.8.8.8 spelt as a number");
}
