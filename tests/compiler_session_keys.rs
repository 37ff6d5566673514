//! Compiler identities → namespaces, and the golden key encoding of every tier.

use rask_store::compiler::{CacheKey, CompilerId, ContentHash, KeyBuilder, SemanticHash, Tier};
use rask_store::{Component, Key, Namespace};

fn h(byte: u8) -> SemanticHash {
    SemanticHash::from_bytes([byte; 32])
}

/// The documented composite-key layout, written out by hand:
/// version 1 ‖ u8 ns len ‖ ns ‖ u32 count ‖ components.
fn expected(ns: &str, parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![1u8, ns.len() as u8];
    out.extend_from_slice(ns.as_bytes());
    out.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn s(text: &str) -> Vec<u8> {
    let mut out = vec![0x01];
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

fn hash(byte: u8) -> Vec<u8> {
    let mut out = vec![0x02];
    out.extend_from_slice(&[byte; 32]);
    out
}

fn list(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0x04];
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for i in items {
        out.extend_from_slice(i);
    }
    out
}

const NS: &str = "rask-1.0-0011223344556677";

fn builder() -> KeyBuilder {
    KeyBuilder::new(Namespace::new(NS).unwrap())
}

#[test]
fn parse_tier_key_bytes_are_golden() {
    let key = builder()
        .parse(ContentHash::from_bytes([0xaa; 32]))
        .unwrap();
    assert_eq!(key.tier(), Tier::Parse);
    assert_eq!(
        key.key().encoding(),
        expected(NS, &[s("parse"), hash(0xaa)])
    );
    assert_eq!(
        key.key().hash().to_hex(),
        "e24079ba02994c1d9973259db39235690d126ad8d56c808379653138bd2a8473",
        "the parse-tier key hash changed: a format change needs a version bump"
    );
}

#[test]
fn function_tier_key_bytes_are_golden() {
    let key = builder().function("collections", "swap", &h(1)).unwrap();
    assert_eq!(
        key.key().encoding(),
        expected(NS, &[s("function"), s("collections"), s("swap"), hash(1)])
    );
    assert_eq!(key.function_id(), Some("swap"));
    assert_eq!(
        key.key().hash().to_hex(),
        "4f48f221702755746fd0e345d667ba16adfc84db0820b5b73c52dda3920991e0"
    );
}

#[test]
fn instance_tier_key_bytes_are_golden() {
    let key = builder()
        .instance(
            "collections",
            "sort",
            &["Point", "i32"],
            &h(2),
            &[h(3), h(4)],
        )
        .unwrap();
    assert_eq!(
        key.key().encoding(),
        expected(
            NS,
            &[
                s("instance"),
                s("collections"),
                s("sort"),
                list(&[s("Point"), s("i32")]),
                hash(2),
                list(&[hash(3), hash(4)]),
            ]
        )
    );
    assert_eq!(key.function_id(), Some("sort"));
    assert_eq!(
        key.key().hash().to_hex(),
        "687385568b11fb9000901b64afae08b65a2a0ab5090376fbdcc604a856ef83fb"
    );
}

#[test]
fn comptime_tier_key_bytes_are_golden() {
    let key = builder().comptime("lookup_table", &h(5), &h(6)).unwrap();
    assert_eq!(
        key.key().encoding(),
        expected(NS, &[s("comptime"), s("lookup_table"), hash(5), hash(6)])
    );
    assert_eq!(key.function_id(), Some("lookup_table"));
    assert_eq!(
        key.key().hash().to_hex(),
        "1d97ceec68ae91b3c06ffde1a3c923b83a4538989d488ab0cf87a27f7b598cf1"
    );
}

#[test]
fn keys_of_different_tiers_never_collide_even_with_the_same_values() {
    let b = builder();
    let keys = [
        b.function("p", "f", &h(1)).unwrap(),
        b.comptime("f", &h(1), &h(1)).unwrap(),
        b.instance("p", "f", &[] as &[&str], &h(1), &[]).unwrap(),
        b.parse(ContentHash::from_bytes([1; 32])).unwrap(),
    ];
    for (i, a) in keys.iter().enumerate() {
        for c in &keys[i + 1..] {
            assert_ne!(a.key().hash(), c.key().hash(), "{a} vs {c}");
        }
    }
}

#[test]
fn stored_keys_read_back_as_tier_keys_and_other_shapes_are_refused() {
    let b = builder();
    let key = b
        .instance("collections", "sort", &["Point"], &h(2), &[h(3)])
        .unwrap();
    let back = CacheKey::from_key(Key::decode(key.key().encoding()).unwrap()).unwrap();
    assert_eq!(back, key);
    let ns = Namespace::new(NS).unwrap();
    for components in [
        vec![],
        vec![Component::str("nonsense")],
        vec![Component::str("function"), Component::str("p")],
        vec![
            Component::str("function"),
            Component::str("p"),
            Component::str("f"),
            Component::str("not a hash"),
        ],
        vec![Component::str("meta")],
    ] {
        let key = Key::new(ns.clone(), components.clone()).unwrap();
        assert!(CacheKey::from_key(key).is_err(), "{components:?}");
    }
}

#[test]
fn the_namespace_of_an_identity_is_readable_stable_and_golden() {
    let rask = CompilerId::new("rask", "0.9.0").with_setting("target", "x86_64-linux");
    let ns = rask.namespace().unwrap();
    assert_eq!(ns.as_str(), "rask-0.9.0-b2565eed7dc9ec4a");
    // Settings are a set: their order does not matter.
    let reordered = CompilerId::new("rask", "0.9.0")
        .with_setting("edition", "2026")
        .with_setting("target", "x86_64-linux");
    let ordered = CompilerId::new("rask", "0.9.0")
        .with_setting("target", "x86_64-linux")
        .with_setting("edition", "2026");
    assert_eq!(reordered.namespace().unwrap(), ordered.namespace().unwrap());
    assert_ne!(ordered.namespace().unwrap(), ns);
}

#[test]
fn identities_that_sanitize_alike_still_get_different_namespaces() {
    let a = CompilerId::new("rask", "1.0 (nightly)")
        .namespace()
        .unwrap();
    let b = CompilerId::new("rask", "1.0_(nightly)")
        .namespace()
        .unwrap();
    let c = CompilerId::new("rask", "1.0__nightly_")
        .namespace()
        .unwrap();
    assert!(a.as_str().starts_with("rask-1.0__nightly_-"), "{a}");
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_ne!(b, c);
    let release = CompilerId::new("rask", "1.0").with_setting("target", "arm64");
    let other = CompilerId::new("rask", "1.0").with_setting("target", "x86_64");
    assert_ne!(release.namespace().unwrap(), other.namespace().unwrap());
    // A version that is all disallowed characters still makes a valid name.
    let odd = CompilerId::new(".rask/ü", "  ").namespace().unwrap();
    assert!(odd.as_str().starts_with("_rask__-__-"), "{odd}");
}
