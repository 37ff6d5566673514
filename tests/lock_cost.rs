//! What taking the writers/gc lock per call costs (a measurement, not a
//! test): `cargo test --release --test lock_cost -- --ignored --nocapture`.

use std::fs::OpenOptions;
use std::sync::Mutex;
use std::time::Instant;

use rask_store::{Durability, Kind, Store, StoreOptions};

#[test]
#[ignore = "measurement: run by hand"]
fn shared_lock_per_call_costs_well_under_a_put() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gc.lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    // The same steps as a Store's per-call entry: a count under a mutex,
    // flock on the first entry, unlock on the last exit.
    let holders = Mutex::new(0usize);
    let pairs = 1_000_000u32;
    let start = Instant::now();
    for _ in 0..pairs {
        {
            let mut n = holders.lock().unwrap();
            if *n == 0 {
                file.lock_shared().unwrap();
            }
            *n += 1;
        }
        {
            let mut n = holders.lock().unwrap();
            *n -= 1;
            if *n == 0 {
                file.unlock().unwrap();
            }
        }
    }
    let per_pair = start.elapsed().as_nanos() as f64 / f64::from(pairs);

    let store = Store::create(
        dir.path().join("store"),
        StoreOptions::with_durability(Durability::None),
    )
    .unwrap();
    let puts = 2_000u32;
    let start = Instant::now();
    for i in 0..puts {
        store
            .put_object(Kind::Blob, &[], format!("payload {i}").as_bytes())
            .unwrap();
    }
    let per_put = start.elapsed().as_nanos() as f64 / f64::from(puts);
    println!(
        "shared lock + unlock: {per_pair:.0} ns per call; a small new put: {per_put:.0} ns \
         ({:.1}% of it)",
        100.0 * per_pair / per_put
    );
}
