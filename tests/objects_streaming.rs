//! Large payloads stream: putting or getting one does not hold it in memory.
//!
//! This file holds a single test so that the process's peak memory is its own.

use std::io::{self, Read, Write};

use rask_store::{Kind, Store, StoreOptions};

const SIZE: u64 = 384 << 20;

/// Generates `left` bytes without holding them.
struct Generator {
    left: u64,
    state: u8,
}

impl Read for Generator {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        for b in &mut buf[..n] {
            self.state = self.state.wrapping_mul(31).wrapping_add(7);
            *b = self.state;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Counts and hashes what is written, without holding it.
struct Sink {
    len: u64,
    hasher: blake3::Hasher,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn a_payload_larger_than_memory_budget_streams_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), StoreOptions::default()).unwrap();
    let before = peak_rss_bytes();

    let id = store
        .put_object_from_reader(
            Kind::Blob,
            &[],
            Generator {
                left: SIZE,
                state: 1,
            },
        )
        .unwrap();
    let mut sink = Sink {
        len: 0,
        hasher: blake3::Hasher::new(),
    };
    let info = store.write_payload(&id, &mut sink).unwrap();

    let mut expected = blake3::Hasher::new();
    io::copy(
        &mut Generator {
            left: SIZE,
            state: 1,
        },
        &mut expected,
    )
    .unwrap();
    assert_eq!(sink.len, SIZE);
    assert_eq!(info.payload_len, SIZE);
    assert_eq!(
        sink.hasher.finalize(),
        expected.finalize(),
        "payload differs"
    );

    let grown = peak_rss_bytes().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "peak memory grew by {} MiB for a {} MiB payload",
        grown >> 20,
        SIZE >> 20
    );
}
