//! Objects go in and come back out byte for byte, under stable ids.

mod common;

use std::fs;

use common::{files_under, pseudo_random};
use rask_store::object::PARALLEL_MIN;
use rask_store::object::compute_id;
use rask_store::{Durability, Error, Kind, ObjectBuf, ObjectId, Store, StoreOptions};

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), StoreOptions::default()).unwrap();
    (dir, store)
}

#[test]
fn empty_small_and_large_payloads_round_trip_with_links() {
    let (_dir, store) = new_store();
    let empty = store.put_object(Kind::Blob, &[], b"").unwrap();
    let small = store
        .put_object(Kind::Ast, &[empty], b"fn main() {}")
        .unwrap();
    let large_payload = pseudo_random(10 << 20, 7);
    let large = store
        .put_object(Kind::Instance, &[empty, small], &large_payload)
        .unwrap();

    let got = store.get_object(&empty).unwrap();
    assert_eq!(
        (got.kind(), got.payload(), got.links()),
        (Kind::Blob, &b""[..], &[][..])
    );
    let got = store.get_object(&small).unwrap();
    assert_eq!(
        (got.kind(), got.payload(), got.links()),
        (Kind::Ast, &b"fn main() {}"[..], &[empty][..])
    );
    let got = store.get_object(&large).unwrap();
    assert_eq!(got.kind(), Kind::Instance);
    assert_eq!(got.links(), &[empty, small]);
    assert!(
        got.payload() == large_payload.as_slice(),
        "10 MB payload differs"
    );
    assert_eq!(got.into_payload(), large_payload);
}

#[test]
fn one_reused_buffer_reads_back_every_object_exactly() {
    let (_dir, store) = new_store();
    let empty = store.put_object(Kind::Blob, &[], b"").unwrap();
    // Sizes that grow and shrink, around the two-thread hash threshold and
    // past 10 MB, with and without links: each read must see only its own
    // bytes, never the longer object's left in the buffer.
    let mut objects = Vec::new();
    for (seed, len) in [
        3000,
        PARALLEL_MIN + 5000,
        17,
        10 << 20,
        0,
        PARALLEL_MIN - 1,
        200_000,
        1,
    ]
    .into_iter()
    .enumerate()
    {
        let payload = pseudo_random(len, seed as u64);
        let links: Vec<ObjectId> = vec![empty; seed % 3];
        let kind = if seed % 2 == 0 { Kind::Ast } else { Kind::Memo };
        let id = store.put_object(kind, &links, &payload).unwrap();
        objects.push((id, kind, links, payload));
    }
    let mut buf = ObjectBuf::new();
    for _ in 0..2 {
        for (id, kind, links, payload) in &objects {
            let got = store.get_object_into(id, &mut buf).unwrap();
            assert_eq!((got.id(), got.kind()), (*id, *kind));
            assert_eq!(got.links(), &links[..]);
            assert!(
                got.payload() == payload.as_slice(),
                "{} bytes differ",
                payload.len()
            );
            // The same object as the allocating get returns.
            let owned = store.get_object(id).unwrap();
            assert_eq!(owned.payload(), got.payload());
        }
    }
    assert!(
        buf.capacity() >= 10 << 20,
        "the buffer keeps its largest size"
    );
    let missing = ObjectId::from_bytes([9; 32]);
    let err = store.get_object_into(&missing, &mut buf).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.is_cache_miss());
    // The buffer still serves reads after a miss.
    let (id, _, _, payload) = &objects[0];
    assert_eq!(
        store.get_object_into(id, &mut buf).unwrap().payload(),
        &payload[..]
    );
}

#[test]
fn identical_content_gives_one_id_and_one_file() {
    let (dir, store) = new_store();
    let a = store.put_object(Kind::Ast, &[], b"same").unwrap();
    let b = store.put_object(Kind::Ast, &[], b"same").unwrap();
    let c = store
        .put_object_from_reader(Kind::Ast, &[], &b"same"[..])
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    let objects = files_under(&dir.path().join("cache/objects"));
    assert_eq!(objects, vec![store.object_path(&a)]);
    // Same payload, different kind or links: a different object.
    assert_ne!(a, store.put_object(Kind::Blob, &[], b"same").unwrap());
    assert_ne!(a, store.put_object(Kind::Ast, &[a], b"same").unwrap());
}

/// Pins the object encoding: if this id changes, the on-disk format changed
/// and FORMAT_VERSION (and docs/FORMAT.md) must change with it. The values
/// were computed independently of this crate (Python `blake3`, derive_key mode).
#[test]
fn golden_ids_pin_the_format() {
    let leaf = compute_id(Kind::Blob, &[], b"");
    assert_eq!(
        leaf.to_hex(),
        "1f30bacc656c5b7598c984fa206c9d99303a34cf2304e65aacce5b371689e2bb"
    );
    let node = compute_id(Kind::Instance, &[leaf, leaf], b"sort<i32>");
    assert_eq!(
        node.to_hex(),
        "bb422518385126d456d9e12d5725c6153b43804be302785bcc6a20a28bcbf129"
    );
    // And the stored file: header, links, payload, exactly.
    let (_dir, store) = new_store();
    let id = store
        .put_object(Kind::Instance, &[leaf, leaf], b"sort<i32>")
        .unwrap();
    let bytes = fs::read(store.object_path(&id)).unwrap();
    let mut expected =
        b"RSKO\x01\x04\x00\x00\x02\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00".to_vec();
    expected.extend_from_slice(leaf.as_bytes());
    expected.extend_from_slice(leaf.as_bytes());
    expected.extend_from_slice(b"sort<i32>");
    assert_eq!(bytes, expected);
}

#[test]
fn streamed_puts_and_reads_match_in_memory_ones() {
    let (_dir, store) = new_store();
    // Larger than the in-memory limit, so the two-pass path is used.
    let payload = pseudo_random(rask_store::store::IN_MEMORY_LIMIT as usize + 12345, 3);
    let link = store.put_object(Kind::Blob, &[], b"link").unwrap();
    let streamed = store
        .put_object_from_reader(Kind::Meta, &[link], payload.as_slice())
        .unwrap();
    assert_eq!(streamed, compute_id(Kind::Meta, &[link], &payload));
    let mut out = Vec::new();
    let info = store.write_payload(&streamed, &mut out).unwrap();
    assert!(out == payload, "streamed payload differs");
    assert_eq!(info.payload_len, payload.len() as u64);
    assert_eq!(info.links, vec![link]);
    assert_eq!(info.kind, Kind::Meta);
    assert_eq!(store.object_info(&streamed).unwrap(), info);
}

#[test]
fn published_objects_are_read_only_and_no_temp_files_remain() {
    let (dir, store) = new_store();
    for durability in [Durability::None, Durability::Batch, Durability::Full] {
        let store = Store::open(store.root(), StoreOptions::with_durability(durability)).unwrap();
        let id = store
            .put_object(Kind::Memo, &[], format!("{durability:?}").as_bytes())
            .unwrap();
        store.flush().unwrap();
        let perms = fs::metadata(store.object_path(&id)).unwrap().permissions();
        assert!(perms.readonly(), "{durability:?}: object is writable");
        assert_eq!(
            store.get_object(&id).unwrap().payload(),
            format!("{durability:?}").as_bytes()
        );
    }
    assert!(files_under(&dir.path().join("cache/tmp")).is_empty());
}

#[test]
fn missing_objects_are_not_found_and_a_cache_miss() {
    let (_dir, store) = new_store();
    let id = ObjectId::from_bytes([7; 32]);
    let err = store.get_object(&id).unwrap_err();
    assert!(matches!(err, rask_store::Error::NotFound { .. }), "{err:?}");
    assert!(err.is_cache_miss());
    assert!(!store.contains_object(&id).unwrap());
    assert!(
        err.to_string()
            .contains(&store.object_path(&id).display().to_string())
    );
}

#[test]
fn opening_refuses_what_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path().join("nope"), StoreOptions::default()).unwrap_err();
    assert!(matches!(err, rask_store::Error::NotAStore { .. }), "{err}");
    assert!(
        !dir.path().join("nope").exists(),
        "open must not create a store"
    );
    let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no `format` stamp"), "{err}");
}
