//! What a keyed get's read path and verify's object walk cost, measured in
//! one process (a measurement, not a test):
//!
//! ```text
//! cargo test --release --test objects_read_cost -- --ignored --nocapture
//! RASK_COST_N=20000 cargo test --release --test objects_read_cost -- --ignored --nocapture
//! ```
//!
//! 1. `get_object(..).into_payload()` against the read path it replaced
//!    (the whole file read into one buffer, hashed, then the header and
//!    links drained off the front: a memmove of the payload), interleaved in
//!    blocks of 250 gets, alternating which goes first, three passes in
//!    shuffled order;
//! 2. `verify::verify` (one thread per core) against one thread reading
//!    and BLAKE3-hashing every object file, three rounds: wall time, and the
//!    process's CPU time (from `/proc/self/stat`), which a busy machine
//!    stretches much less than wall time.

mod common;

use std::fs::File;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rask_store::object::{self, HEADER_LEN, Header};
use rask_store::{Durability, Kind, ObjectId, Store, store::StoreOptions, verify};

/// User + system CPU of this process so far, in clock ticks (1/100 s).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The read path before the payload got its own allocation.
fn get_with_drain(store: &Store, id: &ObjectId) -> Vec<u8> {
    let mut file = File::open(store.object_path(id)).unwrap();
    let len = file.metadata().unwrap().len();
    let mut bytes = Vec::with_capacity(len as usize);
    (&mut file).take(len).read_to_end(&mut bytes).unwrap();
    let header = Header::decode(&bytes).unwrap();
    let start = header.payload_offset() as usize;
    let links = object::decode_links(&bytes[HEADER_LEN..start]);
    let bytes = Arc::new(bytes);
    let digest = object::payload_hash(&bytes, start);
    let actual = object::object_id(header.kind, &links, header.payload_len, &digest);
    assert_eq!(actual, *id);
    let mut bytes = Arc::try_unwrap(bytes).unwrap_or_else(|shared| shared.to_vec());
    bytes.drain(..start);
    bytes
}

#[test]
#[ignore = "measurement: run by hand"]
fn keyed_get_read_path_and_verify_walk() {
    let n: usize = common::env_number("RASK_COST_N", 20_000);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path(),
        StoreOptions::with_durability(Durability::None).loose(),
    )
    .unwrap();
    let mut rng = common::Xorshift::new(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.next_u64();
    // W1's sizes: 60% 256 B–4 KiB, 30% 4–32 KiB, 10% 32–256 KiB.
    let mut ids = Vec::with_capacity(n);
    let mut total = 0u64;
    for i in 0..n {
        let (lo, hi): (u64, u64) = match next() % 10 {
            0..=5 => (256, 4 << 10),
            6..=8 => (4 << 10, 32 << 10),
            _ => (32 << 10, 256 << 10),
        };
        let len = (lo + next() % (hi - lo)) as usize;
        let mut value: Vec<u8> = (0..len).map(|j| (j as u64 ^ i as u64) as u8).collect();
        value[..8].copy_from_slice(&(i as u64).to_le_bytes());
        total += len as u64;
        ids.push(store.put_object(Kind::Instance, &[], &value).unwrap());
    }
    common::Xorshift::new(0x2545_f491_4f6c_dd1d).shuffle(&mut ids);

    let (mut drained, mut own) = (Duration::ZERO, Duration::ZERO);
    for pass in 0..3 {
        for (b, block) in ids.chunks(250).enumerate() {
            let time = |new: bool| {
                let start = Instant::now();
                for id in block {
                    let payload = if new {
                        store.get_object(id).unwrap().into_payload()
                    } else {
                        get_with_drain(&store, id)
                    };
                    std::hint::black_box(payload);
                }
                start.elapsed()
            };
            if (b + pass) % 2 == 0 {
                drained += time(false);
                own += time(true);
            } else {
                own += time(true);
                drained += time(false);
            }
        }
    }
    for id in ids.iter().take(200) {
        assert_eq!(
            store.get_object(id).unwrap().into_payload(),
            get_with_drain(&store, id)
        );
    }
    let gets = (3 * n) as f64;
    println!(
        "{n} objects, {} MiB; get + into_payload: drained {:.2} µs, own allocation {:.2} µs \
         per get; own ÷ drained time {:.3}",
        total >> 20,
        drained.as_secs_f64() * 1e6 / gets,
        own.as_secs_f64() * 1e6 / gets,
        own.as_secs_f64() / drained.as_secs_f64()
    );

    for _ in 0..3 {
        let (cpu, start) = (cpu_ticks(), Instant::now());
        let mut buf = Vec::new();
        for id in &ids {
            let mut file = File::open(store.object_path(id)).unwrap();
            let len = file.metadata().unwrap().len();
            buf.clear();
            buf.reserve(len as usize);
            (&mut file).take(len).read_to_end(&mut buf).unwrap();
            std::hint::black_box(blake3::hash(&buf));
        }
        let (readhash_wall, readhash_cpu) = (start.elapsed().as_secs_f64(), cpu_ticks() - cpu);
        let (cpu, start) = (cpu_ticks(), Instant::now());
        let report = verify::verify(&store, verify::VerifyOptions::default(), &|_| {}).unwrap();
        let (verify_wall, verify_cpu) = (start.elapsed().as_secs_f64(), cpu_ticks() - cpu);
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!(report.objects, n as u64);
        println!(
            "read+hash, 1 thread: {readhash_wall:.3} s wall, {:.2} s CPU; verify, {} threads: \
             {verify_wall:.3} s wall, {:.2} s CPU; wall ratio {:.2}×, CPU verify ÷ read+hash \
             {:.2}; load {}",
            readhash_cpu as f64 / 100.0,
            report.threads,
            verify_cpu as f64 / 100.0,
            readhash_wall / verify_wall,
            verify_cpu as f64 / readhash_cpu.max(1) as f64,
            std::fs::read_to_string("/proc/loadavg").unwrap().trim()
        );
    }
}
