//! The canonical key encoding: golden bytes, what changes a key, and
//! agreement between processes.

use std::process::Command;

use rask_store::{Component, Key, Namespace};

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

fn golden_key() -> Key {
    Key::new(
        ns("rask-0.4"),
        vec![
            Component::str("std"),
            Component::U64(1),
            Component::Hash([0x11; 32]),
            Component::List(vec![Component::str("i32")]),
            Component::Bytes(vec![0xff]),
        ],
    )
    .unwrap()
}

#[test]
fn a_fixed_key_encodes_to_the_documented_bytes() {
    let expected = [
        "01",                 // key encoding version
        "08",                 // namespace length
        "7261736b2d302e34",   // "rask-0.4"
        "05000000",           // 5 components
        "01030000007374 64",  // string "std"
        "030100000000000000", // u64 1
        "02",                 // hash
        &"11".repeat(32),
        "0401000000",       // list of 1
        "0103000000693332", // string "i32"
        "0501000000ff",     // bytes [ff]
    ]
    .concat()
    .replace(' ', "");
    let key = golden_key();
    assert_eq!(hex::encode(key.encoding()), expected);
    // The hash is pinned too: it is what every index file on every machine stores.
    assert_eq!(
        key.hash().to_hex(),
        "873b76c3e4cce03fbb840f94bca3fa5b95044de37061583f8c63d68d22ae0399",
        "the key hash of the golden key changed"
    );
    // It is not a plain BLAKE3 of the encoding, nor an object id of it.
    assert_ne!(
        key.hash().as_bytes(),
        blake3::hash(key.encoding()).as_bytes()
    );
}

#[test]
fn component_order_type_nesting_and_namespace_all_matter() {
    let base = Key::new(ns("a"), vec![Component::str("x"), Component::str("y")]).unwrap();
    let variants = [
        Key::new(ns("a"), vec![Component::str("y"), Component::str("x")]).unwrap(),
        Key::new(ns("b"), vec![Component::str("x"), Component::str("y")]).unwrap(),
        Key::new(ns("a"), vec![Component::str("xy")]).unwrap(),
        Key::new(
            ns("a"),
            vec![Component::str("x"), Component::Bytes(b"y".to_vec())],
        )
        .unwrap(),
        Key::new(
            ns("a"),
            vec![Component::List(vec![
                Component::str("x"),
                Component::str("y"),
            ])],
        )
        .unwrap(),
        Key::new(
            ns("a"),
            vec![
                Component::List(vec![Component::str("x")]),
                Component::str("y"),
            ],
        )
        .unwrap(),
        Key::new(
            ns("a"),
            vec![
                Component::str("x"),
                Component::str("y"),
                Component::List(vec![]),
            ],
        )
        .unwrap(),
    ];
    for v in &variants {
        assert_ne!(v.encoding(), base.encoding(), "{v} encodes like {base}");
        assert_ne!(v.hash(), base.hash(), "{v} hashes like {base}");
    }
    assert_ne!(
        Key::new(ns("a"), vec![Component::U64(1)]).unwrap().hash(),
        Key::new(ns("a"), vec![Component::str("u:1")])
            .unwrap()
            .hash()
    );
    // Equal keys built separately are equal, byte for byte.
    assert_eq!(golden_key().encoding(), golden_key().encoding());
}

#[test]
fn two_processes_compute_the_same_key_hash() {
    let bin = env!("CARGO_BIN_EXE_rask-store");
    let hash = format!("b3:{}", "11".repeat(32));
    let args = [
        "entry", "key", "--ns", "rask-0.4", "std", "u:1", &hash, "[", "i32", "]", "x:ff",
    ];
    let run = || {
        let out = Command::new(bin).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    let second = run();
    assert_eq!(first, second);
    let expected = golden_key();
    assert!(
        first.contains(&expected.hash().to_hex()),
        "the CLI printed {first}, the library computes {}",
        expected.hash()
    );
    assert!(first.contains(&hex::encode(expected.encoding())));
}

#[test]
fn malformed_command_line_components_are_refused() {
    let bin = env!("CARGO_BIN_EXE_rask-store");
    for bad in ["u:12x", "b3:abc", "x:1", "["] {
        let out = Command::new(bin)
            .args(["entry", "key", "--ns", "n", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid key"));
    }
}
