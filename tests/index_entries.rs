//! Keyed entries through the public API: put, replace, lookup, get, remove,
//! compaction, reopening, and a seeded random model check.

use std::collections::BTreeMap;

use rask_store::index::{AutoCompact, IndexOptions, MissCause, NamedParts, PartRef, PutOutcome};
use rask_store::{Component, Index, Key, Kind, Lookup, Namespace, Store, StoreOptions};

fn store() -> (tempfile::TempDir, Store) {
    store_with(StoreOptions::default())
}

/// A store of loose files, for the tests that delete or damage one
/// object's file.
fn loose_store() -> (tempfile::TempDir, Store) {
    store_with(StoreOptions::default().loose())
}

fn store_with(options: StoreOptions) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), options).unwrap();
    (dir, store)
}

fn key(ns: &str, n: u64) -> Key {
    Key::new(
        Namespace::new(ns).unwrap(),
        vec![
            Component::str("std"),
            Component::str("sort"),
            Component::List(vec![Component::str("i32")]),
            Component::U64(n),
        ],
    )
    .unwrap()
}

/// Two handles on one store (as two processes) putting in turn: each
/// handle's view after its own put must hold the other's records too, at
/// the right offsets, since a put picks up its own record from memory only
/// when the journal grew by exactly that record.
#[test]
fn handles_putting_in_turn_each_see_every_entry_and_a_clean_journal() {
    let (_dir, store) = store();
    let a = Index::open(&store).unwrap();
    let b = Index::open(&store).unwrap();
    let mut put = Vec::new();
    for n in 0..60u64 {
        // Runs of one, two and three puts by the same handle, and values
        // of different lengths, so the records land at uneven offsets.
        let index = if (n / 3 + n % 2) % 2 == 0 { &a } else { &b };
        let value = vec![n as u8; 1 + (n as usize * 37) % 200];
        index
            .put(&store, &key("turns", n), Kind::Blob, &[("v", &value)])
            .unwrap();
        put.push((n, value));
        // The handle that just put answers for everything put so far.
        for (m, expected) in &put {
            match index.get(&store, &key("turns", *m), "v").unwrap() {
                Lookup::Hit(bytes) => assert_eq!(&bytes, expected, "entry {m} after put {n}"),
                Lookup::Miss(miss) => panic!("entry {m} missing after put {n}: {}", miss.detail),
            }
        }
    }
    for index in [&a, &b] {
        assert!(index.check().unwrap().is_empty());
        assert_eq!(index.stats().unwrap().entries, 60);
    }
}

#[test]
fn a_put_entry_is_found_with_all_its_parts_after_reopening() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    let k = key("rask-1", 1);
    let outcome = index
        .put(
            &store,
            &k,
            Kind::Blob,
            &[("cpp", b"int f();"), ("expr", b"(f)"), ("meta", b"{}")],
        )
        .unwrap();
    assert!(matches!(outcome, PutOutcome::Written(_)));
    drop(index);

    let index = Index::open(&store).unwrap();
    let entry = index.lookup(&k).unwrap().hit().expect("entry after reopen");
    assert_eq!(entry.id(), outcome.entry_id());
    let names: Vec<&str> = entry.parts().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["cpp", "expr", "meta"]);
    assert_eq!(entry.key().unwrap(), k);
    assert_eq!(
        index.get(&store, &k, "expr").unwrap().hit().unwrap(),
        b"(f)"
    );
    let all = index.get_all(&store, &k).unwrap().hit().unwrap();
    assert_eq!(all[0].1, b"int f();");
    let miss = index.get(&store, &k, "obj").unwrap();
    assert_eq!(miss.miss_cause(), Some(MissCause::Absent));
}

#[test]
fn the_same_value_is_a_no_op_and_a_different_value_replaces() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    let k = key("rask-1", 2);
    let first = index.put(&store, &k, Kind::Memo, &[("v", b"1")]).unwrap();
    let again = index.put(&store, &k, Kind::Memo, &[("v", b"1")]).unwrap();
    assert_eq!(again, PutOutcome::Unchanged(first.entry_id()));
    let records = index.stats().unwrap().journal_records;
    assert_eq!(records, 1, "a no-op put appended a record");

    let second = index.put(&store, &k, Kind::Memo, &[("v", b"2")]).unwrap();
    assert!(matches!(second, PutOutcome::Written(_)));
    assert_ne!(second.entry_id(), first.entry_id());
    assert_eq!(index.get(&store, &k, "v").unwrap().hit().unwrap(), b"2");
    assert_eq!(index.stats().unwrap().entries, 1);
}

#[test]
fn namespaces_and_keys_do_not_collide() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    index
        .put(
            &store,
            &key("rask-debug", 1),
            Kind::Blob,
            &[("v", b"debug")],
        )
        .unwrap();
    index
        .put(
            &store,
            &key("rask-release", 1),
            Kind::Blob,
            &[("v", b"release")],
        )
        .unwrap();
    let got = |ns| index.get(&store, &key(ns, 1), "v").unwrap().hit().unwrap();
    assert_eq!(got("rask-debug"), b"debug");
    assert_eq!(got("rask-release"), b"release");
    assert_eq!(
        index.lookup(&key("rask-debug", 2)).unwrap().miss_cause(),
        Some(MissCause::Absent)
    );
}

#[test]
fn a_deleted_part_object_reads_as_a_dangling_miss() {
    let (_dir, store) = loose_store();
    let index = Index::open(&store).unwrap();
    let k = key("rask-1", 3);
    index
        .put(&store, &k, Kind::Instance, &[("ast", b"fn f() {}")])
        .unwrap();
    let entry = index.lookup(&k).unwrap().hit().unwrap();
    let path = store.object_path(&entry.parts()[0].id);
    std::fs::remove_file(&path).unwrap();

    let miss = index.get(&store, &k, "ast").unwrap();
    assert_eq!(miss.miss_cause(), Some(MissCause::Dangling), "{miss:?}");
    assert_eq!(
        index.probe(&store, &k).unwrap().miss_cause(),
        Some(MissCause::Dangling)
    );
    // The cheap index-only lookup still sees the record.
    assert!(index.lookup(&k).unwrap().is_hit());
}

#[test]
fn a_damaged_part_object_reads_as_a_corrupt_miss() {
    let (_dir, store) = loose_store();
    let index = Index::open(&store).unwrap();
    let k = key("rask-1", 4);
    index
        .put(&store, &k, Kind::Instance, &[("ast", b"fn g() {}")])
        .unwrap();
    let entry = index.lookup(&k).unwrap().hit().unwrap();
    let path = store.object_path(&entry.parts()[0].id);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let miss = index.get(&store, &k, "ast").unwrap();
    assert_eq!(miss.miss_cause(), Some(MissCause::Corrupt), "{miss:?}");
}

#[test]
fn removed_entries_stay_removed_through_compaction() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    for n in 0..10 {
        index
            .put(
                &store,
                &key("ns", n),
                Kind::Blob,
                &[("v", &n.to_le_bytes())],
            )
            .unwrap();
    }
    index.compact().unwrap();
    assert!(index.remove(&key("ns", 3)).unwrap());
    assert!(!index.remove(&key("ns", 3)).unwrap());
    assert!(!index.lookup(&key("ns", 3)).unwrap().is_hit());
    let report = index.compact().unwrap();
    assert_eq!(report.entries, 9);
    let stats = index.stats().unwrap();
    assert_eq!(stats.entries, 9);
    assert_eq!(stats.segments.len(), 1);
    assert_eq!(stats.journal_records, 0);
    assert!(!index.lookup(&key("ns", 3)).unwrap().is_hit());
    assert!(index.lookup(&key("ns", 4)).unwrap().is_hit());
    // Only the live files remain.
    let mut names: Vec<String> = std::fs::read_dir(store.layout().index_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "compact.lock",
            "journal-0000000000000002.rsj",
            "manifest",
            "seg-0000000000000002.rsx"
        ]
    );
}

#[test]
fn batch_lookups_answer_in_key_order() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    for n in (0..100).step_by(2) {
        index
            .put(
                &store,
                &key("ns", n),
                Kind::Blob,
                &[("v", &n.to_le_bytes())],
            )
            .unwrap();
    }
    index.compact().unwrap();
    index
        .put(&store, &key("ns", 1), Kind::Blob, &[("v", b"journal")])
        .unwrap();
    let keys: Vec<Key> = (0..100).map(|n| key("ns", n)).collect();
    let missing = index.find_missing(&keys).unwrap();
    let expected: Vec<usize> = (3..100).step_by(2).collect();
    assert_eq!(missing, expected);
    let found = index.lookup_many(&keys).unwrap();
    assert!(found[0].is_hit() && found[1].is_hit() && !found[3].is_hit());
}

/// xorshift64*: a small, seeded generator; the seed is printed on failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_operations_match_a_model() {
    let mut saw_delta = 0;
    for seed in [1u64, 0xdead_beef, 42, 7_777_777] {
        saw_delta += run_model(seed);
    }
    assert!(
        saw_delta > 0,
        "no step ran with a delta segment beside the base"
    );
}

/// Returns how many checks saw two live segments (base + delta).
fn run_model(seed: u64) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path().join("cache"),
        StoreOptions::with_durability(rask_store::Durability::None),
    )
    .unwrap();
    let options = IndexOptions::default().with_compact_min_bytes(4 << 10);
    let mut index = Index::open_with(&store, options).unwrap();
    let mut model: BTreeMap<u64, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut rng = Rng(seed);
    let mut saw_delta = 0;
    for step in 0..1500 {
        let k = rng.below(120);
        match rng.below(100) {
            0..=49 => {
                let parts = 1 + rng.below(3);
                let value: Vec<(String, Vec<u8>)> = (0..parts)
                    .map(|p| {
                        let len = rng.below(40) as usize;
                        let byte = rng.below(4) as u8;
                        (format!("p{p}"), vec![byte; len])
                    })
                    .collect();
                let refs: Vec<(&str, &[u8])> =
                    value.iter().map(|(n, v)| (n.as_str(), &v[..])).collect();
                index.put(&store, &key("m", k), Kind::Blob, &refs).unwrap();
                model.insert(k, value);
            }
            50..=59 => {
                let removed = index.remove(&key("m", k)).unwrap();
                assert_eq!(
                    removed,
                    model.remove(&k).is_some(),
                    "seed {seed} step {step}"
                );
            }
            60..=89 => {
                if index.stats().unwrap().segments.len() == 2 {
                    saw_delta += 1;
                }
                let got = index.get_all(&store, &key("m", k)).unwrap();
                match (model.get(&k), got) {
                    (Some(want), Lookup::Hit(parts)) => {
                        let got: Vec<(String, Vec<u8>)> =
                            parts.into_iter().map(|(p, b)| (p.name, b)).collect();
                        assert_eq!(&got, want, "seed {seed} step {step} key {k}");
                    }
                    (None, Lookup::Miss(m)) => assert_eq!(m.cause, MissCause::Absent),
                    (want, got) => panic!("seed {seed} step {step} key {k}: {want:?} vs {got:?}"),
                }
                // The borrowed lookup answers as the owned one does.
                let owned = index.lookup(&key("m", k)).unwrap();
                let borrowed = index
                    .lookup_with(&key("m", k), |e| {
                        let parts: Vec<PartRef> = e.parts().map(|p| p.to_part_ref()).collect();
                        (e.id(), e.key_hash(), e.key_encoding().to_vec(), parts)
                    })
                    .unwrap();
                match (owned, borrowed) {
                    (Lookup::Hit(o), Lookup::Hit((id, hash, encoding, parts))) => {
                        assert_eq!(
                            (o.id(), o.key_hash(), o.key_encoding(), o.parts()),
                            (id, hash, &encoding[..], &parts[..]),
                            "seed {seed} step {step} key {k}"
                        );
                    }
                    (Lookup::Miss(a), Lookup::Miss(b)) => assert_eq!(a, b),
                    (o, b) => panic!("seed {seed} step {step} key {k}: {o:?} vs {b:?}"),
                }
            }
            90..=94 => {
                index.compact().unwrap();
            }
            _ => {
                drop(index);
                let access = if rng.below(2) == 0 {
                    rask_store::index::Access::Map
                } else {
                    rask_store::index::Access::Read
                };
                let auto = if rng.below(2) == 0 {
                    AutoCompact::On
                } else {
                    AutoCompact::Off
                };
                let options = options.with_access(access).with_auto_compact(auto);
                index = Index::open_with(&store, options).unwrap();
            }
        }
    }
    let keys: Vec<Key> = (0..120).map(|k| key("m", k)).collect();
    let missing = index.find_missing(&keys).unwrap();
    let expected: Vec<usize> = (0..120)
        .filter(|k| !model.contains_key(k))
        .map(|k| k as usize)
        .collect();
    assert_eq!(missing, expected, "seed {seed}");
    assert_eq!(
        index.stats().unwrap().entries,
        model.len() as u64,
        "seed {seed}"
    );
    assert!(index.check().unwrap().is_empty(), "seed {seed}");
    saw_delta
}

#[test]
fn a_batch_put_publishes_every_entry_and_skips_unchanged_ones() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    let object = store.put_object(Kind::Memo, &[], b"42").unwrap();
    let part = || {
        vec![rask_store::PartRef {
            name: "v".into(),
            id: object,
            size: 2,
        }]
    };
    index.put_entry(&store, &key("b", 0), part()).unwrap();
    let batch: Vec<(Key, Vec<rask_store::PartRef>)> =
        (0..3000).map(|n| (key("b", n), part())).collect();
    let outcomes = index.put_entries(&store, batch).unwrap();
    assert!(matches!(outcomes[0], PutOutcome::Unchanged(_)));
    assert!(
        outcomes[1..]
            .iter()
            .all(|o| matches!(o, PutOutcome::Written(_)))
    );
    let keys: Vec<Key> = (0..3000).map(|n| key("b", n)).collect();
    assert!(index.find_missing(&keys).unwrap().is_empty());
    let index = Index::open(&store).unwrap();
    assert!(index.find_missing(&keys).unwrap().is_empty());
    assert_eq!(index.stats().unwrap().entries, 3000);

    let missing = rask_store::PartRef {
        name: "v".into(),
        id: rask_store::object::compute_id(Kind::Memo, &[], b"never stored"),
        size: 12,
    };
    let err = index
        .put_entries(&store, vec![(key("b", 5000), vec![missing])])
        .unwrap_err();
    assert!(err.to_string().contains("not in the store"), "{err}");
}

#[test]
fn put_many_stores_every_part_and_answers_as_single_puts_do() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    let values: Vec<Vec<u8>> = (0..2500u32)
        .map(|n| {
            format!("value {n} ")
                .repeat(1 + n as usize % 40)
                .into_bytes()
        })
        .collect();
    let keys: Vec<Key> = (0..2500).map(|n| key("m", n)).collect();
    // One key already holds its value: its outcome is Unchanged.
    index
        .put(&store, &keys[7], Kind::Instance, &[("ast", &values[7])])
        .unwrap();
    let parts: Vec<[(&str, &[u8]); 2]> = values
        .iter()
        .map(|v| [("ast", v.as_slice()), ("meta", b"m".as_slice())])
        .collect();
    let batch: Vec<(&Key, NamedParts)> = keys
        .iter()
        .zip(&parts)
        .map(|(k, p)| (k, p.as_slice()))
        .collect();
    let outcomes = index.put_many(&store, Kind::Instance, &batch).unwrap();
    assert_eq!(outcomes.len(), keys.len());
    assert!(
        matches!(outcomes[7], PutOutcome::Written(_)),
        "a part was added"
    );
    let again = index.put_many(&store, Kind::Instance, &batch).unwrap();
    assert!(again.iter().all(|o| matches!(o, PutOutcome::Unchanged(_))));
    // Every value reads back, in this handle and in a fresh one.
    for handle in [&index, &Index::open(&store).unwrap()] {
        for (k, v) in keys.iter().zip(&values) {
            match handle.get(&store, k, "ast").unwrap() {
                Lookup::Hit(bytes) => assert_eq!(&bytes, v),
                Lookup::Miss(m) => panic!("{k}: {}", m.detail),
            }
        }
    }
    // A bad part name appends nothing.
    let fresh = key("m", 9999);
    let bad: &[(&str, &[u8])] = &[("ok", b"1"), ("bad\nname", b"2")];
    assert!(
        index
            .put_many(&store, Kind::Instance, &[(&fresh, bad)])
            .is_err()
    );
    assert_eq!(
        index.find_missing(std::slice::from_ref(&fresh)).unwrap(),
        vec![0]
    );
}

#[test]
fn one_index_serves_many_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    send_sync(&index);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (index, store) = (&index, &store);
            s.spawn(move || {
                for n in 0..200 {
                    let k = key("threads", t * 1000 + n);
                    index
                        .put(store, &k, Kind::Blob, &[("v", &n.to_le_bytes())])
                        .unwrap();
                    assert!(index.lookup(&k).unwrap().is_hit());
                }
            });
        }
    });
    assert_eq!(index.stats().unwrap().entries, 800);
}

#[test]
fn a_long_lived_handle_sees_what_another_handle_appended_and_compacted() {
    let (_dir, store) = store();
    let reader = Index::open(&store).unwrap();
    let writer = Index::open(&store).unwrap();
    assert!(!reader.lookup(&key("ns", 0)).unwrap().is_hit());
    // Each round: an append to the current journal, then a compaction that
    // replaces the manifest (and may reuse freed inode numbers).
    for round in 0..6u64 {
        writer
            .put(&store, &key("ns", round), Kind::Blob, &[("v", b"x")])
            .unwrap();
        assert!(
            reader.lookup(&key("ns", round)).unwrap().is_hit(),
            "round {round}: an appended entry was not found"
        );
        writer.compact().unwrap();
        writer
            .put(&store, &key("ns", 100 + round), Kind::Blob, &[("v", b"y")])
            .unwrap();
        assert!(
            reader.lookup(&key("ns", 100 + round)).unwrap().is_hit(),
            "round {round}: an entry appended after a compaction was not found"
        );
    }
    assert_eq!(reader.stats().unwrap().entries, 12);
}

#[test]
fn a_journal_retired_by_a_compaction_that_never_switched_keeps_taking_entries() {
    // A compaction marks the journal retired (its modification time set to
    // the epoch) before it publishes the next manifest; if it dies between
    // the two, the journal stays current and entries appended to it must
    // still be found by a handle that was open all along.
    let (_dir, store) = store();
    let reader = Index::open(&store).unwrap();
    let writer = Index::open(&store).unwrap();
    writer
        .put(&store, &key("ns", 1), Kind::Blob, &[("v", b"one")])
        .unwrap();
    assert!(reader.lookup(&key("ns", 1)).unwrap().is_hit());
    let journal = writer.stats().unwrap().journal_path;
    std::fs::File::options()
        .append(true)
        .open(&journal)
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    for n in 2..5u64 {
        assert!(!reader.lookup(&key("ns", n)).unwrap().is_hit());
        writer
            .put(&store, &key("ns", n), Kind::Blob, &[("v", b"more")])
            .unwrap();
        assert_eq!(
            reader.get(&store, &key("ns", n), "v").unwrap(),
            Lookup::Hit(b"more".to_vec()),
            "entry {n} appended to the marked journal was not found"
        );
    }
    // A real compaction afterwards still switches every handle over.
    writer.compact().unwrap();
    writer
        .put(&store, &key("ns", 9), Kind::Blob, &[("v", b"after")])
        .unwrap();
    assert!(reader.lookup(&key("ns", 9)).unwrap().is_hit());
    assert_eq!(reader.stats().unwrap().entries, 5);
}

/// `entries` lists exactly the live entries when they are spread over a
/// base segment, a delta segment and the journal, with keys replaced and
/// removed in each: newest record wins, removed keys are gone, each key
/// once, in key-hash order, and `for_each_entry` sees the same set.
#[test]
fn entries_merge_segments_and_the_journal_newest_first() {
    let (_dir, store) = store();
    let options = IndexOptions::default().with_compact_min_bytes(16 << 10);
    let index = Index::open_with(&store, options).unwrap();
    let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let put = |model: &mut BTreeMap<u64, Vec<u8>>, n: u64, round: u64| {
        let v = format!("value {n} round {round}").into_bytes();
        index
            .put(&store, &key("merge", n), Kind::Blob, &[("v", &v)])
            .unwrap();
        model.insert(n, v);
    };
    // A base big enough that the changes below stay under a quarter of it.
    for n in 0..4_000 {
        put(&mut model, n, 0);
    }
    index.compact().unwrap();
    for n in (0..400).step_by(3) {
        put(&mut model, n, 1);
    }
    for n in 4_000..4_050 {
        put(&mut model, n, 1);
    }
    for n in (1..400).step_by(7) {
        assert!(index.remove(&key("merge", n)).unwrap());
        model.remove(&n);
    }
    // Automatic compactions have left a delta beside the base by now, and
    // the journal holds the latest records.
    for n in (0..4_050).step_by(101) {
        put(&mut model, n, 2);
    }
    for n in (2..4_050).step_by(131) {
        if model.remove(&n).is_some() {
            assert!(index.remove(&key("merge", n)).unwrap());
        }
    }
    let stats = index.stats().unwrap();
    assert_eq!(stats.segments.len(), 2, "base and delta: {stats:?}");
    assert!(stats.journal_records > 0);

    let entries = index.entries().unwrap();
    assert_eq!(entries.len(), model.len());
    assert!(
        entries
            .windows(2)
            .all(|w| w[0].key_hash() < w[1].key_hash())
    );
    let mut want: BTreeMap<_, _> = model
        .iter()
        .map(|(&n, v)| {
            let k = key("merge", n);
            let id = index.lookup(&k).unwrap().hit().unwrap().id();
            assert_eq!(index.get(&store, &k, "v").unwrap().hit().as_ref(), Some(v));
            (k.hash(), id)
        })
        .collect();
    for entry in &entries {
        assert_eq!(want.get(&entry.key_hash()), Some(&entry.id()));
    }
    let mut seen = 0;
    index
        .for_each_entry(|entry| {
            assert_eq!(want.remove(&entry.key_hash()), Some(entry.id()));
            seen += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, model.len());
    assert!(want.is_empty());
}
