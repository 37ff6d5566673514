//! Objects go in and come back out byte for byte, under stable ids.

mod common;

use std::fs;

use common::{Stored, files_under, layouts, only_copy, pseudo_random, stored_objects};
use rask_store::object::PARALLEL_MIN;
use rask_store::object::compute_id;
use rask_store::{Durability, Error, Kind, ObjectBuf, ObjectId, Store, StoreOptions};

fn new_store(options: StoreOptions) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), options).unwrap();
    (dir, store)
}

#[test]
fn empty_small_and_large_payloads_round_trip_with_links() {
    for (_, options) in layouts() {
        round_trip(options);
    }
}

fn round_trip(options: StoreOptions) {
    let (_dir, store) = new_store(options);
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
    for (_, options) in layouts() {
        reused_buffer(options);
    }
}

fn reused_buffer(options: StoreOptions) {
    let (_dir, store) = new_store(options);
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
fn identical_content_gives_one_id_and_one_copy() {
    for (layout, options) in layouts() {
        let (dir, store) = new_store(options);
        let a = store.put_object(Kind::Ast, &[], b"same").unwrap();
        let b = store.put_object(Kind::Ast, &[], b"same").unwrap();
        let c = store
            .put_object_from_reader(Kind::Ast, &[], &b"same"[..])
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        let stored = stored_objects(&dir.path().join("cache"));
        assert_eq!(stored.len(), 1, "{layout}: {stored:?}");
        match &stored[0].1 {
            Stored::Loose(path) => {
                assert_eq!(layout, "loose");
                assert_eq!(
                    files_under(&dir.path().join("cache/objects")),
                    vec![path.clone()]
                );
            }
            Stored::Packed { .. } => assert_eq!(layout, "packed"),
        }
        identical_content_differs_by_kind_and_links(&store, a);
    }
}

fn identical_content_differs_by_kind_and_links(store: &Store, a: ObjectId) {
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
    // And the stored bytes, in a loose file or a pack: header, links,
    // payload, exactly.
    let mut expected =
        b"RSKO\x01\x04\x00\x00\x02\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00".to_vec();
    expected.extend_from_slice(leaf.as_bytes());
    expected.extend_from_slice(leaf.as_bytes());
    expected.extend_from_slice(b"sort<i32>");
    for (layout, options) in layouts() {
        let (dir, store) = new_store(options);
        let id = store
            .put_object(Kind::Instance, &[leaf, leaf], b"sort<i32>")
            .unwrap();
        let copy = only_copy(&dir.path().join("cache"), &id);
        assert_eq!(copy.bytes(), expected, "{layout}");
        if layout == "loose" {
            assert_eq!(fs::read(store.object_path(&id)).unwrap(), expected);
        }
    }
}

#[test]
fn streamed_puts_and_reads_match_in_memory_ones() {
    for (_, options) in layouts() {
        streamed(options);
    }
}

fn streamed(options: StoreOptions) {
    let (_dir, store) = new_store(options);
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
    // A small payload streamed in is the same object as one put from memory.
    let small = store
        .put_object_from_reader(Kind::Ast, &[link], &payload[..5000])
        .unwrap();
    assert_eq!(small, compute_id(Kind::Ast, &[link], &payload[..5000]));
    assert_eq!(
        store.get_object(&small).unwrap().payload(),
        &payload[..5000]
    );
}

#[test]
fn published_objects_are_read_only_and_no_temp_files_remain() {
    let (dir, store) = new_store(StoreOptions::default().loose());
    for durability in [Durability::None, Durability::Batch, Durability::Full] {
        for (layout, options) in layouts() {
            let options = StoreOptions::with_durability(durability).with_pack_max(options.pack_max);
            let store = Store::open(store.root(), options).unwrap();
            let payload = format!("{durability:?} {layout}");
            let id = store
                .put_object(Kind::Memo, &[], payload.as_bytes())
                .unwrap();
            store.flush().unwrap();
            if layout == "loose" {
                let perms = fs::metadata(store.object_path(&id)).unwrap().permissions();
                assert!(perms.readonly(), "{durability:?}: object is writable");
            }
            drop(store);
            // Read back by another handle, as a later build would.
            let reader = Store::open(dir.path().join("cache"), StoreOptions::default()).unwrap();
            assert_eq!(
                reader.get_object(&id).unwrap().payload(),
                payload.as_bytes()
            );
        }
    }
    assert!(files_under(&dir.path().join("cache/tmp")).is_empty());
}

#[test]
fn missing_objects_are_not_found_and_a_cache_miss() {
    let (_dir, store) = new_store(StoreOptions::default());
    store.put_object(Kind::Blob, &[], b"a pack exists").unwrap();
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

#[test]
fn a_version_1_store_opens_and_is_stamped_2_before_its_first_pack() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let loose = {
        let store = Store::create(&root, StoreOptions::default().loose()).unwrap();
        store
            .put_object(Kind::Blob, &[], b"written by version 1")
            .unwrap()
    };
    // What a build that knew only loose files left behind.
    fs::write(root.join("format"), "rask-store format 1\nhash blake3\n").unwrap();
    assert!(!root.join("objects/pack").exists());

    let store = Store::open(&root, StoreOptions::default()).unwrap();
    assert_eq!(
        store.get_object(&loose).unwrap().payload(),
        b"written by version 1"
    );
    // Reading changes nothing; the first packed put raises the stamp first,
    // so a version-1 build refuses the store rather than miss objects.
    assert!(
        fs::read_to_string(root.join("format"))
            .unwrap()
            .starts_with("rask-store format 1\n")
    );
    let packed = store.put_object(Kind::Blob, &[], b"packed").unwrap();
    assert_eq!(
        fs::read_to_string(root.join("format")).unwrap(),
        "rask-store format 2\nhash blake3\n"
    );
    assert!(matches!(only_copy(&root, &packed), Stored::Packed { .. }));
    drop(store);
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    assert_eq!(store.get_object(&packed).unwrap().payload(), b"packed");
    assert_eq!(
        store.get_object(&loose).unwrap().payload(),
        b"written by version 1"
    );
}
