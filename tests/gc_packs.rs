//! gc of packed objects: packs are rewritten without what no root reaches,
//! never while a live process writes them or while they are young, and
//! every handle, old or new, keeps answering correctly.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{copies_of, files_under, stored_objects};
use rask_store::gc::{self, GcMode, GcOptions};
use rask_store::{Error, Kind, ObjectId, Store, StoreOptions};

fn zero_grace() -> GcOptions {
    let mut options = GcOptions::default();
    options.grace = Duration::ZERO;
    options
}

fn packs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut files = files_under(&root.join("objects/pack"));
    files.sort();
    files
}

/// A store whose packs hold `live` (a root and the leaf it links) and
/// `garbage`, written by a handle that is gone again.
fn store_with_garbage(root: &Path) -> (ObjectId, ObjectId, Vec<ObjectId>) {
    let store = Store::create(root, StoreOptions::default()).unwrap();
    let leaf = store.put_object(Kind::Ast, &[], b"fn leaf() {}").unwrap();
    let head = store.put_object(Kind::Root, &[leaf], b"root").unwrap();
    let garbage = (0..40u32)
        .map(|i| {
            store
                .put_object(Kind::Memo, &[], &i.to_le_bytes().repeat(50))
                .unwrap()
        })
        .collect();
    store.flush().unwrap();
    (head, leaf, garbage)
}

#[test]
fn unreachable_packed_objects_go_and_the_pack_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (head, leaf, garbage) = store_with_garbage(&root);
    let before = packs(&root);
    assert_eq!(before.len(), 2, "one pack: data and index");

    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let report = gc::collect_objects(&store, &[head], zero_grace(), &|_| {}).unwrap();
    assert_eq!(report.removed_objects, garbage.len() as u64);
    assert_eq!(report.reachable, 2);
    assert_eq!(report.rewritten_packs, 1);
    assert_eq!(report.written_packs, 1);
    let after = packs(&root);
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "the old pack is gone: {after:?}"
    );

    // What a root reaches reads back, from this handle and a new one;
    // the garbage is gone for both.
    let fresh = Store::open(&root, StoreOptions::default()).unwrap();
    for s in [&store, &fresh] {
        assert_eq!(s.get_object(&leaf).unwrap().payload(), b"fn leaf() {}");
        assert_eq!(s.get_object(&head).unwrap().links(), &[leaf]);
        for id in &garbage {
            assert!(!s.contains_object(id).unwrap());
            assert!(matches!(s.get_object(id), Err(Error::NotFound { .. })));
        }
    }
    let mut ids: Vec<ObjectId> = stored_objects(&root)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    let mut expected = vec![head, leaf];
    expected.sort();
    assert_eq!(ids, expected, "only the live objects are stored");

    // The statistics lost exactly the garbage.
    store.flush().unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.kinds.get(&Kind::Memo).map_or(0, |k| k.objects), 0);
    assert_eq!(stats.kinds[&Kind::Ast].objects, 1);
    assert_eq!(stats.kinds[&Kind::Root].objects, 1);
}

#[test]
fn a_handle_opened_before_gc_is_not_told_of_objects_gc_removed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (head, leaf, garbage) = store_with_garbage(&root);
    // A reader that has read the pack indexes already, as a running build has.
    let reader = Store::open(&root, StoreOptions::default()).unwrap();
    assert!(reader.contains_object(&garbage[0]).unwrap());

    let gc_handle = Store::open(&root, StoreOptions::default()).unwrap();
    gc::collect_objects(&gc_handle, &[head], zero_grace(), &|_| {}).unwrap();

    // It must not link to a removed object on the word of its old table.
    for id in &garbage {
        assert!(!reader.contains_object(id).unwrap(), "{id}");
    }
    assert!(reader.contains_object(&leaf).unwrap());
    assert_eq!(reader.get_object(&leaf).unwrap().payload(), b"fn leaf() {}");
    // A put of a removed object writes it again, where everyone sees it.
    let again = reader
        .put_object(Kind::Memo, &[], &0u32.to_le_bytes().repeat(50))
        .unwrap();
    assert_eq!(again, garbage[0]);
    drop(reader);
    let later = Store::open(&root, StoreOptions::default()).unwrap();
    assert!(later.contains_object(&garbage[0]).unwrap());
    assert!(later.get_object(&garbage[0]).is_ok());
}

#[test]
fn young_packs_and_packs_a_live_writer_holds_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (head, _leaf, garbage) = store_with_garbage(&root);
    let store = Store::open(&root, StoreOptions::default()).unwrap();

    // With the default grace period the pack was written just now: kept.
    let report = gc::collect_objects(&store, &[head], GcOptions::default(), &|_| {}).unwrap();
    assert_eq!((report.removed_objects, report.rewritten_packs), (0, 0));
    assert!(garbage.iter().all(|id| store.contains_object(id).unwrap()));

    // A live writer's pack: its garbage stays until it is done.
    let writer = Store::open(&root, StoreOptions::default()).unwrap();
    let busy = writer
        .put_object(Kind::Memo, &[], b"being written")
        .unwrap();
    let report = gc::collect_objects(&store, &[head], zero_grace(), &|_| {}).unwrap();
    assert_eq!(report.removed_objects, garbage.len() as u64);
    assert!(
        store.contains_object(&busy).unwrap(),
        "a held pack is untouched"
    );
    assert_eq!(copies_of(&root, &busy).len(), 1);
    drop(writer);
    let report = gc::collect_objects(&store, &[head], zero_grace(), &|_| {}).unwrap();
    assert_eq!(report.removed_objects, 1);
    assert!(!store.contains_object(&busy).unwrap());
}

#[test]
fn a_dry_run_changes_nothing_and_says_what_gc_would_do() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (head, _leaf, garbage) = store_with_garbage(&root);
    let before = packs(&root);
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let mut options = zero_grace();
    options.mode = GcMode::DryRun;
    let report = gc::collect_objects(&store, &[head], options, &|_| {}).unwrap();
    assert_eq!(report.removed_objects, garbage.len() as u64);
    assert_eq!((report.rewritten_packs, report.written_packs), (1, 1));
    assert_eq!(packs(&root), before);
    assert!(garbage.iter().all(|id| store.contains_object(id).unwrap()));
}

#[test]
fn copies_in_several_small_packs_are_merged_into_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    Store::create(&root, StoreOptions::default()).unwrap();
    let shared = rask_store::object::compute_id(Kind::Ast, &[], b"shared");
    // Three writers that started together, as three builds at once: each
    // looked for the shared object before any had written it, so each
    // writes its own copy, into its own small pack.
    let writers: Vec<Store> = (0..3)
        .map(|_| Store::open(&root, StoreOptions::default()).unwrap())
        .collect();
    for w in &writers {
        assert!(!w.contains_object(&shared).unwrap());
    }
    let mut heads = Vec::new();
    for (n, store) in writers.into_iter().enumerate() {
        let shared = store.put_object(Kind::Ast, &[], b"shared").unwrap();
        let own = store
            .put_object(Kind::Ast, &[], format!("own {n}").as_bytes())
            .unwrap();
        heads.push(store.put_object(Kind::Root, &[shared, own], b"r").unwrap());
        heads.dedup();
    }
    assert_eq!(packs(&root).len(), 6);
    assert_eq!(copies_of(&root, &shared).len(), 3);

    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let report = gc::collect_objects(&store, &heads, zero_grace(), &|_| {}).unwrap();
    assert_eq!(report.removed_objects, 0, "everything is reachable");
    assert_eq!((report.rewritten_packs, report.written_packs), (3, 1));
    assert_eq!(packs(&root).len(), 2, "one pack left");
    assert_eq!(copies_of(&root, &shared).len(), 1, "one copy left");
    for n in 0..3usize {
        let own = rask_store::object::compute_id(Kind::Ast, &[], format!("own {n}").as_bytes());
        assert!(store.get_object(&own).is_ok());
    }
}

#[test]
fn garbage_with_a_copy_in_a_live_writers_pack_is_not_counted_as_removed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    Store::create(&root, StoreOptions::default()).unwrap();
    // A running build whose table was read before the garbage was written.
    let writer = Store::open(&root, StoreOptions::default()).unwrap();
    assert!(
        !writer
            .contains_object(&ObjectId::from_bytes([1; 32]))
            .unwrap()
    );
    let (head, _leaf, garbage) = {
        let store = Store::open(&root, StoreOptions::default()).unwrap();
        let leaf = store.put_object(Kind::Ast, &[], b"fn leaf() {}").unwrap();
        let head = store.put_object(Kind::Root, &[leaf], b"root").unwrap();
        let garbage: Vec<ObjectId> = (0..40u32)
            .map(|i| {
                store
                    .put_object(Kind::Memo, &[], &i.to_le_bytes().repeat(50))
                    .unwrap()
            })
            .collect();
        (head, leaf, garbage)
    };
    // It puts one of them too: a second copy, in the pack it still holds.
    let twin = writer
        .put_object(Kind::Memo, &[], &0u32.to_le_bytes().repeat(50))
        .unwrap();
    assert_eq!(twin, garbage[0]);
    assert_eq!(copies_of(&root, &twin).len(), 2);

    let store = Store::open(&root, StoreOptions::default()).unwrap();
    writer.flush().unwrap();
    let memo = |s: &Store| {
        s.stats()
            .unwrap()
            .kinds
            .get(&Kind::Memo)
            .map_or(0, |k| k.objects)
    };
    let before = memo(&store);
    let report = gc::collect_objects(&store, &[head], zero_grace(), &|_| {}).unwrap();
    store.flush().unwrap();
    // The copy in the live writer's pack keeps that object: not removed,
    // not taken out of the statistics.
    assert_eq!(report.removed_objects, garbage.len() as u64 - 1);
    assert_eq!(before - memo(&store), garbage.len() as i64 - 1);
    assert!(store.contains_object(&twin).unwrap());
    for id in &garbage[1..] {
        assert!(!store.contains_object(id).unwrap());
    }
    drop(writer);
}

/// A record whose checksum holds but which names bytes past the end of its
/// pack is damage gc steps over: the pack is rewritten without it, every
/// live object survives, and nothing aborts on a length read from disk.
#[test]
fn a_record_past_the_end_of_its_pack_is_dropped_by_the_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (head, leaf, garbage) = store_with_garbage(&root);
    // The last garbage object's record now claims a huge length.
    let index = packs(&root)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "rsi"))
        .unwrap();
    let mut bytes = std::fs::read(&index).unwrap();
    let at = bytes.len() - rask_store::pack::RECORD_LEN;
    bytes[at + 40..at + 48].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let sum = rask_store::index::record::xxh64(&bytes[at..at + 56], rask_store::pack::RECORD_SEED);
    bytes[at + 56..at + 64].copy_from_slice(&sum.to_le_bytes());
    common::overwrite(&index, &bytes);

    let data = index.with_extension("rsp");
    assert!(
        !rask_store::pack::is_being_written(&data).unwrap(),
        "held before gc"
    );
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    // Reachable from the root: the damaged record's object too, so gc
    // must try to copy it.
    let mut roots = vec![head];
    roots.push(*garbage.last().unwrap());
    let report = gc::collect_objects(&store, &roots, zero_grace(), &|_| {}).unwrap();
    assert_eq!(report.rewritten_packs, 1, "{report:?}");
    assert_eq!(store.get_object(&leaf).unwrap().payload(), b"fn leaf() {}");
    assert!(store.get_object(&head).is_ok());
    assert!(matches!(
        store.get_object(garbage.last().unwrap()),
        Err(Error::NotFound { .. })
    ));
}
