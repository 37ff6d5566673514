//! The index as automatic compactions leave it (a base segment, a delta
//! segment and a journal near its threshold): batch lookups, single misses
//! and opening. Run by hand (it is slow): prints figures, asserts answers.
//!
//! ```sh
//! RASK_INDEX_SCALE_DIR=/tmp/idxj1m RASK_INDEX_SCALE_N=1000000 \
//!   cargo test --release --test index_journal_scale -- --ignored --nocapture
//! ```
//!
//! The first run puts N entries (one shared part object, so the figures are
//! the index's alone) through automatic compactions and stops without a
//! final compaction; later runs with the same directory reuse the store
//! and only read it, so two builds can be timed on the same files.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use rask_store::index::{Access, IndexOptions, PartRef};
use rask_store::{Component, Durability, Index, Key, Kind, Namespace, Store, StoreOptions};

fn key(i: u64) -> Key {
    Key::new(
        Namespace::new("rask-0.4+release").unwrap(),
        vec![
            Component::str(format!("pkg_{:02}", i % 50)),
            Component::str(format!("fn_{i}")),
            Component::Hash(*blake3::hash(&i.to_le_bytes()).as_bytes()),
        ],
    )
    .unwrap()
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const ENV_CHILD_STORE: &str = "RASK_JOURNAL_SCALE_CHILD_STORE";
const ENV_CHILD_READ: &str = "RASK_JOURNAL_SCALE_CHILD_READ";
const ENV_CHILD_KEY: &str = "RASK_JOURNAL_SCALE_CHILD_KEY";

/// The child's body: open the store and its index afresh (journal mapped,
/// or read when asked), answer one lookup, print the time taken.
#[test]
fn child_open_and_lookup() {
    let Ok(root) = std::env::var(ENV_CHILD_STORE) else {
        return;
    };
    let access = if std::env::var_os(ENV_CHILD_READ).is_some() {
        Access::Read
    } else {
        Access::Map
    };
    let t = Instant::now();
    let store = Store::open(&root, StoreOptions::with_durability(Durability::None)).unwrap();
    let index = Index::open_with(&store, IndexOptions::default().with_access(access)).unwrap();
    let hit = index
        .lookup(&key(common::env_number(ENV_CHILD_KEY, 0)))
        .unwrap();
    let took = t.elapsed();
    assert!(hit.is_hit());
    println!("child-open-lookup-ns {}", took.as_nanos());
}

/// Open + one lookup in a fresh process (the test binary re-run as a
/// child), p50 over `runs`, journal mapped and read alternately; the child
/// looks up the key put as number `stored`.
fn fresh_process(root: &std::path::Path, runs: usize, stored: u64) -> (Duration, Duration) {
    let mut mapped = Vec::new();
    let mut read = Vec::new();
    for _ in 0..runs {
        for read_it in [false, true] {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args(["--exact", "child_open_and_lookup", "--nocapture"])
                .env(ENV_CHILD_STORE, root)
                .env(ENV_CHILD_KEY, stored.to_string());
            if read_it {
                cmd.env(ENV_CHILD_READ, "1");
            }
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{out:?}");
            let text = String::from_utf8_lossy(&out.stdout);
            let ns: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("child-open-lookup-ns "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no figure from the child: {text}"));
            if read_it { &mut read } else { &mut mapped }.push(Duration::from_nanos(ns));
        }
    }
    (p50(mapped), p50(read))
}

#[test]
#[ignore = "slow; run by hand for figures"]
fn an_index_as_inserted_answers_batches_misses_and_opens() {
    let n: u64 = common::env_number("RASK_INDEX_SCALE_N", 200_000);
    let dir = tempfile::tempdir().unwrap();
    let root = std::env::var_os("RASK_INDEX_SCALE_DIR")
        .map_or_else(|| dir.path().join("cache"), std::path::PathBuf::from);
    let reuse = root.join("index").join("manifest").exists();
    let options = StoreOptions::with_durability(Durability::None);
    let store = if reuse {
        Store::open(&root, options).unwrap()
    } else {
        Store::create(&root, options).unwrap()
    };
    if !reuse {
        let index = Index::open(&store).unwrap();
        let object = store
            .put_object(Kind::Instance, &[], b"shared part")
            .unwrap();
        let start = Instant::now();
        for i in 0..n {
            let part = PartRef {
                name: "ast".into(),
                id: object,
                size: 11,
            };
            index.put_entry(&store, &key(i), vec![part]).unwrap();
        }
        println!(
            "put {n} entries: {:.1} µs each",
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }

    // Opening afresh and answering one lookup (what a new compiler process pays).
    let open_runs: u64 = common::env_number("RASK_INDEX_SCALE_OPENS", 21);
    let mut opens = Vec::new();
    for r in 0..open_runs {
        let t = Instant::now();
        let index = Index::open(&store).unwrap();
        let hit = index.lookup(&key((r * 7919) % n)).unwrap();
        opens.push(t.elapsed());
        assert!(hit.is_hit());
    }

    let index = Index::open(&store).unwrap();
    let stats = index.stats().unwrap();
    assert_eq!(stats.entries, n, "every entry put is counted");

    let miss_count: u64 = common::env_number("RASK_INDEX_SCALE_MISSES", 20_000);
    let mut misses = Vec::with_capacity(miss_count as usize);
    for i in 0..miss_count {
        let k = key(n + 2_000_000 + i);
        let t = Instant::now();
        let found = index.lookup(&k).unwrap();
        misses.push(t.elapsed());
        assert!(!found.is_hit());
    }
    let mut hits = Vec::with_capacity(20_000);
    for i in 0..20_000u64 {
        let k = key(i * 37 % n);
        let t = Instant::now();
        let found = index.lookup(&k).unwrap();
        hits.push(t.elapsed());
        assert!(found.is_hit());
    }

    let batch: Vec<Key> = (0..20_000u64)
        .map(|i| {
            if i % 2 == 0 {
                key(i * 13 % n)
            } else {
                key(n + i)
            }
        })
        .collect();
    let runs: usize = common::env_number("RASK_INDEX_SCALE_RUNS", 5);
    let mut fm = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let missing = index.find_missing(&batch).unwrap();
        fm.push(t.elapsed());
        assert_eq!(missing.len(), 10_000);
        assert!(missing.iter().all(|&i| i % 2 == 1));
    }
    let best = *fm.iter().min().unwrap();
    let (fresh_mapped, fresh_read) = fresh_process(&root, 15, (n / 2).min(12_345));
    println!(
        "fresh process open + 1 lookup p50: journal mapped {fresh_mapped:?}, read {fresh_read:?}"
    );
    println!(
        "segments {:?} bytes, journal {} bytes; open + 1 lookup p50 {:?}; hit p50 {:?}; \
         miss p50 {:?}; find_missing 20k (half present) best {best:?} p50 {:?}",
        stats.segments.iter().map(|s| s.bytes).collect::<Vec<_>>(),
        stats.journal_bytes,
        p50(opens),
        p50(hits),
        p50(misses),
        p50(fm),
    );
}
