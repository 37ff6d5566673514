//! What a keyed put costs beyond the object put under it, measured with no
//! file creation in the way (a measurement, not a test):
//!
//! ```text
//! cargo test --release --test index_put_cost -- --ignored --nocapture
//! RASK_COST_N=100000 RASK_COST_DIR=/some/dir cargo test --release --test index_put_cost -- --ignored --nocapture
//! ```
//!
//! Every entry's one part is the same small payload, so after the first put
//! each `Store::put_object` finds the object already there (it checks and
//! keeps it): what is left of a keyed put is the index's own work, the
//! journal append, its locks and the refresh after it, and the compactions
//! the journal's growth triggers. Keys are shaped like W1's (a package, a
//! function, three 32-byte hashes). Three rounds, each on a new store:
//!
//! - `put_object`: `Store::put_object` of the existing payload, N times;
//! - `Index::put`: one entry per call, N calls;
//! - `Index::put_many`: batches of 1,000 entries.
//!
//! Each line gives µs per put and the index's share beyond `put_object`.

mod common;

use std::time::Instant;

use rask_store::index::NamedParts;
use rask_store::{Durability, Index, Key, Kind, Namespace, Store, StoreOptions};

const PAYLOAD: &[u8] = b"one small payload shared by every entry";

fn keys(n: usize) -> Vec<Key> {
    let ns = Namespace::new("cost").unwrap();
    (0..n)
        .map(|i| {
            let mut key = Key::build(&ns);
            key.str("some_package_name")
                .str(&format!("fn_{i}"))
                .hash(&[(i % 251) as u8; 32])
                .hash(&[7; 32])
                .hash(&[(i >> 8) as u8; 32]);
            key.finish().unwrap()
        })
        .collect()
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn a_keyed_put_beyond_its_object_put() {
    let n: usize = common::env_number("RASK_COST_N", 50_000);
    let keys = keys(n);
    let options = StoreOptions::with_durability(Durability::None);
    for round in 1..=3 {
        let per_put = |start: Instant| start.elapsed().as_secs_f64() * 1e6 / n as f64;

        let dir = common::cost_dir();
        let store = Store::create(dir.path().join("store"), options).unwrap();
        store.put_object(Kind::Instance, &[], PAYLOAD).unwrap();
        let start = Instant::now();
        for _ in 0..n {
            store.put_object(Kind::Instance, &[], PAYLOAD).unwrap();
        }
        let object = per_put(start);

        let index = Index::open(&store).unwrap();
        let start = Instant::now();
        for key in &keys {
            index
                .put(&store, key, Kind::Instance, &[("ast", PAYLOAD)])
                .unwrap();
        }
        let single = per_put(start);
        assert_eq!(index.find_missing(&keys).unwrap(), Vec::<usize>::new());
        drop(index);
        drop(store);

        let dir2 = common::cost_dir();
        let store = Store::create(dir2.path().join("store"), options).unwrap();
        let index = Index::open(&store).unwrap();
        let parts: [(&str, &[u8]); 1] = [("ast", PAYLOAD)];
        let start = Instant::now();
        for chunk in keys.chunks(1_000) {
            let batch: Vec<(&Key, NamedParts)> = chunk.iter().map(|k| (k, &parts[..])).collect();
            index.put_many(&store, Kind::Instance, &batch).unwrap();
        }
        let many = per_put(start);
        assert_eq!(index.find_missing(&keys).unwrap(), Vec::<usize>::new());

        println!(
            "round {round}: {n} puts; put_object {object:.2} µs, Index::put {single:.2} µs \
             (+{:.2}), Index::put_many {many:.2} µs (+{:.2}); load {}",
            single - object,
            many - object,
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
    }
}
