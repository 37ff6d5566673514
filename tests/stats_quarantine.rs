//! `stats` size by kind follows `verify --repair`: objects it moves to
//! quarantine (damaged, cut short, or reaching a missing object) no longer
//! count, so the totals match the object files left on disk.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::{flip_byte, overwrite, pseudo_random};
use rask_store::object::compute_id;
use rask_store::stats::KindSize;
use rask_store::verify::{self, RepairMode, VerifyOptions};
use rask_store::{Kind, ObjectId, Store, StoreOptions};

/// Size by kind of the object files among `ids` that are still in place.
fn on_disk(store: &Store, ids: &[(Kind, ObjectId)]) -> BTreeMap<Kind, KindSize> {
    let mut kinds: BTreeMap<Kind, KindSize> = BTreeMap::new();
    for (kind, id) in ids {
        if let Ok(meta) = fs::metadata(store.object_path(id)) {
            let size = kinds.entry(*kind).or_default();
            size.objects += 1;
            size.bytes += meta.len() as i64;
        }
    }
    kinds
}

#[test]
fn quarantined_objects_leave_the_size_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let mut ids: Vec<(Kind, ObjectId)> = Vec::new();
    {
        let store = Store::create(&root, StoreOptions::default().loose()).unwrap();
        for i in 0..5 {
            let bytes = pseudo_random(1000 + 100 * i, i as u64);
            ids.push((
                Kind::Blob,
                store.put_object(Kind::Blob, &[], &bytes).unwrap(),
            ));
        }
        for i in 0..3 {
            let bytes = pseudo_random(2000 + 10 * i, 50 + i as u64);
            ids.push((Kind::Ast, store.put_object(Kind::Ast, &[], &bytes).unwrap()));
        }
        // Metadata that links an object that was never stored.
        let never = compute_id(Kind::Blob, &[], b"never stored");
        let meta = store
            .put_object(Kind::Meta, &[ids[0].1, never], b"meta")
            .unwrap();
        ids.push((Kind::Meta, meta));
    }
    let store = Store::open(&root, StoreOptions::default().loose()).unwrap();
    assert_eq!(store.stats().unwrap().kinds, on_disk(&store, &ids));

    // A flipped payload byte in a blob; an AST cut short (header intact).
    flip_byte(&store.object_path(&ids[1].1), 500);
    let ast = store.object_path(&ids[5].1);
    let cut = fs::read(&ast).unwrap()[..100].to_vec();
    overwrite(&ast, &cut);

    let mut options = VerifyOptions::default();
    options.repair = RepairMode::Repair;
    let report = verify::verify(&store, options, &|_| {}).unwrap();
    assert_eq!(report.damage_left().count(), 0, "{:#?}", report.problems);
    drop(store);

    let store = Store::open(&root, StoreOptions::default().loose()).unwrap();
    let after = store.stats().unwrap().kinds;
    let expected = on_disk(&store, &ids);
    // Three objects went to quarantine: one of each kind here.
    assert_eq!(expected[&Kind::Blob].objects, 4);
    assert_eq!(expected[&Kind::Ast].objects, 2);
    assert_eq!(expected.get(&Kind::Meta).map_or(0, |s| s.objects), 0);
    let nonzero: BTreeMap<Kind, KindSize> = after
        .into_iter()
        .filter(|(_, s)| *s != KindSize::default())
        .collect();
    assert_eq!(nonzero, expected);
}
