//! Where a verified get's time goes next to the raw filesystem, measured in
//! one process with every way interleaved (a measurement, not a test):
//!
//! ```text
//! cargo test --release --test objects_get_cost -- --ignored --nocapture
//! RASK_COST_N=20000 RASK_COST_DIR=/some/dir cargo test --release --test objects_get_cost -- --ignored --nocapture
//! ```
//!
//! N values sized like W1 (60% 256 B–4 KiB, 30% 4–32 KiB, 10% 32–256 KiB,
//! log-uniform inside each band, as `bench/`'s generator) are put into a
//! store and into a copy of the raw filesystem peer (file named by BLAKE3,
//! no header, read with open + fstat + one read into a reused buffer, no
//! re-hash). Then, three rounds in shuffled order, blocks of 250 gets go
//! through each way in turn (the first way rotating from block to block),
//! every payload compared with its value as the benchmark does:
//!
//! - `raw`: the raw filesystem peer's get;
//! - `raw+hash`: the same plus `blake3::hash` of the value on this thread
//!   (a one-thread verified get with nothing else to pay for);
//! - `get_object before`: `get_object`'s read path before it took the rest
//!   of a file in one `read` (std's `read_to_end`: 8 KiB, 16 KiB, …);
//! - `get_object`: `Store::get_object` (a new buffer per get);
//! - `get_object_into`: `Store::get_object_into` with one reused
//!   `ObjectBuf`;
//! - `packed get_object_into`: the same from a store that packs the values
//!   (the default; the ways above read a store of loose files).
//!
//! Each line gives µs per get, each way's throughput ÷ raw's, minor page
//! faults per get, the load average and the share of the time this thread
//! waited for a CPU.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rask_store::object::{self, HEADER_LEN, Header};
use rask_store::{Durability, Kind, ObjectBuf, ObjectId, Store, StoreOptions};

/// W1's value sizes, drawn as `bench/src/workload.rs` draws them.
fn values(n: usize) -> Vec<Vec<u8>> {
    let mut rng = common::Xorshift::new(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.next_u64();
    (0..n)
        .map(|i| {
            let (lo, hi): (f64, f64) = match next() % 10 {
                0..=5 => (256.0, 4096.0),
                6..=8 => (4096.0, 32768.0),
                _ => (32768.0, 262_144.0),
            };
            let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
            let len = (lo * (hi / lo).powf(u)) as usize;
            let mut value: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            value[..8].copy_from_slice(&(i as u64).to_le_bytes());
            value
        })
        .collect()
}

fn raw_path(root: &Path, id: &[u8; 32]) -> PathBuf {
    let hex = hex::encode(id);
    root.join(&hex[..2]).join(&hex[2..])
}

fn raw_put(root: &Path, tmp: &Path, value: &[u8]) -> [u8; 32] {
    let id = *blake3::hash(value).as_bytes();
    let temp = tmp.join("t");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .unwrap();
    file.write_all(value).unwrap();
    drop(file);
    fs::rename(&temp, raw_path(root, &id)).unwrap();
    id
}

/// The raw filesystem peer's read: open, fstat, one read, close.
fn raw_get(root: &Path, id: &[u8; 32], buf: &mut Vec<u8>) {
    let file = File::open(raw_path(root, id)).unwrap();
    let len = file.metadata().unwrap().len();
    buf.clear();
    buf.reserve(len as usize);
    file.take(len).read_to_end(buf).unwrap();
}

/// Minor page faults of this process so far (`/proc/self/stat`).
fn minor_faults() -> u64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.split(' ').nth(7)?.parse().ok())
        .unwrap_or(0)
}

/// Nanoseconds this thread has waited for a CPU so far (Linux schedstat).
fn waited_ns() -> u64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

const WAYS: [&str; 6] = [
    "raw",
    "raw+hash",
    "get_object before",
    "get_object",
    "get_object_into",
    "packed get_object_into",
];

/// `get_object`'s read path before it read the rest of a file with one
/// `read` (commit `1779b4a`): the first 8 KiB, then std's bounded
/// `read_to_end` for the rest, which reads 8 KiB, 16 KiB, 32 KiB, …
fn get_object_before(store: &Store, id: &ObjectId) -> Vec<u8> {
    let mut file = File::open(store.object_path(id)).unwrap();
    let len = file.metadata().unwrap().len();
    let mut bytes = Vec::with_capacity(len as usize);
    (&mut file)
        .take(len.min(object::FIRST_READ))
        .read_to_end(&mut bytes)
        .unwrap();
    let header = Header::decode(&bytes).unwrap();
    let start = header.payload_offset() as usize;
    let links = object::decode_links(&bytes[HEADER_LEN..start]);
    bytes.drain(..start);
    let rest = header.payload_len - bytes.len() as u64;
    (&mut file).take(rest).read_to_end(&mut bytes).unwrap();
    let bytes = Arc::new(bytes);
    let digest = object::payload_hash(&bytes, 0);
    let actual = object::object_id(header.kind, &links, header.payload_len, &digest);
    assert_eq!(actual, *id, "the old read path checks the id");
    Arc::try_unwrap(bytes).unwrap_or_else(|shared| shared.to_vec())
}

#[test]
#[ignore = "measurement: run by hand"]
fn verified_get_next_to_the_raw_filesystem() {
    let n: usize = common::env_number("RASK_COST_N", 20_000);
    let dir = common::cost_dir();
    let values = values(n);
    let total: usize = values.iter().map(Vec::len).sum();
    let store = Store::create(
        dir.path().join("rask"),
        StoreOptions::with_durability(Durability::None).loose(),
    )
    .unwrap();
    let packed = Store::create(
        dir.path().join("packed"),
        StoreOptions::with_durability(Durability::None),
    )
    .unwrap();
    let (raw, tmp) = (dir.path().join("raw"), dir.path().join("tmp"));
    fs::create_dir_all(&tmp).unwrap();
    for byte in 0..=255u8 {
        fs::create_dir_all(raw.join(hex::encode([byte]))).unwrap();
    }
    let mut rask_ids = Vec::with_capacity(n);
    let mut raw_ids = Vec::with_capacity(n);
    for value in &values {
        rask_ids.push(store.put_object(Kind::Instance, &[], value).unwrap());
        packed.put_object(Kind::Instance, &[], value).unwrap();
        raw_ids.push(raw_put(&raw, &tmp, value));
    }
    println!(
        "{n} values, {} MiB, mean {} B",
        total >> 20,
        total / n.max(1)
    );

    let mut order: Vec<usize> = (0..n).collect();
    let mut shuffler = common::Xorshift::new(0x2545_f491_4f6c_dd1d);
    let mut buf = Vec::new();
    let mut object_buf = ObjectBuf::new();
    for round in 1..=3 {
        shuffler.shuffle(&mut order);
        let mut took = [Duration::ZERO; WAYS.len()];
        let mut faults = [0u64; WAYS.len()];
        let (waited, load) = (waited_ns(), fs::read_to_string("/proc/loadavg").unwrap());
        let began = Instant::now();
        for (block, chunk) in order.chunks(250).enumerate() {
            for k in 0..WAYS.len() {
                let way = (block + k) % WAYS.len();
                let faulted = minor_faults();
                let start = Instant::now();
                for &i in chunk {
                    let same = match way {
                        0 => {
                            raw_get(&raw, &raw_ids[i], &mut buf);
                            buf == values[i]
                        }
                        1 => {
                            raw_get(&raw, &raw_ids[i], &mut buf);
                            std::hint::black_box(blake3::hash(&buf));
                            buf == values[i]
                        }
                        2 => get_object_before(&store, &rask_ids[i]) == values[i],
                        3 => store.get_object(&rask_ids[i]).unwrap().payload() == values[i],
                        5 => {
                            let object = packed
                                .get_object_into(&rask_ids[i], &mut object_buf)
                                .unwrap();
                            object.payload() == values[i]
                        }
                        _ => {
                            let object = store
                                .get_object_into(&rask_ids[i], &mut object_buf)
                                .unwrap();
                            object.payload() == values[i]
                        }
                    };
                    assert!(same, "{}: value {i} reads back", WAYS[way]);
                }
                took[way] += start.elapsed();
                faults[way] += minor_faults() - faulted;
            }
        }
        let waited = (waited_ns() - waited) as f64 / began.elapsed().as_nanos() as f64;
        let line: Vec<String> = WAYS
            .iter()
            .zip(took)
            .zip(faults)
            .map(|((name, t), f)| {
                format!(
                    "{name} {:.2} µs {:.3}× ({:.2} faults)",
                    t.as_secs_f64() * 1e6 / n as f64,
                    took[0].as_secs_f64() / t.as_secs_f64(),
                    f as f64 / n as f64
                )
            })
            .collect();
        println!(
            "round {round}: {}; load {}; waited for a CPU {:.0}%",
            line.join(", "),
            load.trim(),
            waited * 100.0
        );
    }
}
