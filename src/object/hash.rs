//! BLAKE3 of a payload on two cores: the hash every read checks.
//!
//! A payload of at least [`PARALLEL_MIN`] bytes is cut into pieces of
//! [`PIECE_LEN`] bytes (the last one may be shorter). Each piece is a
//! subtree of BLAKE3's own tree — [`PIECE_LEN`] is a power of two times the
//! 1 KiB chunk, and every piece starts at a multiple of it — so its chaining
//! value can be computed on its own (`blake3::hazmat`), and merging the
//! chaining values in order, the way `blake3::Hasher` merges its chunk
//! stack, gives exactly `blake3::hash` of the whole payload. The result is
//! the same digest; only who computes it changes.
//!
//! One long-lived worker thread (started on first use, then parked on a
//! condition variable) shares the pieces with the caller: both take the
//! next unclaimed piece from an atomic counter until none are left. The
//! caller never waits for the worker: a job the worker has not started is
//! taken back, and a piece the worker claimed but has not finished (it may
//! have been descheduled on a busy machine) is hashed by the caller as well.
//! So two threads cost little more than one when the other core is busy.
//! When the worker is still busy with an earlier payload, or cannot be
//! started, the caller hashes alone. On a machine whose other core is busy,
//! sharing is slower than hashing alone, so the process keeps timing both
//! ways and uses the faster one (see [`Pace`]).
//!
//! No `unsafe`: the payload is shared with the worker through an `Arc`,
//! and the worker only reads it.

use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};

/// Payloads at least this long may be hashed on two threads.
///
/// Below it, offering work to the worker (a lock, a futex wake, a
/// reschedule on the other core: several microseconds on the 2-core
/// benchmark machine) costs as much as the hash itself. Above it, `Pace`
/// decides from measured times whether sharing pays (docs/BENCHMARKS.md).
pub const PARALLEL_MIN: usize = 64 << 10;

/// The bytes of one piece: 16 chunks, the width at which BLAKE3's widest
/// SIMD implementation hashes chunks in parallel.
pub const PIECE_LEN: usize = 16 << 10;

/// BLAKE3 of `bytes[start..]`, computed on two threads when it is long.
///
/// As [`payload_range_hash`] of `start..bytes.len()`.
///
/// The worker may still hold a reference to `bytes` for a moment after
/// this returns (when it was scheduled late and is finishing a piece the
/// caller has also hashed); nothing is written through it.
pub fn payload_hash(bytes: &Arc<Vec<u8>>, start: usize) -> blake3::Hash {
    payload_range_hash(bytes, start..bytes.len())
}

/// BLAKE3 of `bytes[range]`, computed on two threads when it is long; an
/// empty payload when `range` is out of bounds.
///
/// The worker may still hold a reference to `bytes` for a moment after
/// this returns; nothing is written through it.
pub fn payload_range_hash(bytes: &Arc<Vec<u8>>, range: Range<usize>) -> blake3::Hash {
    let payload = bytes.get(range.clone()).unwrap_or_default();
    if payload.len() < PARALLEL_MIN || ALONE.get() {
        return blake3::hash(payload);
    }
    let Some(worker) = worker() else {
        return blake3::hash(payload);
    };
    let mode = PACE.choose();
    let started = Instant::now();
    let hash = match mode {
        Way::Alone => blake3::hash(payload),
        Way::Shared => match shared_hash(worker, bytes, range) {
            Some(hash) => hash,
            // The worker is still busy with an earlier payload: not a sample.
            None => return blake3::hash(payload),
        },
    };
    PACE.record(mode, started.elapsed(), payload.len());
    hash
}

thread_local! {
    /// Set while this thread is one of several already sharing the cores
    /// (`Store::get_many`): its payloads are hashed on it alone.
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every payload hash on this thread computed on it alone,
/// never offered to the worker: for threads that already keep the cores
/// busy between them, where the worker would only compete with them.
pub(crate) fn alone<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ALONE.set(self.0);
        }
    }
    let _restore = Restore(ALONE.replace(true));
    f()
}

/// Hashes `bytes[range]` (in bounds) with the worker's help; `None` when it
/// is busy.
fn shared_hash(worker: &Worker, bytes: &Arc<Vec<u8>>, range: Range<usize>) -> Option<blake3::Hash> {
    let pieces = range.len().div_ceil(PIECE_LEN);
    let job = Arc::new(Job {
        bytes: Arc::clone(bytes),
        range,
        next: AtomicUsize::new(0),
        cvs: (0..pieces).map(|_| OnceLock::new()).collect(),
    });
    if !worker.offer(&job) {
        return None;
    }
    job.hash_claimed_pieces();
    worker.withdraw();
    // Pieces the worker claimed and has not finished yet (it may have been
    // descheduled mid-piece) are hashed here too rather than waited for:
    // `get`, never `get_or_init`, which would block until the worker's
    // piece is done.
    let cvs = (0..pieces).map(|i| match job.cvs[i].get() {
        Some(cv) => *cv,
        None => job.piece_cv(i),
    });
    Some(merge_pieces(cvs))
}

/// How a large payload is hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// On the calling thread only.
    Alone,
    /// Shared with the worker.
    Shared,
}

/// Whether sharing pays on this machine right now, learnt from the hashes
/// themselves: a running average of the time per byte each way takes.
///
/// On an idle second core sharing nearly halves the time; on a machine
/// whose cores are busy with other work it is slower than hashing alone
/// (the woken worker competes with the caller for its core). So the faster
/// way is used, and every [`EXPLORE_EVERY`]th large hash tries the other way
/// to notice when the machine changes. The digest never depends on it.
struct Pace {
    hashes: AtomicU64,
    /// Picoseconds per byte, per [`Way`] (0: not measured yet).
    per_byte: [AtomicU64; 2],
}

/// One large hash in this many tries the way that is currently slower (one
/// in eight times as many when that way is far behind).
const EXPLORE_EVERY: u64 = 32;

static PACE: Pace = Pace {
    hashes: AtomicU64::new(0),
    per_byte: [AtomicU64::new(0), AtomicU64::new(0)],
};

impl Pace {
    fn choose(&self) -> Way {
        let n = self.hashes.fetch_add(1, Ordering::Relaxed);
        let alone = self.per_byte[Way::Alone as usize].load(Ordering::Relaxed);
        let shared = self.per_byte[Way::Shared as usize].load(Ordering::Relaxed);
        let faster = if alone == 0 || (shared != 0 && shared > alone) {
            Way::Alone
        } else {
            Way::Shared
        };
        // Far behind (half as fast again or worse): look again less often.
        let (slow, fast) = match faster {
            Way::Alone => (shared, alone),
            Way::Shared => (alone, shared),
        };
        let every = if slow.saturating_mul(2) > fast.saturating_mul(3) {
            EXPLORE_EVERY * 8
        } else {
            EXPLORE_EVERY
        };
        match (n % every == every - 1, faster) {
            (false, way) => way,
            (true, Way::Alone) => Way::Shared,
            (true, Way::Shared) => Way::Alone,
        }
    }

    fn record(&self, way: Way, took: Duration, len: usize) {
        let sample = (took.as_nanos() as u64).saturating_mul(1000) / len.max(1) as u64;
        let slot = &self.per_byte[way as usize];
        let old = slot.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample.max(1)
        } else {
            // A sample stretched by a preemption counts as at most 4× the
            // average, so one unlucky hash cannot flip the choice for long.
            let sample = sample.min(old.saturating_mul(4)).max(1);
            old - old / 8 + sample / 8
        };
        slot.store(new, Ordering::Relaxed);
    }
}

/// A payload being hashed: the next piece nobody has claimed, and the
/// chaining value of each piece once someone has computed it.
struct Job {
    bytes: Arc<Vec<u8>>,
    range: Range<usize>,
    next: AtomicUsize,
    cvs: Vec<OnceLock<ChainingValue>>,
}

impl Job {
    fn piece_cv(&self, i: usize) -> ChainingValue {
        let payload = &self.bytes[self.range.clone()];
        let offset = i * PIECE_LEN;
        let piece = &payload[offset..payload.len().min(offset + PIECE_LEN)];
        blake3::Hasher::new()
            .set_input_offset(offset as u64)
            .update(piece)
            .finalize_non_root()
    }

    /// Claims and hashes pieces until none are left unclaimed.
    fn hash_claimed_pieces(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = self.cvs.get(i) else {
                return;
            };
            // `set`, which never waits: the caller may be hashing the same
            // piece (see `shared_hash`); both get the same value.
            let _ = slot.set(self.piece_cv(i));
        }
    }
}

/// Merges the chaining values of consecutive pieces (at least two) into the
/// root hash, as `blake3::Hasher` merges its stack of subtrees.
fn merge_pieces(cvs: impl ExactSizeIterator<Item = ChainingValue>) -> blake3::Hash {
    let count = cvs.len();
    let mut stack: Vec<ChainingValue> = Vec::with_capacity(usize::BITS as usize);
    let mut last = [0u8; 32];
    for (i, cv) in cvs.enumerate() {
        if i + 1 == count {
            last = cv;
            break;
        }
        // After i + 1 complete pieces, merge every pair of equal-sized
        // subtrees: one merge per trailing zero bit of the count.
        let mut cv = cv;
        let mut total = i + 1;
        while total & 1 == 0 {
            let left = stack.pop().unwrap_or(cv);
            cv = merge_subtrees_non_root(&left, &cv, Mode::Hash);
            total >>= 1;
        }
        stack.push(cv);
    }
    let mut right = last;
    while stack.len() > 1 {
        let left = stack.pop().unwrap_or(right);
        right = merge_subtrees_non_root(&left, &right, Mode::Hash);
    }
    let left = stack.pop().unwrap_or(right);
    merge_subtrees_root(&left, &right, Mode::Hash)
}

/// What the worker is doing.
enum State {
    /// Waiting for a job.
    Idle,
    /// A job is offered and the worker has not taken it yet.
    Offered(Arc<Job>),
    /// The worker is hashing pieces of a job.
    Running,
}

struct Worker {
    state: Mutex<State>,
    offered: Condvar,
}

/// The process's hashing worker, started on first use; `None` if it could not be.
fn worker() -> Option<&'static Worker> {
    static WORKER: OnceLock<Option<&'static Worker>> = OnceLock::new();
    *WORKER.get_or_init(|| {
        let worker: &'static Worker = Box::leak(Box::new(Worker {
            state: Mutex::new(State::Idle),
            offered: Condvar::new(),
        }));
        thread::Builder::new()
            .name("rask-store-hash".into())
            .spawn(move || worker.run())
            .ok()
            .map(|_| worker)
    })
}

impl Worker {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Offers `job` to the worker; false when it is busy with another one.
    fn offer(&self, job: &Arc<Job>) -> bool {
        let mut state = self.lock();
        if !matches!(*state, State::Idle) {
            return false;
        }
        *state = State::Offered(Arc::clone(job));
        drop(state);
        self.offered.notify_one();
        true
    }

    /// Takes back a job the worker has not started; one it has started it
    /// finishes on its own (every piece is claimed by then).
    fn withdraw(&self) {
        let mut state = self.lock();
        if matches!(*state, State::Offered(_)) {
            *state = State::Idle;
        }
    }

    fn run(&self) {
        loop {
            let job = {
                let mut state = self.lock();
                loop {
                    if matches!(*state, State::Offered(_))
                        && let State::Offered(job) = std::mem::replace(&mut *state, State::Running)
                    {
                        break job;
                    }
                    state = self.offered.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            };
            job.hash_claimed_pieces();
            drop(job);
            *self.lock() = State::Idle;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// The shared way, whichever way [`Pace`] currently prefers; waits for
    /// the worker to finish an earlier job if it has to.
    fn shared_with_worker(bytes: &Arc<Vec<u8>>, range: Range<usize>) -> blake3::Hash {
        let worker = worker().expect("the worker thread starts");
        loop {
            if let Some(hash) = shared_hash(worker, bytes, range.clone()) {
                return hash;
            }
            thread::yield_now();
        }
    }

    #[test]
    fn equals_blake3_at_every_piece_boundary() {
        let mut lens = vec![0, 1, 1024, PARALLEL_MIN - 1];
        for pieces in [4, 5, 6, 7, 8, 9, 15, 16, 17, 33, 64] {
            let base = pieces * PIECE_LEN;
            lens.extend([
                base - 1024,
                base - 1,
                base,
                base + 1,
                base + 1024,
                base + 7777,
            ]);
        }
        for len in lens {
            for start in [0, 20, 84] {
                let mut bytes = vec![0xa5; start];
                bytes.extend(payload(len));
                let expected = blake3::hash(&bytes[start..]);
                let shared = Arc::new(bytes.clone());
                assert_eq!(
                    payload_hash(&shared, start),
                    expected,
                    "len {len} start {start}"
                );
                // A reused buffer: stale bytes after the payload are not hashed.
                let mut longer = bytes.clone();
                longer.extend_from_slice(&[0x5a; 3000]);
                let longer = Arc::new(longer);
                let range = start..bytes.len();
                assert_eq!(
                    payload_range_hash(&longer, range.clone()),
                    expected,
                    "len {len} start {start}, stale bytes after"
                );
                if len > PIECE_LEN {
                    assert_eq!(
                        shared_with_worker(&shared, start..bytes.len()),
                        expected,
                        "len {len}"
                    );
                    assert_eq!(
                        shared_with_worker(&longer, range),
                        expected,
                        "len {len}, stale bytes after"
                    );
                }
                assert_eq!(*shared, bytes, "the payload is unchanged");
            }
        }
    }

    #[test]
    fn equals_blake3_when_callers_race_for_the_worker() {
        let bytes = Arc::new(payload(300_000));
        let expected: Vec<_> = (0..8)
            .map(|cut| blake3::hash(&bytes[cut * 1000..]))
            .collect();
        thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for (cut, want) in expected.iter().enumerate() {
                        assert_eq!(payload_hash(&bytes, cut * 1000), *want);
                        if let Some(hash) =
                            shared_hash(worker().unwrap(), &bytes, cut * 1000..bytes.len())
                        {
                            assert_eq!(hash, *want);
                        }
                    }
                });
            }
        });
    }
}
