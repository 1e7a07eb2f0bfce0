//! Property tests of the v2 signature and the XML codec over arbitrary field maps.

use std::collections::BTreeMap;

use proptest::prelude::*;
use wechat_checkout::wxpay::sign::{self, ApiKey, SignType, VerifyError};
use wechat_checkout::wxpay::xml::{self, Fields};

fn key() -> ApiKey {
    ApiKey::new("192006250b4c09247ec02edce69f6a2d").unwrap()
}

fn field_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,20}".prop_filter("sign is the signature itself", |k| k != "sign" && k != "sign_type")
}

/// Any text, Chinese and control characters included, except NUL (which XML cannot carry at all).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9]{1,32}",
        "[\\u{4e00}-\\u{9fa5}a-z ,&<>'\"]{1,40}",
        any::<String>().prop_map(|s| s.replace('\0', "")),
    ]
}

fn field_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(field_name(), value(), 1..16)
}

fn sign_type() -> impl Strategy<Value = SignType> {
    prop_oneof![Just(SignType::Md5), Just(SignType::HmacSha256)]
}

fn signed(map: &BTreeMap<String, String>, st: SignType) -> Fields {
    let mut fields: Fields = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let s = sign::sign(fields.pairs(), &key(), st);
    fields.insert("sign", s);
    fields
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn sign_then_verify_round_trips(map in field_map(), st in sign_type()) {
        let fields = signed(&map, st);
        prop_assert_eq!(sign::verify(fields.pairs(), &key(), st), Ok(()));
    }

    #[test]
    fn changing_any_field_breaks_the_signature(map in field_map(), st in sign_type(), pick in any::<prop::sample::Index>(), new in value()) {
        let fields = signed(&map, st);
        let keys: Vec<&String> = map.keys().collect();
        let k = keys[pick.index(keys.len())];
        prop_assume!(new != map[k] && !(new.is_empty() && map[k].is_empty()));
        let mut tampered = fields.clone();
        tampered.insert(k.clone(), new);
        prop_assert_eq!(sign::verify(tampered.pairs(), &key(), st), Err(VerifyError::Mismatch));
    }

    #[test]
    fn adding_a_field_breaks_the_signature(map in field_map(), st in sign_type(), k in field_name(), v in "[a-z0-9]{1,10}") {
        prop_assume!(!map.contains_key(&k));
        let mut fields = signed(&map, st);
        fields.insert(k, v);
        prop_assert_eq!(sign::verify(fields.pairs(), &key(), st), Err(VerifyError::Mismatch));
    }

    #[test]
    fn dropping_a_field_breaks_the_signature(map in field_map(), st in sign_type(), pick in any::<prop::sample::Index>()) {
        let keys: Vec<&String> = map.keys().collect();
        let k = keys[pick.index(keys.len())];
        prop_assume!(!map[k].is_empty());
        let mut fields = signed(&map, st);
        fields.remove(k);
        prop_assert_eq!(sign::verify(fields.pairs(), &key(), st), Err(VerifyError::Mismatch));
    }

    #[test]
    fn a_signature_from_another_key_never_verifies(map in field_map(), st in sign_type()) {
        let other = ApiKey::new("00000000000000000000000000000000").unwrap();
        let mut fields: Fields = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let s = sign::sign(fields.pairs(), &other, st);
        fields.insert("sign", s);
        prop_assert_eq!(sign::verify(fields.pairs(), &key(), st), Err(VerifyError::Mismatch));
    }

    #[test]
    fn the_other_algorithm_never_verifies(map in field_map(), st in sign_type()) {
        let other = if st == SignType::Md5 { SignType::HmacSha256 } else { SignType::Md5 };
        let fields = signed(&map, other);
        prop_assert_eq!(sign::verify(fields.pairs(), &key(), st), Err(VerifyError::OtherAlgorithm { expected: st }));
    }

    #[test]
    fn xml_write_then_read_round_trips(map in field_map()) {
        let fields: Fields = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let doc = fields.to_xml();
        prop_assert_eq!(xml::parse_with(doc.as_bytes(), xml::ReadOptions { max_bytes: usize::MAX, ..Default::default() }), Ok(fields));
    }

    #[test]
    fn signed_messages_survive_the_wire(map in field_map(), st in sign_type()) {
        let fields = signed(&map, st);
        let received = xml::parse_with(fields.to_xml().as_bytes(), xml::ReadOptions { max_bytes: usize::MAX, ..Default::default() }).unwrap();
        prop_assert_eq!(sign::verify(received.pairs(), &key(), st), Ok(()));
    }
}
