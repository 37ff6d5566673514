//! `Key::build` writes the same canonical encoding and hash as `Key::new`,
//! and refuses what `Key::new` refuses.

use rask_store::key::{KEY_CONTEXT, KeyEncoder, MAX_DEPTH, MAX_KEY_LEN};
use rask_store::{Component, Error, Key, Namespace};

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

/// Appends `c` to `b` with the typed methods (not `KeyEncoder::component`),
/// as a caller without a component tree would.
fn write(b: &mut KeyEncoder<'_>, c: &Component) {
    match c {
        Component::Str(s) => {
            b.str(s);
        }
        Component::Hash(h) => {
            b.hash(h);
        }
        Component::U64(n) => {
            b.u64(*n);
        }
        Component::Bytes(bytes) => {
            b.bytes(bytes);
        }
        Component::List(items) => {
            b.list(|l| items.iter().for_each(|item| write(l, item)));
        }
        other => panic!("a component type this test does not know: {other:?}"),
    }
}

fn built(namespace: &Namespace, components: &[Component]) -> rask_store::Result<Key> {
    let mut b = Key::build(namespace);
    for c in components {
        write(&mut b, c);
    }
    b.finish()
}

/// The encoding written out from docs/FORMAT.md, independently of the library.
fn reference_encoding(namespace: &Namespace, components: &[Component]) -> Vec<u8> {
    fn component(c: &Component, out: &mut Vec<u8>) {
        let len = |n: usize| (n as u32).to_le_bytes();
        match c {
            Component::Str(s) => {
                out.push(0x01);
                out.extend(len(s.len()));
                out.extend(s.as_bytes());
            }
            Component::Hash(h) => {
                out.push(0x02);
                out.extend(h);
            }
            Component::U64(n) => {
                out.push(0x03);
                out.extend(n.to_le_bytes());
            }
            Component::List(items) => {
                out.push(0x04);
                out.extend(len(items.len()));
                items.iter().for_each(|item| component(item, out));
            }
            Component::Bytes(b) => {
                out.push(0x05);
                out.extend(len(b.len()));
                out.extend(b);
            }
            other => panic!("a component type this test does not know: {other:?}"),
        }
    }
    let mut out = vec![1, namespace.as_str().len() as u8];
    out.extend(namespace.as_str().as_bytes());
    out.extend((components.len() as u32).to_le_bytes());
    components.iter().for_each(|c| component(c, &mut out));
    out
}

fn nested(depth: usize, leaf: Component) -> Component {
    (0..depth).fold(leaf, |c, _| Component::List(vec![c]))
}

/// A spread of keys: every component type, empty and nested lists, unicode,
/// empty strings and bytes, extreme integers, long values.
fn cases() -> Vec<(Namespace, Vec<Component>)> {
    let s = Component::str;
    vec![
        (ns("a"), vec![]),
        (ns("rask-0.4"), vec![s("")]),
        (
            ns("rask-0.4"),
            vec![
                s("std"),
                Component::U64(1),
                Component::Hash([0x11; 32]),
                Component::List(vec![s("i32")]),
                Component::Bytes(vec![0xff]),
            ],
        ),
        (
            ns("x"),
            vec![
                Component::List(vec![]),
                Component::List(vec![Component::List(vec![])]),
                Component::Bytes(vec![]),
                Component::U64(0),
                Component::U64(u64::MAX),
            ],
        ),
        (
            ns("unicode"),
            vec![
                s("sørt<ĳ>"),
                s("函数"),
                s("🦀 crab"),
                Component::List(vec![s("Vec<ü8>"), s("\u{0}"), s("\u{10ffff}")]),
            ],
        ),
        (
            ns("deep"),
            vec![
                nested(MAX_DEPTH, Component::U64(3)),
                // An empty list at exactly the deepest allowed level.
                nested(MAX_DEPTH - 1, Component::List(vec![])),
            ],
        ),
        (
            ns("mixed"),
            vec![
                s("pkg"),
                Component::List(vec![
                    s("a"),
                    Component::List(vec![
                        Component::Hash([7; 32]),
                        Component::List(vec![Component::U64(9), Component::Bytes(vec![1, 2, 3])]),
                        s("b"),
                    ]),
                    Component::List(vec![]),
                    Component::U64(42),
                ]),
                Component::Hash([0; 32]),
                Component::List((0..300u64).map(Component::U64).collect()),
            ],
        ),
        (
            ns("long"),
            vec![s(&"q".repeat(10_000)), Component::Bytes(vec![0xab; 20_000])],
        ),
    ]
}

#[test]
fn built_keys_encode_and_hash_as_key_new_does() {
    for (namespace, components) in cases() {
        let new = Key::new(namespace.clone(), components.clone()).unwrap();
        let reference = reference_encoding(&namespace, &components);
        assert_eq!(new.encoding(), &reference[..], "{new}");
        assert_eq!(
            new.hash().as_bytes(),
            &blake3::derive_key(KEY_CONTEXT, &reference),
            "{new}"
        );
        let typed = built(&namespace, &components).unwrap();
        let mut b = Key::build(&namespace);
        components.iter().for_each(|c| {
            b.component(c);
        });
        let generic = b.finish().unwrap();
        for key in [&typed, &generic] {
            assert_eq!(key.encoding(), new.encoding(), "{new}");
            assert_eq!(key.hash(), new.hash(), "{new}");
            assert_eq!(key, &new);
            // The components are decoded on demand and are those given.
            assert_eq!(key.components(), &components[..], "{new}");
            assert_eq!(key.namespace(), &namespace);
            assert_eq!(key.to_string(), new.to_string());
        }
    }
}

#[test]
fn the_golden_key_built_has_the_pinned_hash() {
    let namespace = ns("rask-0.4");
    let mut b = Key::build(&namespace);
    b.str("std")
        .u64(1)
        .hash(&[0x11; 32])
        .list(|l| {
            l.str("i32");
        })
        .bytes(&[0xff]);
    let key = b.finish().unwrap();
    // The same pin as tests/key_encoding.rs: what every index file stores.
    assert_eq!(
        key.hash().to_hex(),
        "873b76c3e4cce03fbb840f94bca3fa5b95044de37061583f8c63d68d22ae0399"
    );
}

#[test]
fn a_decoded_key_equals_the_built_one() {
    for (namespace, components) in cases() {
        let key = built(&namespace, &components).unwrap();
        let back = Key::decode(key.encoding()).unwrap();
        assert_eq!(back, key);
        assert_eq!(back.components(), key.components());
    }
}

fn invalid_key_reason(result: rask_store::Result<Key>) -> String {
    match result {
        Err(Error::InvalidKey { reason, .. }) => reason,
        other => panic!("expected an invalid key error, got {other:?}"),
    }
}

#[test]
fn lists_too_deep_are_refused_like_key_new() {
    let namespace = ns("deep");
    let too_deep = vec![
        Component::str("a"),
        nested(MAX_DEPTH + 1, Component::U64(1)),
    ];
    let new = invalid_key_reason(Key::new(namespace.clone(), too_deep.clone()));
    let typed = invalid_key_reason(built(&namespace, &too_deep));
    assert_eq!(typed, new);
    assert!(typed.contains("nest deeper"), "{typed}");
    // An empty list one level too deep counts as well.
    let empty_leaf = vec![nested(MAX_DEPTH, Component::List(vec![]))];
    assert!(Key::new(namespace.clone(), empty_leaf.clone()).is_err());
    assert_eq!(
        invalid_key_reason(built(&namespace, &empty_leaf)),
        invalid_key_reason(Key::new(namespace, empty_leaf)),
    );
}

#[test]
fn keys_too_long_are_refused_like_key_new() {
    let namespace = ns("long");
    // Header (1 + 1 + 4 + 4 bytes) + tag and length (5) leave this many for the string.
    let fits = MAX_KEY_LEN - (2 + namespace.as_str().len() + 4 + 5);
    let at_limit = vec![Component::str("x".repeat(fits))];
    let key = built(&namespace, &at_limit).unwrap();
    assert_eq!(key.encoding().len(), MAX_KEY_LEN);
    assert_eq!(key, Key::new(namespace.clone(), at_limit).unwrap());

    let over = vec![Component::str("x".repeat(fits + 1))];
    let new = invalid_key_reason(Key::new(namespace.clone(), over.clone()));
    let typed = invalid_key_reason(built(&namespace, &over));
    assert_eq!(typed, new);
    assert!(typed.contains(&MAX_KEY_LEN.to_string()), "{typed}");

    // Long through many small components inside a list too.
    let many = vec![Component::List(vec![Component::U64(5); MAX_KEY_LEN / 9])];
    assert_eq!(
        invalid_key_reason(built(&namespace, &many)),
        invalid_key_reason(Key::new(namespace, many)),
    );
}
