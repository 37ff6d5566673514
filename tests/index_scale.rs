//! A large index: every entry stays findable through many automatic
//! compactions. Run by hand (it is slow): prints lookup and batch figures.
//!
//! `RASK_INDEX_SCALE_N=1000000 cargo test --release --test index_scale -- --ignored --nocapture`
//!
//! With `RASK_INDEX_SCALE_DIR=DIR` the store is kept in DIR, and a later run
//! with the same N reuses it (the puts are skipped, the read figures taken).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use rask_store::index::PartRef;
use rask_store::{
    Component, Durability, Index, Key, KeyHash, Kind, Namespace, Store, StoreOptions,
};

fn key(i: u64) -> Key {
    Key::new(
        Namespace::new("rask-0.4+release").unwrap(),
        vec![
            Component::str("std"),
            Component::str("sort"),
            Component::List(vec![Component::str("i32")]),
            Component::Hash(*blake3::hash(&i.to_le_bytes()).as_bytes()),
        ],
    )
    .unwrap()
}

#[test]
#[ignore = "slow; run by hand for figures"]
fn a_large_index_finds_every_entry() {
    let n: u64 = common::env_number("RASK_INDEX_SCALE_N", 200_000);
    // RASK_INDEX_SCALE_DIR keeps the store there, to time other processes on it.
    let dir = tempfile::tempdir().unwrap();
    let root = std::env::var_os("RASK_INDEX_SCALE_DIR")
        .map_or_else(|| dir.path().join("cache"), std::path::PathBuf::from);
    // A store left there by an earlier run with the same N is reused: the
    // puts are skipped and only the read figures are taken.
    let reuse = root.join("index").join("manifest").exists();
    let store = if reuse {
        Store::open(&root, StoreOptions::with_durability(Durability::None)).unwrap()
    } else {
        Store::create(&root, StoreOptions::with_durability(Durability::None)).unwrap()
    };
    let keys: Vec<Key> = (0..n).map(key).collect();
    let (mut put_time, mut compact_time) = (None, None);
    if !reuse {
        let index = Index::open(&store).unwrap();
        let object = store
            .put_object(Kind::Instance, &[], b"shared part")
            .unwrap();
        let start = Instant::now();
        for k in &keys {
            let part = PartRef {
                name: "ast".into(),
                id: object,
                size: 11,
            };
            index.put_entry(&store, k, vec![part]).unwrap();
        }
        put_time = Some(start.elapsed());
        let start = Instant::now();
        index.compact().unwrap();
        compact_time = Some(start.elapsed());
    }

    let start = Instant::now();
    let index = Index::open(&store).unwrap();
    let first = index.lookup(&keys[n as usize / 2]).unwrap();
    let open_time = start.elapsed();
    assert!(first.is_hit());

    // Owned (`lookup`: copies the entry) and borrowed (`lookup_with`: reads
    // one part id in place) lookups on alternate keys, so both see the same
    // machine load and neither finds the other's key in the cache.
    let mut owned = Vec::with_capacity(keys.len() / 14 + 1);
    let mut borrowed = Vec::with_capacity(keys.len() / 14 + 1);
    for (j, k) in keys.iter().step_by(7).enumerate() {
        let t = Instant::now();
        let hit = if j % 2 == 0 {
            index.lookup(k).unwrap().hit().map(|e| e.parts()[0].id)
        } else {
            index
                .lookup_with(k, |e| e.parts().next().map(|p| p.id))
                .unwrap()
                .hit()
                .flatten()
        };
        let took = t.elapsed();
        assert!(hit.is_some());
        if j % 2 == 0 {
            owned.push(took);
        } else {
            borrowed.push(took);
        }
    }
    // Misses: keys that were never put (each one also re-reads what other
    // processes may have appended, as a miss must).
    let mut misses = Vec::with_capacity(20_000);
    for i in 0..20_000u64 {
        let k = key(n + 1_000_000 + i);
        let t = Instant::now();
        let found = index.lookup(&k).unwrap();
        misses.push(t.elapsed());
        assert!(!found.is_hit());
    }
    let percentiles = |lat: &mut Vec<Duration>| {
        lat.sort();
        (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
    };
    let (owned_p50, owned_p99) = percentiles(&mut owned);
    let (borrowed_p50, borrowed_p99) = percentiles(&mut borrowed);
    let (miss_p50, miss_p99) = percentiles(&mut misses);

    // What a caller pays before the lookup: encoding and hashing its key.
    let sample: Vec<Key> = keys.iter().step_by(7).take(100_000).cloned().collect();
    let t = Instant::now();
    for k in &sample {
        std::hint::black_box(KeyHash::of_encoding(std::hint::black_box(k.encoding())));
    }
    let hash_each = t.elapsed() / sample.len() as u32;
    let t = Instant::now();
    for k in &sample {
        std::hint::black_box(Key::new(k.namespace().clone(), k.components().to_vec()).unwrap());
    }
    let build_each = t.elapsed() / sample.len() as u32;

    let batch: Vec<Key> = (0..20_000u64)
        .map(|i| {
            if i % 2 == 0 {
                key(i * 13 % n)
            } else {
                key(n + i)
            }
        })
        .collect();
    // The machine may be shared: the best of a few runs.
    let mut find_missing_time = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let missing = index.find_missing(&batch).unwrap();
        find_missing_time = find_missing_time.min(t.elapsed());
        assert_eq!(missing.len(), 10_000);
        assert!(missing.iter().all(|&i| i % 2 == 1));
    }

    // A fresh process: `rask-store entry show` for one key, timed from
    // spawn to exit, next to `rask-store --version` (process start alone).
    let probe = n / 3;
    let show_args: Vec<String> = [
        "--store",
        root.to_str().unwrap(),
        "entry",
        "show",
        "--ns",
        "rask-0.4+release",
        "std",
        "sort",
        "[",
        "i32",
        "]",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!(
        "b3:{}",
        hex::encode(blake3::hash(&probe.to_le_bytes()).as_bytes())
    )])
    .collect();
    let mut show = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..40 {
        for (args, lat) in [
            (&show_args[..], &mut show),
            (&["--version".to_string()][..], &mut bare),
        ] {
            let t = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_rask-store"))
                .args(args)
                .output()
                .unwrap();
            lat.push(t.elapsed());
            assert!(out.status.success(), "{out:?}");
        }
    }
    let (show_p50, _) = percentiles(&mut show);
    let (bare_p50, _) = percentiles(&mut bare);

    println!(
        "entries {n}: put {} µs/entry, final compact {:?}, open+1 lookup in-process {:?}",
        put_time.map_or("(reused store)".to_string(), |t| format!(
            "{:.1}",
            t.as_secs_f64() * 1e6 / n as f64
        )),
        compact_time,
        open_time,
    );
    println!(
        "lookup (owned) p50 {owned_p50:?} p99 {owned_p99:?}; lookup_with (borrowed) p50 \
         {borrowed_p50:?} p99 {borrowed_p99:?}; key hash alone {hash_each:?}, Key::new \
         (encode + hash) {build_each:?}"
    );
    println!("lookup of an absent key p50 {miss_p50:?} p99 {miss_p99:?}");
    println!(
        "find_missing 20k (half present) {find_missing_time:?}; fresh process entry show p50 \
         {show_p50:?}, rask-store --version p50 {bare_p50:?}"
    );
    let stats = index.stats().unwrap();
    println!(
        "segments {:?} bytes, journal {} bytes",
        stats.segments.iter().map(|s| s.bytes).collect::<Vec<_>>(),
        stats.journal_bytes
    );
    assert_eq!(stats.entries, n);

    // Between full compactions a base and a delta segment are live, and a
    // key in the base is first missed in the delta. 60,000 more entries go
    // in through automatic compactions; then hits in the base, hits among
    // the new entries, absent keys and find_missing again. Afterwards they
    // are removed and the index compacted back to one segment.
    let object = store
        .put_object(Kind::Instance, &[], b"shared part")
        .unwrap();
    let extra: Vec<Key> = (n..n + 60_000).map(key).collect();
    for k in &extra {
        let part = PartRef {
            name: "ast".into(),
            id: object,
            size: 11,
        };
        index.put_entry(&store, k, vec![part]).unwrap();
    }
    let stats = index.stats().unwrap();
    assert_eq!(stats.entries, n + 60_000);
    let time_hits = |keys: &mut dyn Iterator<Item = &Key>| {
        let mut lat = Vec::new();
        for k in keys {
            let t = Instant::now();
            let hit = index.lookup_with(k, |e| e.key_hash()).unwrap();
            lat.push(t.elapsed());
            assert!(hit.is_hit());
        }
        percentiles(&mut lat)
    };
    let (base_p50, base_p99) = time_hits(&mut keys.iter().step_by(14));
    let (new_p50, new_p99) = time_hits(&mut extra.iter().step_by(3));
    let mut misses = Vec::with_capacity(20_000);
    for i in 0..20_000u64 {
        let k = key(n + 2_000_000 + i);
        let t = Instant::now();
        let found = index.lookup(&k).unwrap();
        misses.push(t.elapsed());
        assert!(!found.is_hit());
    }
    let (miss2_p50, miss2_p99) = percentiles(&mut misses);
    let batch: Vec<Key> = (0..20_000u64)
        .map(|i| {
            if i % 2 == 0 {
                key(i * 13 % n)
            } else {
                key(n + 2_000_000 + i)
            }
        })
        .collect();
    let mut find_missing_2 = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let missing = index.find_missing(&batch).unwrap();
        find_missing_2 = find_missing_2.min(t.elapsed());
        assert_eq!(missing.len(), 10_000);
    }
    println!(
        "with {} segments ({:?} bytes) and a {}-byte journal: base hit p50 {base_p50:?} p99 \
         {base_p99:?}, new hit p50 {new_p50:?} p99 {new_p99:?}, absent p50 {miss2_p50:?} p99 \
         {miss2_p99:?}, find_missing 20k {find_missing_2:?}",
        stats.segments.len(),
        stats.segments.iter().map(|s| s.bytes).collect::<Vec<_>>(),
        stats.journal_bytes
    );
    for k in &extra {
        assert!(index.remove(k).unwrap());
    }
    index.compact().unwrap();
    let stats = index.stats().unwrap();
    assert_eq!((stats.entries, stats.segments.len()), (n, 1));
}

#[test]
#[ignore = "slow; run by hand for figures"]
fn keyed_put_throughput_next_to_temp_and_rename() {
    let n = 20_000u64;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path().join("cache"),
        StoreOptions::with_durability(Durability::None),
    )
    .unwrap();
    let index = Index::open(&store).unwrap();
    let keys: Vec<Key> = (0..n).map(key).collect();
    let value = |i: u64| {
        let mut v = vec![0u8; 1300];
        v[..8].copy_from_slice(&i.to_le_bytes());
        v
    };
    let t = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        index
            .put(&store, k, Kind::Instance, &[("ast", &value(i as u64))])
            .unwrap();
    }
    let keyed = t.elapsed().as_secs_f64() * 1e6 / n as f64;

    // The raw filesystem: temp file + rename into 256 fanout directories.
    let raw = dir.path().join("raw");
    for b in 0..256 {
        std::fs::create_dir_all(raw.join(format!("{b:02x}"))).unwrap();
    }
    let t = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        let hex = k.hash().to_hex();
        let mut temp = tempfile::NamedTempFile::new_in(&raw).unwrap();
        std::io::Write::write_all(&mut temp, &value(i as u64)).unwrap();
        temp.persist(raw.join(&hex[..2]).join(&hex[2..])).unwrap();
    }
    let fs = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "{n} single-part keyed puts of 1.3 KB: {keyed:.1} µs/put; temp + rename: {fs:.1} µs/file"
    );
}
