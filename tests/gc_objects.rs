//! gc keeps everything roots reach and everything young, and removes the rest.

mod common;

use std::fs::File;
use std::time::{Duration, SystemTime};

use common::files_under;
use rask_store::gc::{self, GcMode, GcOptions};
use rask_store::{Error, Kind, ObjectId, Store, StoreOptions};

fn age(store: &Store, id: &ObjectId, by: Duration) {
    let file = File::open(store.object_path(id)).unwrap();
    file.set_modified(SystemTime::now() - by).unwrap();
}

#[test]
fn reachable_and_young_objects_survive_old_garbage_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), StoreOptions::default().loose()).unwrap();
    let leaf = store.put_object(Kind::Ast, &[], b"leaf").unwrap();
    let mid = store.put_object(Kind::Instance, &[leaf], b"mid").unwrap();
    let root = store.put_object(Kind::Root, &[mid], b"root").unwrap();
    let old_garbage = store
        .put_object(Kind::Blob, &[leaf], b"old garbage")
        .unwrap();
    let young_garbage = store.put_object(Kind::Blob, &[], b"young garbage").unwrap();
    let two_hours = Duration::from_secs(2 * 3600);
    for id in [leaf, mid, root, old_garbage] {
        age(&store, &id, two_hours);
    }
    // A temp file left by a crashed writer, and one being written now.
    let stale_temp = dir.path().join("cache/tmp/obj-crashed");
    File::create(&stale_temp)
        .unwrap()
        .set_modified(SystemTime::now() - two_hours)
        .unwrap();
    let live_temp = dir.path().join("cache/tmp/obj-live");
    File::create(&live_temp).unwrap();

    let mut dry = GcOptions::default();
    dry.mode = GcMode::DryRun;
    let report = gc::collect_objects(&store, &[root], dry, &|_| {}).unwrap();
    assert_eq!(
        (report.reachable, report.removed_objects, report.kept_young),
        (3, 1, 1)
    );
    assert_eq!(report.removed_temp_files, 1);
    assert!(
        store.contains_object(&old_garbage).unwrap(),
        "a dry run removed something"
    );
    assert!(stale_temp.exists());

    let report = gc::collect_objects(&store, &[root], GcOptions::default(), &|_| {}).unwrap();
    assert_eq!(report.removed_objects, 1);
    assert_eq!(report.removed_bytes, 20 + 32 + 11);
    assert!(matches!(
        store.get_object(&old_garbage),
        Err(Error::NotFound { .. })
    ));
    for id in [leaf, mid, root, young_garbage] {
        store.get_object(&id).unwrap();
    }
    assert!(!stale_temp.exists());
    assert!(live_temp.exists());
    assert_eq!(files_under(&dir.path().join("cache/objects")).len(), 4);

    // The removal shows in the statistics once flushed.
    store.flush().unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.kinds[&Kind::Blob].objects, 1);
    assert_eq!(stats.last_gc.unwrap().objects, 1);
}

#[test]
fn zero_grace_collects_everything_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), StoreOptions::default().loose()).unwrap();
    let kept = store.put_object(Kind::Meta, &[], b"kept").unwrap();
    for i in 0..50u32 {
        store.put_object(Kind::Memo, &[], &i.to_le_bytes()).unwrap();
    }
    let mut options = GcOptions::default();
    options.grace = Duration::ZERO;
    let report = gc::collect_objects(&store, &[kept], options, &|_| {}).unwrap();
    assert_eq!(report.removed_objects, 50);
    assert_eq!(
        files_under(&dir.path().join("cache/objects")),
        vec![store.object_path(&kept)]
    );
}
