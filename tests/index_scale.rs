//! A large index: every entry stays findable through many automatic
//! compactions. Run by hand (it is slow): prints lookup and batch figures.
//!
//! `RASK_INDEX_SCALE_N=1000000 cargo test --release --test index_scale -- --ignored --nocapture`

use std::time::Instant;

use rask_store::index::PartRef;
use rask_store::{Component, Durability, Index, Key, Kind, Namespace, Store, StoreOptions};

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
    let n: u64 = std::env::var("RASK_INDEX_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    // RASK_INDEX_SCALE_DIR keeps the store there, to time other processes on it.
    let dir = tempfile::tempdir().unwrap();
    let root = std::env::var_os("RASK_INDEX_SCALE_DIR")
        .map_or_else(|| dir.path().join("cache"), std::path::PathBuf::from);
    let store = Store::create(&root, StoreOptions::with_durability(Durability::None)).unwrap();
    let index = Index::open(&store).unwrap();
    let object = store
        .put_object(Kind::Instance, &[], b"shared part")
        .unwrap();
    let keys: Vec<Key> = (0..n).map(key).collect();
    let start = Instant::now();
    for k in &keys {
        let part = PartRef {
            name: "ast".into(),
            id: object,
            size: 11,
        };
        index.put_entry(&store, k, vec![part]).unwrap();
    }
    let put_time = start.elapsed();
    let start = Instant::now();
    index.compact().unwrap();
    let compact_time = start.elapsed();
    drop(index);

    let start = Instant::now();
    let index = Index::open(&store).unwrap();
    let first = index.lookup(&keys[n as usize / 2]).unwrap();
    let open_time = start.elapsed();
    assert!(first.is_hit());

    let mut lat = Vec::with_capacity(keys.len());
    for k in keys.iter().step_by(7) {
        let t = Instant::now();
        let hit = index.lookup(k).unwrap();
        lat.push(t.elapsed());
        assert!(hit.is_hit());
    }
    lat.sort();
    let p50 = lat[lat.len() / 2];
    let p99 = lat[lat.len() * 99 / 100];

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
    let mut find_missing_time = std::time::Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let missing = index.find_missing(&batch).unwrap();
        find_missing_time = find_missing_time.min(t.elapsed());
        assert_eq!(missing.len(), 10_000);
    }

    println!(
        "entries {n}: put {:.1} µs/entry, final compact {:?}, open+1 lookup {:?}, lookup p50 {:?} \
         p99 {:?}, find_missing 20k {:?}",
        put_time.as_secs_f64() * 1e6 / n as f64,
        compact_time,
        open_time,
        p50,
        p99,
        find_missing_time
    );
    assert_eq!(index.stats().unwrap().entries, n);
    println!(
        "one key on the command line: entry show --ns rask-0.4+release std sort [ i32 ] b3:{}",
        hex::encode(blake3::hash(&(n / 3).to_le_bytes()).as_bytes())
    );
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
