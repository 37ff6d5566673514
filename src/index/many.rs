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

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::segment::WARM_BATCH;
use super::{Index, Resolved, State, resolve_encoded, warm_hashes};
use crate::error::Error;
use crate::helpers;
use crate::key::{KeyEncoder, KeyHash};
use crate::name::Namespace;
use crate::store::workers;

/// Keys from which [`Index::find_missing_with`] and
/// [`Index::find_missing`] share the work with helper threads: below it
/// the call runs on the calling thread alone.
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
        let mut missing = {
            let view = self.read_state();
            missing_in_chunks(count, Scratch::default, |scratch, range, missing| {
                scratch.find(&view, namespace, &write, range, missing)
            })?
        };
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

/// The positions, in increasing order, that `chunk` finds missing among
/// `0..count`, asked [`WARM_BATCH`] at a time on the calling thread and,
/// from [`PARALLEL_KEYS`] positions on, on helper threads too:
/// `chunk(scratch, range, missing)` appends the missing positions of
/// `range` to `missing`, with a `scratch` made once per thread. An error
/// stops every thread; the first one a thread stopped on is returned.
pub(super) fn missing_in_chunks<S, E>(
    count: usize,
    scratch: impl Fn() -> S + Sync,
    chunk: impl Fn(&mut S, Range<usize>, &mut Vec<usize>) -> std::result::Result<(), E> + Sync,
) -> std::result::Result<Vec<usize>, E>
where
    E: Send,
{
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let run = || {
        let mut scratch = scratch();
        let mut missing = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let first = next.fetch_add(1, Ordering::Relaxed) * WARM_BATCH;
            if first >= count {
                break;
            }
            let range = first..(first + WARM_BATCH).min(count);
            if let Err(e) = chunk(&mut scratch, range, &mut missing) {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(missing)
    };
    let helpers = if count >= PARALLEL_KEYS {
        workers().min(count.div_ceil(WARM_BATCH).saturating_sub(1))
    } else {
        0
    };
    let mut missing = if helpers == 0 {
        run()?
    } else {
        let results = Mutex::new(Vec::with_capacity(helpers + 1));
        helpers::share(helpers, &|| {
            let found = run();
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
    };
    missing.sort_unstable();
    Ok(missing)
}

/// One thread's buffers for [`Index::find_missing_with`]'s chunks.
#[derive(Default)]
struct Scratch {
    encodings: Vec<u8>,
    ends: Vec<usize>,
    hashes: Vec<KeyHash>,
}

impl Scratch {
    /// Writes, hashes and looks up the keys of `range`; appends the
    /// missing ones' positions to `missing`.
    fn find<E, F>(
        &mut self,
        state: &State,
        namespace: &Namespace,
        write: &F,
        range: Range<usize>,
        missing: &mut Vec<usize>,
    ) -> std::result::Result<(), E>
    where
        E: From<Error>,
        F: Fn(usize, &mut KeyEncoder<'_>) -> std::result::Result<(), E>,
    {
        self.encodings.clear();
        self.ends.clear();
        self.hashes.clear();
        for i in range.clone() {
            let mut key = KeyEncoder::new(namespace);
            write(i, &mut key)?;
            let (encoding, hash) = key.encoded()?;
            self.encodings.extend_from_slice(encoding);
            self.ends.push(self.encodings.len());
            self.hashes.push(hash);
        }
        warm_hashes(state, &self.hashes);
        let mut start = 0;
        for (i, (&end, &hash)) in range.zip(self.ends.iter().zip(&self.hashes)) {
            let encoding = &self.encodings[start..end];
            if !matches!(resolve_encoded(state, hash, encoding), Resolved::Hit(_)) {
                missing.push(i);
            }
            start = end;
        }
        Ok(())
    }
}
