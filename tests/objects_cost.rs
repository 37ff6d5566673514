//! What an object put and get cost next to the raw filesystem, measured in
//! one process with the two interleaved (a measurement, not a test):
//!
//! ```text
//! cargo test --release --test objects_cost -- --ignored --nocapture
//! RASK_COST_N=20000 RASK_COST_DIR=/some/dir cargo test --release --test objects_cost -- --ignored --nocapture
//! ```
//!
//! The raw side does what `bench/`'s raw filesystem peer does: file named by
//! BLAKE3 of the value, temp file + rename into a 2-hex fanout, no header,
//! no existence check, no re-hash on read, one reused read buffer.
//! Interleaving blocks of 250 operations (alternating which side goes
//! first) gives both sides the same filesystem state and the same machine
//! load, which the benchmark's one-peer-after-the-other order cannot: on
//! ext4 without a journal, creating a file right after many deletions scans
//! past every recently freed inode (`recently_deleted` in the kernel), and
//! that cost lands on whichever store runs next.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rask_store::{Durability, Kind, ObjectId, Store, StoreOptions};

/// Value sizes drawn like W1: 60% 256 B–4 KiB, 30% 4–32 KiB, 10% 32–256 KiB.
fn values(n: usize) -> Vec<Vec<u8>> {
    let mut rng = common::Xorshift::new(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.next_u64();
    (0..n)
        .map(|i| {
            let class = next() % 10;
            let (lo, hi): (u64, u64) = match class {
                0..=5 => (256, 4 << 10),
                6..=8 => (4 << 10, 32 << 10),
                _ => (32 << 10, 256 << 10),
            };
            let len = (lo + next() % (hi - lo)) as usize;
            let mut value: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            value[..8].copy_from_slice(&(i as u64).to_le_bytes());
            value
        })
        .collect()
}

struct RawFs {
    objects: PathBuf,
    tmp: PathBuf,
    counter: u64,
}

impl RawFs {
    fn create(root: &Path) -> RawFs {
        let raw = RawFs {
            objects: root.join("objects"),
            tmp: root.join("tmp"),
            counter: 0,
        };
        fs::create_dir_all(&raw.tmp).unwrap();
        for byte in 0..=255u8 {
            fs::create_dir_all(raw.objects.join(hex::encode([byte]))).unwrap();
        }
        raw
    }

    fn path_of(&self, id: &[u8; 32]) -> PathBuf {
        let hex = hex::encode(id);
        let mut path = self.objects.join(&hex[..2]);
        path.push(&hex[2..]);
        path
    }

    fn put(&mut self, value: &[u8]) -> [u8; 32] {
        let id = *blake3::hash(value).as_bytes();
        self.counter += 1;
        let temp = self.tmp.join(format!("t{}", self.counter));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .unwrap();
        file.write_all(value).unwrap();
        drop(file);
        fs::rename(&temp, self.path_of(&id)).unwrap();
        id
    }

    fn get(&self, id: &[u8; 32], buf: &mut Vec<u8>) {
        let file = File::open(self.path_of(id)).unwrap();
        let len = file.metadata().unwrap().len();
        buf.clear();
        buf.reserve(len as usize);
        file.take(len).read_to_end(buf).unwrap();
    }
}

fn per_op(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1e6 / n as f64
}

#[test]
#[ignore = "measurement: run by hand"]
fn put_and_get_next_to_the_raw_filesystem() {
    let n: usize = common::env_number("RASK_COST_N", 20_000);
    let dir = common::cost_dir();
    let values = values(n);
    let store = Store::create(
        dir.path().join("rask"),
        StoreOptions::with_durability(Durability::None),
    )
    .unwrap();
    let mut raw = RawFs::create(&dir.path().join("raw"));
    const BLOCK: usize = 250;

    let mut rask_ids = vec![ObjectId::from_bytes([0; 32]); n];
    let mut raw_ids = vec![[0u8; 32]; n];
    let (mut rask_put, mut raw_put) = (Duration::ZERO, Duration::ZERO);
    for (block, start) in (0..n).step_by(BLOCK).enumerate() {
        let range = start..(start + BLOCK).min(n);
        for side in [block % 2, 1 - block % 2] {
            let began = Instant::now();
            for i in range.clone() {
                if side == 0 {
                    rask_ids[i] = store.put_object(Kind::Instance, &[], &values[i]).unwrap();
                } else {
                    raw_ids[i] = raw.put(&values[i]);
                }
            }
            *[&mut rask_put, &mut raw_put][side] += began.elapsed();
        }
    }
    println!(
        "put  rask-store {:7.2} us  raw fs {:7.2} us  rask-store / raw fs throughput {:.2}x",
        per_op(rask_put, n),
        per_op(raw_put, n),
        raw_put.as_secs_f64() / rask_put.as_secs_f64()
    );

    let mut order: Vec<usize> = (0..n).collect();
    common::Xorshift::new(0x2545_f491_4f6c_dd1d).shuffle(&mut order);
    let mut buf = Vec::new();
    for round in 1..=3 {
        let (mut rask_get, mut raw_get) = (Duration::ZERO, Duration::ZERO);
        for (block, chunk) in order.chunks(BLOCK).enumerate() {
            for side in [block % 2, 1 - block % 2] {
                let began = Instant::now();
                for &i in chunk {
                    if side == 0 {
                        let object = store.get_object(&rask_ids[i]).unwrap();
                        assert!(object.payload() == values[i], "value {i} reads back");
                    } else {
                        raw.get(&raw_ids[i], &mut buf);
                        assert!(buf == values[i], "raw value {i} reads back");
                    }
                }
                *[&mut rask_get, &mut raw_get][side] += began.elapsed();
            }
        }
        println!(
            "get{round} rask-store {:7.2} us  raw fs {:7.2} us  rask-store / raw fs throughput {:.2}x",
            per_op(rask_get, n),
            per_op(raw_get, n),
            raw_get.as_secs_f64() / rask_get.as_secs_f64()
        );
    }
}
