//! clean removes one namespace, or everything, for real.

mod common;

use common::{cli, code, files_under, stderr, stdout};
use rask_store::refs::Expect;
use rask_store::{Component, Index, Key, Kind, Namespace, PackageName, Store, StoreOptions};

fn key(ns: &Namespace, f: &str) -> Key {
    Key::new(
        ns.clone(),
        vec![Component::str("instance"), Component::str(f)],
    )
    .unwrap()
}

#[test]
fn cleaning_a_namespace_deletes_only_what_it_alone_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let store = Store::create(&root, StoreOptions::default()).unwrap();
    let index = Index::open(&store).unwrap();
    let old = Namespace::new("rask-1.0").unwrap();
    let new = Namespace::new("rask-2.0").unwrap();
    let pkg = PackageName::new("app").unwrap();

    let shared = store
        .put_object(Kind::Ast, &[], b"parsed file, same in both")
        .unwrap();
    let old_only = store
        .put_object(Kind::Meta, &[], b"metadata of 1.0")
        .unwrap();
    let old_root = store
        .put_object(Kind::Root, &[shared, old_only], b"1.0 build")
        .unwrap();
    let new_root = store
        .put_object(Kind::Root, &[shared], b"2.0 build")
        .unwrap();
    store
        .update_ref(&old, &pkg, Expect::Absent, old_root, "build")
        .unwrap();
    store
        .update_ref(&new, &pkg, Expect::Absent, new_root, "build")
        .unwrap();
    index
        .put(
            &store,
            &key(&old, "sort<i32>"),
            Kind::Instance,
            &[("ast", b"1.0 sort")],
        )
        .unwrap();
    index
        .put(
            &store,
            &key(&new, "sort<i32>"),
            Kind::Instance,
            &[("ast", b"2.0 sort")],
        )
        .unwrap();
    store.flush().unwrap();
    // The build is over: its pack is no longer being written, so gc may
    // rewrite it (a pack a live process appends to is left alone).
    drop(index);
    drop(store);

    let out = cli(&root, &["clean", "--namespace", "rask-1.0", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Removed: the 1.0 root (20 + 2·32 + 9 bytes), its metadata (20 + 15)
    // and the 1.0 instance part (20 + 8).
    assert_eq!(
        stdout(&out).trim(),
        r#"{"refs":1,"entries":1,"objects":3,"bytes":156,"packs_in_use":0}"#
    );

    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let index = Index::open(&store).unwrap();
    assert_eq!(store.read_ref(&old, &pkg).unwrap(), None);
    assert!(
        !store.layout().logs_dir().join("rask-1.0").exists(),
        "reflog kept"
    );
    assert!(!store.contains_object(&old_only).unwrap());
    assert!(!store.contains_object(&old_root).unwrap());
    assert!(!index.lookup(&key(&old, "sort<i32>")).unwrap().is_hit());
    // The other compiler keeps everything, including what it shared.
    assert_eq!(store.read_ref(&new, &pkg).unwrap(), Some(new_root));
    store.get_object(&shared).unwrap();
    let hit = index.get(&store, &key(&new, "sort<i32>"), "ast").unwrap();
    assert_eq!(hit.hit().as_deref(), Some(&b"2.0 sort"[..]));
    assert!(
        files_under(&root.join("quarantine")).is_empty(),
        "clean must delete, not move"
    );

    // Cleaning everything leaves an empty, working store.
    drop(index);
    drop(store);
    let out = cli(&root, &["clean"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("deleted 1 refs, 1 index entries, 3 objects"),
        "{}",
        stdout(&out)
    );
    assert!(files_under(&root.join("objects")).is_empty());
    assert!(files_under(&root.join("refs")).is_empty());
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let index = Index::open(&store).unwrap();
    assert!(index.entries().unwrap().is_empty());
    let id = store.put_object(Kind::Blob, &[], b"after clean").unwrap();
    assert_eq!(store.get_object(&id).unwrap().payload(), b"after clean");

    let out = cli(&root, &["clean", "--namespace", "../etc"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("invalid namespace"),
        "{}",
        stderr(&out)
    );
}
