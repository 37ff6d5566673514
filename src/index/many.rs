//! Existence checks of many keys on every core:
//! [`Index::find_missing_with`].
//!
//! Asking which of a package's thousands of keys the cache lacks is mostly
//! building the keys: the canonical encoding and its keyed BLAKE3 (three
//! compressions for a 153-byte key, ~0.27 µs on the 2-core benchmark
//! machine) cost more than the lookup (~0.3 µs with its cache misses), and
//! a [`Key`](crate::Key) made for each adds two allocations. So the caller
//! hands the index a function that writes key `i`'s components, and the
//! calling thread and up to [`MAX_WORKERS`](crate::store::MAX_WORKERS)
//! of the crate's long-lived helper threads (`helpers::share`: a batch
//! of a thousand keys takes ~0.5 ms, and a scoped thread per call would
//! cost a sixth of that) each take the next [`WARM_BATCH`] keys from one
//! atomic counter: they write each key into the thread's scratch buffer, hash it,
//! read ahead in the tables for the whole chunk (as
//! [`Index::find_missing`] does) and look the keys up, all under one read
//! of the index's view. No key is allocated.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::segment::WARM_BATCH;
use super::{Index, Resolved, State, resolve_encoded, warm_hashes};
use crate::error::Error;
use crate::helpers;
use crate::key::{KeyEncoder, KeyHash};
use crate::name::Namespace;
use crate::store::workers;

/// Keys from which [`Index::find_missing_with`] shares the work with
/// helper threads: below it the call runs on the calling thread alone.
/// Measured on the 2-core benchmark machine with W1's keys (a key costs
/// ~0.8 µs to write, hash and look up on one thread): 128 keys take
/// 0.47 µs a key shared against 0.80 alone, 64 keys gain nothing (the
/// caller waits for the helper's last chunk of 32).
pub const PARALLEL_KEYS: usize = 128;

impl Index {
    /// The positions, in increasing order, of the keys `0..count` that have
    /// no usable entry (absent, removed or damaged), as
    /// [`Index::find_missing`] answers, for keys that `write(i, encoder)`
    /// writes the components of (as into [`Key::build`](crate::Key::build)'s
    /// encoder, in `namespace`). Part objects are not checked.
    ///
    /// The keys are written, hashed and looked up on every core (from
    /// [`PARALLEL_KEYS`] keys on), and none is allocated, so `write` is
    /// called from several threads at once, once per key (twice for a key
    /// found missing when other processes appended meanwhile). The index's
    /// view is held for reading while `write` runs, so `write` must not put
    /// to, remove from or compact this index (that would wait for itself).
    ///
    /// ```
    /// use rask_store::{Index, Kind, Key, Namespace, Store, StoreOptions};
    /// # fn main() -> Result<(), rask_store::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::create(dir.path().join(".rask-cache"), StoreOptions::default())?;
    /// let index = Index::open(&store)?;
    /// let ns = Namespace::new("rask-0.4")?;
    /// let functions = ["parse", "lower", "emit"];
    /// let mut key = Key::build(&ns);
    /// key.str("std").str("lower");
    /// index.put(&store, &key.finish()?, Kind::Instance, &[("ast", b"...")])?;
    ///
    /// let missing = index.find_missing_with(&ns, functions.len(), |i, key| {
    ///     key.str("std").str(functions[i]);
    ///     Ok::<(), rask_store::Error>(())
    /// })?;
    /// assert_eq!(missing, [0, 2]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The first error `write` returns (no more keys are written after it);
    /// [`Error::InvalidKey`] for a key [`Key::build`](crate::Key::build)'s
    /// `finish` would refuse; [`Error::Io`] reading what other processes
    /// appended.
    pub fn find_missing_with<E, F>(
        &self,
        namespace: &Namespace,
        count: usize,
        write: F,
    ) -> std::result::Result<Vec<usize>, E>
    where
        E: From<Error> + Send,
        F: Fn(usize, &mut KeyEncoder<'_>) -> std::result::Result<(), E> + Sync,
    {
        let chunks = count.div_ceil(WARM_BATCH);
        let workers = if count >= PARALLEL_KEYS {
            workers().min(chunks.saturating_sub(1))
        } else {
            0
        };
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let mut missing = {
            let view = self.read_state();
            let chunked = Chunked {
                state: &view,
                namespace,
                count,
                next: &next,
                stop: &stop,
                write: &write,
            };
            if workers == 0 {
                chunked.run()?
            } else {
                let results = Mutex::new(Vec::with_capacity(workers + 1));
                helpers::share(workers, &|| {
                    let found = chunked.run();
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(found);
                });
                let mut all = Vec::new();
                for found in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
                    all.extend(found?);
                }
                all
            }
        };
        missing.sort_unstable();
        if !missing.is_empty() && self.catch_up()? {
            let view = self.read_state();
            let mut still = Vec::with_capacity(missing.len());
            for i in missing {
                let mut key = KeyEncoder::new(namespace);
                write(i, &mut key)?;
                let (encoding, hash) = key.encoded()?;
                if !matches!(resolve_encoded(&view, hash, encoding), Resolved::Hit(_)) {
                    still.push(i);
                }
            }
            missing = still;
        }
        Ok(missing)
    }
}

/// What every thread of one [`Index::find_missing_with`] call shares.
struct Chunked<'a, F> {
    state: &'a State,
    namespace: &'a Namespace,
    count: usize,
    next: &'a AtomicUsize,
    stop: &'a AtomicBool,
    write: &'a F,
}

impl<F> Chunked<'_, F> {
    /// Takes chunks of [`WARM_BATCH`] keys until none are left (or another
    /// thread failed); returns the positions of the missing keys it found.
    fn run<E>(&self) -> std::result::Result<Vec<usize>, E>
    where
        E: From<Error>,
        F: Fn(usize, &mut KeyEncoder<'_>) -> std::result::Result<(), E>,
    {
        let mut missing = Vec::new();
        let mut encodings: Vec<u8> = Vec::new();
        let mut ends: Vec<usize> = Vec::with_capacity(WARM_BATCH);
        let mut hashes: Vec<KeyHash> = Vec::with_capacity(WARM_BATCH);
        while !self.stop.load(Ordering::Relaxed) {
            let first = self.next.fetch_add(1, Ordering::Relaxed) * WARM_BATCH;
            if first >= self.count {
                break;
            }
            let last = (first + WARM_BATCH).min(self.count);
            encodings.clear();
            ends.clear();
            hashes.clear();
            for i in first..last {
                let mut key = KeyEncoder::new(self.namespace);
                let written = (self.write)(i, &mut key).and_then(|()| {
                    let (encoding, hash) = key.encoded()?;
                    encodings.extend_from_slice(encoding);
                    ends.push(encodings.len());
                    hashes.push(hash);
                    Ok(())
                });
                if let Err(e) = written {
                    self.stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
            warm_hashes(self.state, &hashes);
            let mut start = 0;
            for (j, (&end, &hash)) in ends.iter().zip(&hashes).enumerate() {
                let encoding = &encodings[start..end];
                if !matches!(
                    resolve_encoded(self.state, hash, encoding),
                    Resolved::Hit(_)
                ) {
                    missing.push(first + j);
                }
                start = end;
            }
        }
        Ok(missing)
    }
}
