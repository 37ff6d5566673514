//! `Store::get_many` and `Index::get_many`: a batch of reads shared over the
//! cores answers every index once, on the calling thread, with what the
//! one-at-a-time get would have said — the same bytes, the same misses —
//! and stops at the first error the callback returns.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::thread;

use common::{flip_object_byte, layouts, pseudo_random};
use rask_store::{
    Component, Error, Index, Key, Kind, Lookup, MissCause, Namespace, ObjectBuf, ObjectId, Store,
};

/// Payload lengths from 0 bytes to 200 KiB, small ones most often, enough
/// of them that a batch is shared out (`store::PARALLEL_BYTES`).
fn lengths(n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| match i % 10 {
            0 => 0,
            1..=5 => 100 + i * 37 % 4_000,
            6..=8 => 4_096 + i * 811 % 28_000,
            _ => 64_000 + i * 4_099 % 140_000,
        })
        .collect()
}

fn fill(store: &Store, n: usize) -> Vec<(ObjectId, Vec<u8>)> {
    lengths(n)
        .into_iter()
        .enumerate()
        .map(|(i, len)| {
            let payload = pseudo_random(len, i as u64 + 1);
            (
                store.put_object(Kind::Blob, &[], &payload).unwrap(),
                payload,
            )
        })
        .collect()
}

/// Every index `get_many` answered, with the payload or the error's text;
/// panics if one is answered twice or on another thread.
fn answers(store: &Store, ids: &[ObjectId]) -> BTreeMap<usize, Result<Vec<u8>, String>> {
    let caller = thread::current().id();
    let mut seen = BTreeMap::new();
    store
        .get_many(ids, |i, read| -> Result<(), String> {
            assert_eq!(
                thread::current().id(),
                caller,
                "index {i} answered elsewhere"
            );
            let answer = read
                .map(|o| o.payload().to_vec())
                .map_err(|e| e.to_string());
            assert!(seen.insert(i, answer).is_none(), "index {i} answered twice");
            Ok(())
        })
        .unwrap();
    seen
}

#[test]
fn a_batch_reads_back_every_payload_once_on_the_calling_thread() {
    for (layout, options) in layouts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), options).unwrap();
        let stored = fill(&store, 400);
        // The same id twice and in reverse order are answered by position.
        let mut ids: Vec<ObjectId> = stored.iter().rev().map(|(id, _)| *id).collect();
        ids.push(stored[7].0);
        let got = answers(&store, &ids);
        assert_eq!(got.len(), ids.len(), "{layout}: every index answered");
        for (i, answer) in &got {
            let want = &stored.iter().find(|(id, _)| *id == ids[*i]).unwrap().1;
            assert_eq!(answer.as_ref().unwrap(), want, "{layout}: index {i}");
        }
        // A batch too small to share out says the same.
        let few = answers(&store, &ids[..3]);
        assert_eq!(few.len(), 3);
        for (i, answer) in few {
            assert_eq!(answer, got[&i], "{layout}: small batch, index {i}");
        }
    }
}

#[test]
fn batches_on_several_threads_at_once_each_get_every_answer() {
    // The helper threads serve one batch at a time; the others run on
    // their callers alone. Every caller must still get all its answers,
    // and none may wait for another's.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), rask_store::StoreOptions::default()).unwrap();
    let stored = fill(&store, 300);
    let index = Index::open(&store).unwrap();
    let ns = Namespace::new("rask-0.4+test").unwrap();
    for i in (0..600).step_by(2) {
        index
            .put(&store, &key(&ns, i), Kind::Instance, &[("v", b"x")])
            .unwrap();
    }
    thread::scope(|s| {
        for t in 0..4 {
            let (store, stored, index, ns) = (&store, &stored, &index, &ns);
            s.spawn(move || {
                for round in 0..20 {
                    let mut ids: Vec<ObjectId> = stored.iter().map(|(id, _)| *id).collect();
                    let by = (t * 37 + round * 11) % ids.len();
                    ids.rotate_left(by);
                    let got = answers(store, &ids);
                    assert_eq!(got.len(), ids.len(), "thread {t}, round {round}");
                    for (i, answer) in &got {
                        let want = &stored.iter().find(|(id, _)| *id == ids[*i]).unwrap().1;
                        assert_eq!(answer.as_ref().unwrap(), want, "thread {t}, index {i}");
                    }
                    let missing = index
                        .find_missing_with(ns, 600, |i, k| {
                            k.str("pkg").str(&format!("f{i}"));
                            Ok::<(), Error>(())
                        })
                        .unwrap();
                    let odd: Vec<usize> = (1..600).step_by(2).collect();
                    assert_eq!(missing, odd, "thread {t}, round {round}");
                }
            });
        }
    });
}

#[test]
fn absent_and_damaged_objects_are_errors_for_their_index_only() {
    for (layout, options) in layouts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), options).unwrap();
        let stored = fill(&store, 300);
        let damaged = stored[13].0;
        flip_object_byte(dir.path(), &damaged, 200);
        // A fresh handle, so nothing read before the damage is trusted.
        let store = Store::open(dir.path(), options).unwrap();
        let absent = ObjectId::from_bytes([0xab; 32]);
        let mut ids: Vec<ObjectId> = stored.iter().map(|(id, _)| *id).collect();
        ids.insert(100, absent);
        let mut kinds = BTreeMap::new();
        store
            .get_many(&ids, |i, read| -> Result<(), Error> {
                let kind = match read {
                    Ok(object) => {
                        let mut buf = ObjectBuf::new();
                        let one = store.get_object_into(&ids[i], &mut buf)?;
                        assert_eq!(object.payload(), one.payload(), "{layout}: index {i}");
                        "ok"
                    }
                    Err(Error::NotFound { .. }) => "absent",
                    Err(Error::Corrupt { .. }) => "damaged",
                    Err(e) => return Err(e),
                };
                kinds.insert(i, kind);
                Ok(())
            })
            .unwrap();
        assert_eq!(kinds.len(), ids.len(), "{layout}");
        assert_eq!(kinds[&100], "absent", "{layout}");
        let at = ids.iter().position(|id| *id == damaged).unwrap();
        assert_eq!(kinds[&at], "damaged", "{layout}");
        let ok = kinds.values().filter(|k| **k == "ok").count();
        assert_eq!(ok, ids.len() - 2, "{layout}: every other object reads");
    }
}

#[test]
fn the_first_error_the_callback_returns_stops_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Default::default()).unwrap();
    let ids: Vec<ObjectId> = fill(&store, 500).into_iter().map(|(id, _)| id).collect();
    let mut calls = 0;
    let mut after_error = 0;
    let result = store.get_many(&ids, |i, _| {
        calls += 1;
        if calls > 40 {
            after_error += 1;
        }
        if calls >= 40 {
            return Err(format!("stop at {i}"));
        }
        Ok(())
    });
    assert!(result.unwrap_err().starts_with("stop at "));
    assert_eq!(calls, 40, "no callback after the one that failed");
    assert_eq!(after_error, 0);
}

fn key(ns: &Namespace, i: usize) -> Key {
    Key::new(
        ns.clone(),
        vec![Component::str("pkg"), Component::str(format!("f{i}"))],
    )
    .unwrap()
}

#[test]
fn index_get_many_answers_as_get_into_does_for_every_key() {
    for (layout, options) in layouts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), options).unwrap();
        let index = Index::open(&store).unwrap();
        let ns = Namespace::new("rask-0.4").unwrap();
        let lens = lengths(300);
        for (i, len) in lens.iter().enumerate() {
            let ast = pseudo_random(*len, i as u64 + 7);
            index
                .put(&store, &key(&ns, i), Kind::Instance, &[("ast", &ast)])
                .unwrap();
        }
        // Key 5's object damaged, key 6's gone (loose only: a pack is not
        // edited), key 300 never stored; every key asked for a part "ir"
        // would be a miss too.
        let part_id = |i: usize| match index.lookup(&key(&ns, i)).unwrap() {
            Lookup::Hit(entry) => entry.part("ast").unwrap().id,
            Lookup::Miss(m) => panic!("{m:?}"),
        };
        flip_object_byte(dir.path(), &part_id(5), 100);
        if layout == "loose" {
            fs::remove_file(store.object_path(&part_id(6))).unwrap();
        }
        let store = Store::open(dir.path(), options).unwrap();
        let index = Index::open(&store).unwrap();
        let keys: Vec<Key> = (0..=300).map(|i| key(&ns, i)).collect();
        let mut got = BTreeMap::new();
        index
            .get_many(&store, &keys, "ast", |i, answer| -> Result<(), Error> {
                let answer = match answer? {
                    Lookup::Hit(bytes) => Ok(bytes.to_vec()),
                    Lookup::Miss(miss) => Err(miss.cause),
                };
                assert!(got.insert(i, answer).is_none(), "{layout}: key {i} twice");
                Ok(())
            })
            .unwrap();
        assert_eq!(got.len(), keys.len(), "{layout}");
        let mut buf = ObjectBuf::new();
        for (i, key) in keys.iter().enumerate() {
            let one = match index.get_into(&store, key, "ast", &mut buf).unwrap() {
                Lookup::Hit(bytes) => Ok(bytes.to_vec()),
                Lookup::Miss(miss) => Err(miss.cause),
            };
            assert_eq!(got[&i], one, "{layout}: key {i}");
        }
        assert_eq!(got[&5], Err(MissCause::Corrupt), "{layout}");
        assert_eq!(got[&300], Err(MissCause::Absent), "{layout}");
        if layout == "loose" {
            assert_eq!(got[&6], Err(MissCause::Dangling));
        }
        assert_eq!(got[&9].as_ref().unwrap().len(), lens[9], "{layout}");
        let mut no_part = 0;
        index
            .get_many(
                &store,
                &keys[..50],
                "ir",
                |_, answer| -> Result<(), Error> {
                    if let Lookup::Miss(miss) = answer? {
                        assert_eq!(miss.cause, MissCause::Absent);
                        no_part += 1;
                    }
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(no_part, 50, "{layout}: no entry has a part \"ir\"");
    }
}

#[test]
fn put_many_stores_what_put_object_would_and_each_thread_writes_its_own_pack() {
    for (layout, options) in layouts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), options).unwrap();
        let payloads: Vec<Vec<u8>> = lengths(400)
            .into_iter()
            .enumerate()
            .map(|(i, len)| pseudo_random(len, i as u64 + 50))
            .collect();
        let link = store.put_object(Kind::Blob, &[], b"linked").unwrap();
        let links = [link];
        let objects: Vec<(&[ObjectId], &[u8])> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let links: &[ObjectId] = if i % 7 == 0 { &links } else { &[] };
                (links, &p[..])
            })
            .collect();
        let ids = store.put_many(Kind::Instance, &objects).unwrap();
        assert_eq!(ids.len(), objects.len(), "{layout}");
        // The same ids a one-at-a-time put gives, the same objects read back
        // by a handle opened afterwards.
        let again: Vec<ObjectId> = objects
            .iter()
            .map(|(links, p)| store.put_object(Kind::Instance, links, p).unwrap())
            .collect();
        assert_eq!(ids, again, "{layout}");
        drop(store);
        let store = Store::open(dir.path(), options).unwrap();
        let got = answers(&store, &ids);
        // Links come through a worker's buffer as they were put.
        store
            .get_many(&ids, |i, read| -> Result<(), Error> {
                let object = read?;
                assert_eq!(
                    object.links(),
                    objects[i].0,
                    "{layout}: links of object {i}"
                );
                assert_eq!(object.id(), ids[i]);
                Ok(())
            })
            .unwrap();
        for (i, (links, payload)) in objects.iter().enumerate() {
            assert_eq!(got[&i].as_ref().unwrap(), payload, "{layout}: object {i}");
            let object = store.get_object(&ids[i]).unwrap();
            assert_eq!(object.links(), *links, "{layout}: object {i}");
            assert_eq!(object.kind(), Kind::Instance);
        }
        let packs = fs::read_dir(store.layout().pack_dir())
            .map(|d| d.count())
            .unwrap_or(0);
        if layout == "loose" {
            assert_eq!(packs, 0, "a loose store makes no pack");
        } else {
            // The first put's pack and, with workers, one more for each
            // (data and index files); never more than the threads.
            let threads = rask_store::store::MAX_WORKERS + 1;
            assert!((2..=2 * threads).contains(&packs), "{packs} pack files");
        }
    }
}

#[test]
fn a_small_put_many_uses_the_one_pack_of_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), Default::default()).unwrap();
    let payloads: Vec<Vec<u8>> = (0..10).map(|i| pseudo_random(300, i)).collect();
    let objects: Vec<(&[ObjectId], &[u8])> = payloads.iter().map(|p| (&[][..], &p[..])).collect();
    let ids = store.put_many(Kind::Blob, &objects).unwrap();
    for (id, payload) in ids.iter().zip(&payloads) {
        assert_eq!(store.get_object(id).unwrap().payload(), &payload[..]);
    }
    let packs = fs::read_dir(store.layout().pack_dir()).unwrap().count();
    assert_eq!(packs, 2, "one pack: its data and index files");
}

#[test]
fn index_get_many_with_answers_as_get_into_does_with_the_same_miss_details() {
    for (layout, options) in layouts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), options).unwrap();
        let index = Index::open(&store).unwrap();
        let ns = Namespace::new("rask-0.4").unwrap();
        let lens = lengths(300);
        for (i, len) in lens.iter().enumerate() {
            let ast = pseudo_random(*len, i as u64 + 7);
            index
                .put(&store, &key(&ns, i), Kind::Instance, &[("ast", &ast)])
                .unwrap();
        }
        let part_id = |i: usize| match index.lookup(&key(&ns, i)).unwrap() {
            Lookup::Hit(entry) => entry.part("ast").unwrap().id,
            Lookup::Miss(m) => panic!("{m:?}"),
        };
        // Key 5's object damaged, key 6's gone (loose only), key 7 removed,
        // key 300 never stored, key 301 stored by another handle after
        // this one opened.
        flip_object_byte(dir.path(), &part_id(5), 100);
        if layout == "loose" {
            fs::remove_file(store.object_path(&part_id(6))).unwrap();
        }
        assert!(index.remove(&key(&ns, 7)).unwrap());
        let store = Store::open(dir.path(), options).unwrap();
        let index = Index::open(&store).unwrap();
        {
            let other = Index::open(&store).unwrap();
            other
                .put(&store, &key(&ns, 301), Kind::Instance, &[("ast", b"late")])
                .unwrap();
        }
        let write = |i: usize, k: &mut rask_store::key::KeyEncoder<'_>| -> Result<(), Error> {
            k.str("pkg").str(&format!("f{i}"));
            Ok(())
        };
        let caller = thread::current().id();
        let mut got = BTreeMap::new();
        index
            .get_many_with(&store, &ns, 302, write, "ast", |i, answer| {
                assert_eq!(thread::current().id(), caller, "key {i} answered elsewhere");
                let answer = match answer? {
                    Lookup::Hit(bytes) => Ok(bytes.to_vec()),
                    Lookup::Miss(miss) => Err((miss.cause, miss.detail)),
                };
                assert!(got.insert(i, answer).is_none(), "{layout}: key {i} twice");
                Ok::<(), Error>(())
            })
            .unwrap();
        assert_eq!(got.len(), 302, "{layout}: every key answered");
        let mut buf = ObjectBuf::new();
        for i in 0..302 {
            let one = match index
                .get_into(&store, &key(&ns, i), "ast", &mut buf)
                .unwrap()
            {
                Lookup::Hit(bytes) => Ok(bytes.to_vec()),
                Lookup::Miss(miss) => Err((miss.cause, miss.detail)),
            };
            assert_eq!(got[&i], one, "{layout}: key {i}");
        }
        let cause = |i: usize| got[&i].as_ref().err().map(|(cause, _)| *cause);
        assert_eq!(cause(5), Some(MissCause::Corrupt), "{layout}");
        assert_eq!(cause(7), Some(MissCause::Absent), "{layout}");
        assert_eq!(cause(300), Some(MissCause::Absent), "{layout}");
        if layout == "loose" {
            assert_eq!(cause(6), Some(MissCause::Dangling));
        }
        assert!(
            got[&300].as_ref().unwrap_err().1.contains("f300"),
            "{layout}: an absent key's miss names it: {:?}",
            got[&300]
        );
        assert_eq!(got[&301], Ok(b"late".to_vec()), "{layout}");
        assert_eq!(got[&9].as_ref().unwrap().len(), lens[9], "{layout}");

        // A part no entry has is a miss naming the part, for every key but
        // the removed one.
        let mut no_part = Vec::new();
        index
            .get_many_with(&store, &ns, 50, write, "ir", |_, answer| {
                if let Lookup::Miss(miss) = answer? {
                    no_part.push(miss.detail);
                }
                Ok::<(), Error>(())
            })
            .unwrap();
        assert_eq!(no_part.len(), 50, "{layout}: no entry has a part \"ir\"");
        let naming = no_part.iter().filter(|d| d.contains("part named \"ir\""));
        assert_eq!(naming.count(), 49, "{layout}: {no_part:?}");

        // An error from `write` is what the call returns, before any read.
        type Failure = Box<dyn std::error::Error + Send + Sync>;
        let mut calls = 0;
        let result = index.get_many_with(
            &store,
            &ns,
            300,
            |i, k| -> Result<(), Failure> {
                if i == 150 {
                    return Err(format!("cannot name key {i}").into());
                }
                k.str("pkg").str(&format!("f{i}"));
                Ok(())
            },
            "ast",
            |_, _| {
                calls += 1;
                Ok(())
            },
        );
        assert_eq!(
            result.unwrap_err().to_string(),
            "cannot name key 150",
            "{layout}"
        );
        assert_eq!(calls, 0, "{layout}: no callback after `write` failed");
    }
}
