//! Package metadata: the canonical encoding, its refusals, and the diff a
//! downstream package uses to decide what to rebuild.

use rask_store::Error;
use rask_store::compiler::{
    FunctionNode, Impact, InvalidationReason, PackageMetadata, PublicFunction, SemanticHash,
    SemanticHasher, UpstreamUse, diff, from_cbor, hash_call_graph, to_cbor,
};

fn fixed(byte: u8) -> SemanticHash {
    SemanticHash::from_bytes([byte; 32])
}

fn public(sig: u8, body: u8, generic: bool, params: &[&str]) -> PublicFunction {
    PublicFunction {
        signature_hash: fixed(sig),
        body_hash: fixed(body),
        is_generic: generic,
        type_params: params.iter().map(|p| p.to_string()).collect(),
    }
}

fn golden_value() -> PackageMetadata {
    let mut m = PackageMetadata::new("pkg", "v1");
    // Inserted out of order on purpose: the encoding sorts.
    m.public_functions
        .insert("b".into(), public(0x21, 0x22, true, &["T", "U"]));
    m.public_functions
        .insert("a".into(), public(0x11, 0x12, false, &[]));
    m.public_types.insert("Point".into(), fixed(0x31));
    m
}

/// Encodes a u32 LE length followed by the bytes.
fn s(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn u32le(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn seal(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(blake3::hash(body).as_bytes());
    out
}

fn header() -> Vec<u8> {
    b"RSKM\x01\x00\x00\x00".to_vec()
}

fn function_entry(id: &[u8], sig: u8, body: u8, flags: u8, params: &[&[u8]]) -> Vec<u8> {
    let mut out = s(id);
    out.extend_from_slice(&[sig; 32]);
    out.extend_from_slice(&[body; 32]);
    out.push(flags);
    out.extend(u32le(params.len() as u32));
    for p in params {
        out.extend(s(p));
    }
    out
}

fn type_entry(id: &[u8], hash: u8) -> Vec<u8> {
    let mut out = s(id);
    out.extend_from_slice(&[hash; 32]);
    out
}

fn body_with(functions: &[Vec<u8>], types: &[Vec<u8>]) -> Vec<u8> {
    let mut out = header();
    out.extend(s(b"pkg"));
    out.extend(s(b"v1"));
    out.extend(u32le(functions.len() as u32));
    for f in functions {
        out.extend_from_slice(f);
    }
    out.extend(u32le(types.len() as u32));
    for t in types {
        out.extend_from_slice(t);
    }
    out
}

#[test]
fn golden_encoding() {
    let expected = seal(&body_with(
        &[
            function_entry(b"a", 0x11, 0x12, 0, &[]),
            function_entry(b"b", 0x21, 0x22, 1, &[b"T", b"U"]),
        ],
        &[type_entry(b"Point", 0x31)],
    ));
    let encoded = golden_value().encode().unwrap();
    assert_eq!(hex(&encoded), hex(&expected));
    assert_eq!(encoded.len(), 8 + 7 + 6 + 4 + 74 + 84 + 4 + 41 + 32);
    assert_eq!(PackageMetadata::decode(&expected).unwrap(), golden_value());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn equal_values_encode_identically_and_unequal_ones_do_not() {
    let a = golden_value();
    let mut b = PackageMetadata::new("pkg", "v1");
    b.public_types.insert("Point".into(), fixed(0x31));
    b.public_functions
        .insert("a".into(), public(0x11, 0x12, false, &[]));
    b.public_functions
        .insert("b".into(), public(0x21, 0x22, true, &["T", "U"]));
    assert_eq!(a, b);
    assert_eq!(a.encode().unwrap(), b.encode().unwrap());

    let mut variants = Vec::new();
    let mut v = a.clone();
    v.package_id = "pkg2".into();
    variants.push(v);
    let mut v = a.clone();
    v.compiler_version = "v2".into();
    variants.push(v);
    let mut v = a.clone();
    v.public_functions.get_mut("b").unwrap().type_params = vec!["U".into(), "T".into()];
    variants.push(v);
    let mut v = a.clone();
    v.public_functions.get_mut("a").unwrap().is_generic = true;
    variants.push(v);
    let mut v = a.clone();
    v.public_types.clear();
    variants.push(v);
    // Moving bytes between adjacent strings must not collide.
    let mut v = a.clone();
    v.package_id = "pkgv".into();
    v.compiler_version = "1".into();
    variants.push(v);
    for (i, v) in variants.iter().enumerate() {
        assert_ne!(v.encode().unwrap(), a.encode().unwrap(), "variant {i}");
        assert_eq!(&PackageMetadata::decode(&v.encode().unwrap()).unwrap(), v);
    }
}

fn refusal(bytes: &[u8]) -> String {
    match PackageMetadata::decode(bytes) {
        Err(Error::Malformed { reason, .. }) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn non_canonical_bytes_are_refused() {
    let a = function_entry(b"a", 1, 2, 0, &[]);
    let b = function_entry(b"b", 1, 2, 0, &[]);
    let t = type_entry(b"T", 3);
    let u = type_entry(b"U", 3);

    let reason = refusal(&seal(&body_with(&[b.clone(), a.clone()], &[])));
    assert!(reason.contains("not sorted"), "{reason}");
    let reason = refusal(&seal(&body_with(&[a.clone(), a.clone()], &[])));
    assert!(reason.contains("appears twice"), "{reason}");
    let reason = refusal(&seal(&body_with(&[], &[u.clone(), t.clone()])));
    assert!(reason.contains("not sorted"), "{reason}");
    let reason = refusal(&seal(&body_with(&[], &[t.clone(), t.clone()])));
    assert!(reason.contains("appears twice"), "{reason}");

    let mut trailing = body_with(std::slice::from_ref(&a), std::slice::from_ref(&t));
    trailing.push(0);
    let reason = refusal(&seal(&trailing));
    assert!(reason.contains("1 trailing bytes"), "{reason}");

    let reason = refusal(&seal(&body_with(
        &[function_entry(b"a", 1, 2, 0x02, &[])],
        &[],
    )));
    assert!(reason.contains("unknown flag bits"), "{reason}");

    let reason = refusal(&seal(&body_with(
        &[function_entry(b"\xff", 1, 2, 0, &[])],
        &[],
    )));
    assert!(reason.contains("not valid UTF-8"), "{reason}");

    // A string length that runs past the end.
    let mut long = header();
    long.extend(u32le(1000));
    long.extend_from_slice(b"pkg");
    let reason = refusal(&seal(&long));
    assert!(reason.contains("needs 1000 bytes"), "{reason}");

    // A count that the remaining bytes cannot hold.
    let mut many = header();
    many.extend(s(b"pkg"));
    many.extend(s(b"v1"));
    many.extend(u32le(3));
    many.extend_from_slice(&a);
    let reason = refusal(&seal(&many));
    assert!(reason.contains("cannot fit"), "{reason}");

    let good = body_with(std::slice::from_ref(&a), std::slice::from_ref(&t));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(refusal(&seal(&bad)).contains("bad magic"));
    let mut bad = good.clone();
    bad[4] = 2;
    assert!(refusal(&seal(&bad)).contains("format version 2"));
    let mut bad = good.clone();
    bad[6] = 1;
    assert!(refusal(&seal(&bad)).contains("reserved"));
    let mut unsealed = seal(&good);
    let last = unsealed.len() - 1;
    unsealed[last] ^= 1;
    assert!(refusal(&unsealed).contains("checksum"));
    assert!(refusal(&[]).contains("shorter"));
}

#[test]
fn damaged_and_random_bytes_never_decode_or_panic() {
    let bytes = golden_value().encode().unwrap();
    for len in 0..bytes.len() {
        assert!(PackageMetadata::decode(&bytes[..len]).is_err());
    }
    let mut state = 0x1234_5678_u64;
    for round in 0..2000 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (state >> 33) as usize % 300;
        let mut garbage: Vec<u8> = (0..len)
            .map(|i| (state.rotate_left(i as u32 % 64) >> 7) as u8)
            .collect();
        if round % 2 == 0 && garbage.len() > 8 {
            garbage[..8].copy_from_slice(&header());
            garbage = seal(&garbage);
        }
        let _ = PackageMetadata::decode(&garbage);
    }
}

#[test]
fn diff_names_each_kind_of_change() {
    let old = golden_value();
    assert!(diff(&old, &old).is_empty());
    assert_eq!(diff(&old, &old).impact(), Impact::Unchanged);

    // Body change only.
    let mut new = old.clone();
    new.public_functions.get_mut("a").unwrap().body_hash = fixed(0x99);
    let d = diff(&old, &new);
    assert_eq!(d.changed_functions.len(), 1);
    assert_eq!(d.changed_functions[0].id, "a");
    assert!(d.changed_functions[0].body_changed);
    assert!(!d.changed_functions[0].signature_changed);
    assert_eq!(d.impact(), Impact::Partial);

    // Signature change (hash, genericity, or type parameters).
    for edit in [
        |f: &mut PublicFunction| f.signature_hash = fixed(0x98),
        |f: &mut PublicFunction| f.is_generic = false,
        |f: &mut PublicFunction| f.type_params.push("V".into()),
    ] {
        let mut new = old.clone();
        edit(new.public_functions.get_mut("b").unwrap());
        let d = diff(&old, &new);
        assert_eq!(d.changed_functions.len(), 1);
        assert!(d.changed_functions[0].signature_changed);
        assert!(!d.changed_functions[0].body_changed);
        assert_eq!(d.impact(), Impact::Full);
    }

    // Added and removed functions.
    let mut new = old.clone();
    new.public_functions.remove("a");
    new.public_functions
        .insert("c".into(), public(1, 2, false, &[]));
    let d = diff(&old, &new);
    assert_eq!(d.removed_functions, ["a"]);
    assert_eq!(d.added_functions, ["c"]);
    assert!(d.changed_functions.is_empty());

    // Types: added, removed, changed.
    let mut new = old.clone();
    new.public_types.insert("Point".into(), fixed(0x77));
    new.public_types.insert("Rect".into(), fixed(0x78));
    let d = diff(&old, &new);
    assert_eq!(d.changed_types, ["Point"]);
    assert_eq!(d.added_types, ["Rect"]);
    let d = diff(&new, &old);
    assert_eq!(d.removed_types, ["Rect"]);
    assert_eq!(d.impact(), Impact::Partial);

    // Compiler and package identity.
    let mut new = old.clone();
    new.compiler_version = "v2".into();
    let d = diff(&old, &new);
    assert_eq!(
        d.compiler_version_changed,
        Some(("v1".to_string(), "v2".to_string()))
    );
    assert_eq!(d.impact(), Impact::Full);
}

#[test]
fn invalidated_names_exactly_the_affected_users() {
    let old = golden_value();
    let mut new = old.clone();
    new.public_functions.get_mut("a").unwrap().body_hash = fixed(0x99);
    new.public_types.insert("Point".into(), fixed(0x77));
    let uses = vec![
        UpstreamUse {
            user: "main".into(),
            functions: vec!["a".into()],
            types: vec![],
        },
        UpstreamUse {
            user: "b<Point>".into(),
            functions: vec!["b".into()],
            types: vec!["Point".into()],
        },
        UpstreamUse {
            user: "b<i32>".into(),
            functions: vec!["b".into()],
            types: vec![],
        },
    ];
    let d = diff(&old, &new);
    let hit = d.invalidated(&uses);
    let users: Vec<&str> = hit.iter().map(|i| i.user.as_str()).collect();
    assert_eq!(users, ["b<Point>", "main"]);
    assert_eq!(
        hit[0].reasons,
        [InvalidationReason::TypeChanged("Point".into())]
    );
    assert_eq!(
        hit[1].reasons,
        [InvalidationReason::FunctionBodyChanged("a".into())]
    );

    // A removed function invalidates its callers; a compiler change
    // invalidates everyone.
    let mut removed = old.clone();
    removed.public_functions.remove("b");
    let hit = diff(&old, &removed).invalidated(&uses);
    let users: Vec<&str> = hit.iter().map(|i| i.user.as_str()).collect();
    assert_eq!(users, ["b<Point>", "b<i32>"]);
    let mut upgraded = old.clone();
    upgraded.compiler_version = "v2".into();
    assert_eq!(diff(&old, &upgraded).invalidated(&uses).len(), 3);
    assert!(diff(&old, &old).invalidated(&uses).is_empty());
}

/// The seed note's cross-package example, end to end through the hasher,
/// the call graph and the metadata.
#[test]
fn seed_cross_package_builds() {
    // public func sort<T>(items) { let n = items.len(); ... compare(...) }
    fn sort_body(items: &str, n: &str, algorithm: &str) -> SemanticHash {
        let mut h = SemanticHasher::new();
        h.begin_node("func");
        h.bind_local(items);
        h.type_annotation("Vec<T>");
        h.begin_node("let");
        h.begin_node("method");
        h.symbol("len");
        h.use_local(items);
        h.end_node();
        h.bind_local(n);
        h.end_node();
        h.begin_node("call");
        h.callee("collections", "compare");
        h.literal_str(algorithm);
        h.use_local(n);
        h.end_node();
        h.end_node();
        h.finish().unwrap()
    }
    fn export(sort: SemanticHash) -> Vec<u8> {
        let hashes = hash_call_graph(&[
            FunctionNode {
                id: "sort".into(),
                body_hash: sort,
                callees: vec!["compare".into()],
                external_callees: vec![],
            },
            FunctionNode {
                id: "compare".into(),
                body_hash: SemanticHash::from_bytes([7; 32]),
                callees: vec![],
                external_callees: vec![],
            },
        ])
        .unwrap();
        let mut m = PackageMetadata::new("collections", "rask 0.9.0");
        m.public_functions.insert(
            "sort".into(),
            PublicFunction {
                signature_hash: SemanticHash::from_bytes([1; 32]),
                body_hash: hashes.get("sort").unwrap(),
                is_generic: true,
                type_params: vec!["T".into()],
            },
        );
        m.encode().unwrap()
    }
    let build1 = export(sort_body("items", "n", "quicksort"));
    let build2 = export(sort_body("items", "n", "mergesort"));
    let build3 = export(sort_body("values", "count", "mergesort"));
    assert_ne!(
        build1, build2,
        "algorithm change: downstream sort<i32> re-keys"
    );
    assert_eq!(build2, build3, "local rename: byte-identical metadata");
    let d = diff(
        &PackageMetadata::decode(&build1).unwrap(),
        &PackageMetadata::decode(&build2).unwrap(),
    );
    assert_eq!(d.impact(), Impact::Partial);
    let d = diff(
        &PackageMetadata::decode(&build2).unwrap(),
        &PackageMetadata::decode(&build3).unwrap(),
    );
    assert_eq!(d.impact(), Impact::Unchanged);

    // Downstream: myapp's process() calls collections.sort; its hash folds
    // in the callee hash from the upstream metadata.
    let process = |upstream: &[u8]| {
        let meta = PackageMetadata::decode(upstream).unwrap();
        let hashes = hash_call_graph(&[FunctionNode {
            id: "process".into(),
            body_hash: SemanticHash::from_bytes([9; 32]),
            callees: vec![],
            external_callees: vec![meta.external_callee("sort").unwrap()],
        }])
        .unwrap();
        hashes.get("process").unwrap()
    };
    assert_ne!(process(&build1), process(&build2));
    assert_eq!(process(&build2), process(&build3));
}

#[test]
fn cbor_helper_round_trips_compiler_artifacts() {
    let m = golden_value();
    let bytes = to_cbor(&m).unwrap();
    assert_eq!(from_cbor::<PackageMetadata>(&bytes).unwrap(), m);
    let err = from_cbor::<PackageMetadata>(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
}
