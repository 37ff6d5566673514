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
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::segment::WARM_BATCH;
use super::{Index, Lookup, MissCause, Resolved, State, absent, damaged, read_parts};
use super::{resolve_encoded, warm_hashes};
use crate::error::{Error, Result};
use crate::helpers;
use crate::id::ObjectId;
use crate::key::{Key, KeyEncoder, KeyHash};
use crate::name::Namespace;
use crate::store::{Store, workers};

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

    /// [`Index::get_into`] of part `part` for the keys `0..count`, which
    /// `write(i, encoder)` writes the components of (in `namespace`, as for
    /// [`Index::find_missing_with`]), every object read and verified on
    /// every core ([`Store::get_many`]): `each` is called once per key, in
    /// no particular order, always on the calling thread, with what
    /// `get_into` would have returned for it.
    ///
    /// The keys are written, hashed and looked up on every core (from
    /// [`PARALLEL_KEYS`] keys on) and none is allocated, so `write` is called
    /// from several threads at once: once per key, again for a key absent
    /// when other processes appended meanwhile, and again on the calling
    /// thread to name a key in a miss's detail. As for `find_missing_with`,
    /// `write` must not put to, remove from or compact this index.
    ///
    /// ```
    /// use rask_store::{Index, Kind, Key, Lookup, Namespace, Store, StoreOptions};
    /// # fn main() -> Result<(), rask_store::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::create(dir.path().join(".rask-cache"), StoreOptions::default())?;
    /// let index = Index::open(&store)?;
    /// let ns = Namespace::new("rask-0.4")?;
    /// let mut key = Key::build(&ns);
    /// key.str("std").str("lower");
    /// index.put(&store, &key.finish()?, Kind::Instance, &[("ast", b"(lower ...)")])?;
    ///
    /// let functions = ["parse", "lower"];
    /// let mut found = vec![None; functions.len()];
    /// index.get_many_with(
    ///     &store,
    ///     &ns,
    ///     functions.len(),
    ///     |i, key| {
    ///         key.str("std").str(functions[i]);
    ///         Ok::<(), rask_store::Error>(())
    ///     },
    ///     "ast",
    ///     |i, answer| {
    ///         if let Lookup::Hit(bytes) = answer? {
    ///             found[i] = Some(bytes.to_vec());
    ///         }
    ///         Ok(())
    ///     },
    /// )?;
    /// assert_eq!(found, [None, Some(b"(lower ...)".to_vec())]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The first error `write` or `each` returns (no more keys are written
    /// and no more callbacks made after it); [`Error::InvalidKey`] for a key
    /// [`Key::build`]'s `finish` would refuse; [`Error::Io`] reading what
    /// other processes appended.
    pub fn get_many_with<E, W, F>(
        &self,
        store: &Store,
        namespace: &Namespace,
        count: usize,
        write: W,
        part: &str,
        mut each: F,
    ) -> std::result::Result<(), E>
    where
        E: From<Error> + Send,
        W: Fn(usize, &mut KeyEncoder<'_>) -> std::result::Result<(), E> + Sync,
        F: FnMut(usize, Result<Lookup<&[u8]>>) -> std::result::Result<(), E>,
    {
        let mut found = {
            let view = self.read_state();
            in_chunks(count, Scratch::default, |scratch, range, out| {
                scratch.locate(&view, namespace, &write, part, range, out)
            })?
        };
        if found.iter().any(|(_, f)| matches!(f, Found::Absent)) && self.catch_up()? {
            let view = self.read_state();
            for (i, f) in &mut found {
                if matches!(f, Found::Absent) {
                    let mut key = KeyEncoder::new(namespace);
                    write(*i, &mut key)?;
                    let (encoding, hash) = key.encoded()?;
                    *f = locate(&view, hash, encoding, part);
                }
            }
        }
        // Only a miss names its key, so only a miss builds one.
        let key_of = |i: usize| -> std::result::Result<Key, E> {
            let mut key = Key::build(namespace);
            write(i, &mut key)?;
            Ok(key.finish()?)
        };
        let mut ids = Vec::with_capacity(found.len());
        let mut hits = Vec::with_capacity(found.len());
        for (i, f) in found {
            let miss = match f {
                Found::Part(id, size) => {
                    ids.push(id);
                    hits.push((i, size));
                    continue;
                }
                Found::NoPart => Lookup::miss(
                    MissCause::Absent,
                    format!("the entry for {} has no part named {part:?}", key_of(i)?),
                ),
                Found::Absent => absent(&key_of(i)?),
                Found::Removed => Lookup::miss(MissCause::Absent, "the entry was removed"),
                Found::Damaged(path, reason) => damaged(&path, &reason),
            };
            each(i, Ok(miss))?;
        }
        read_parts(store, &ids, &hits, part, key_of, each)
    }
}

/// Where the part a key names is, as [`Index::get_many_with`] finds it
/// before it reads.
enum Found {
    Part(ObjectId, u64),
    /// The entry has no part of that name.
    NoPart,
    Absent,
    Removed,
    Damaged(PathBuf, String),
}

/// Looks up the key of `hash` and `encoding` and the part `part` of its
/// entry.
fn locate(state: &State, hash: KeyHash, encoding: &[u8], part: &str) -> Found {
    match resolve_encoded(state, hash, encoding) {
        Resolved::Hit(entry) => entry
            .part(part)
            .map_or(Found::NoPart, |p| Found::Part(p.id, p.size)),
        Resolved::Absent => Found::Absent,
        Resolved::Removed => Found::Removed,
        Resolved::Damaged(path, reason) => Found::Damaged(path, reason),
    }
}

/// The positions, in increasing order, that `chunk` finds missing among
/// `0..count`, as [`in_chunks`] runs it.
pub(super) fn missing_in_chunks<S, E>(
    count: usize,
    scratch: impl Fn() -> S + Sync,
    chunk: impl Fn(&mut S, Range<usize>, &mut Vec<usize>) -> std::result::Result<(), E> + Sync,
) -> std::result::Result<Vec<usize>, E>
where
    E: Send,
{
    let mut missing = in_chunks(count, scratch, chunk)?;
    missing.sort_unstable();
    Ok(missing)
}

/// What `chunk` appends for the positions `0..count`, in no particular
/// order, asked [`WARM_BATCH`] at a time on the calling thread and, from
/// [`PARALLEL_KEYS`] positions on, on helper threads too:
/// `chunk(scratch, range, out)` appends what it finds for `range` to `out`,
/// with a `scratch` made once per thread. An error stops every thread; the
/// first one a thread stopped on is returned.
fn in_chunks<S, T, E>(
    count: usize,
    scratch: impl Fn() -> S + Sync,
    chunk: impl Fn(&mut S, Range<usize>, &mut Vec<T>) -> std::result::Result<(), E> + Sync,
) -> std::result::Result<Vec<T>, E>
where
    T: Send,
    E: Send,
{
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let run = || {
        let mut scratch = scratch();
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let first = next.fetch_add(1, Ordering::Relaxed) * WARM_BATCH;
            if first >= count {
                break;
            }
            let range = first..(first + WARM_BATCH).min(count);
            if let Err(e) = chunk(&mut scratch, range, &mut out) {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(out)
    };
    let helpers = if count >= PARALLEL_KEYS {
        workers().min(count.div_ceil(WARM_BATCH).saturating_sub(1))
    } else {
        0
    };
    if helpers == 0 {
        return run();
    }
    let results = Mutex::new(Vec::with_capacity(helpers + 1));
    helpers::share(helpers, &|| {
        let found = run();
        results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(found);
    });
    let mut all = Vec::with_capacity(count);
    for found in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
        all.extend(found?);
    }
    Ok(all)
}

/// One thread's buffers for [`Index::find_missing_with`]'s chunks.
#[derive(Default)]
struct Scratch {
    encodings: Vec<u8>,
    ends: Vec<usize>,
    hashes: Vec<KeyHash>,
}

impl Scratch {
    /// Writes and hashes the keys of `range` and reads ahead in the
    /// index's tables for them.
    fn write<E, F>(
        &mut self,
        state: &State,
        namespace: &Namespace,
        write: &F,
        range: Range<usize>,
    ) -> std::result::Result<(), E>
    where
        E: From<Error>,
        F: Fn(usize, &mut KeyEncoder<'_>) -> std::result::Result<(), E>,
    {
        self.encodings.clear();
        self.ends.clear();
        self.hashes.clear();
        for i in range {
            let mut key = KeyEncoder::new(namespace);
            write(i, &mut key)?;
            let (encoding, hash) = key.encoded()?;
            self.encodings.extend_from_slice(encoding);
            self.ends.push(self.encodings.len());
            self.hashes.push(hash);
        }
        warm_hashes(state, &self.hashes);
        Ok(())
    }

    /// The keys written last, with their positions from `range.start`.
    fn written(&self, first: usize) -> impl Iterator<Item = (usize, KeyHash, &[u8])> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        (first..)
            .zip(starts.zip(&self.ends))
            .zip(&self.hashes)
            .map(|((i, (start, &end)), &hash)| (i, hash, &self.encodings[start..end]))
    }

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
        let first = range.start;
        self.write(state, namespace, write, range)?;
        for (i, hash, encoding) in self.written(first) {
            if !matches!(resolve_encoded(state, hash, encoding), Resolved::Hit(_)) {
                missing.push(i);
            }
        }
        Ok(())
    }

    /// Writes, hashes and looks up the keys of `range`; appends where each
    /// one's part `part` is to `out`.
    fn locate<E, F>(
        &mut self,
        state: &State,
        namespace: &Namespace,
        write: &F,
        part: &str,
        range: Range<usize>,
        out: &mut Vec<(usize, Found)>,
    ) -> std::result::Result<(), E>
    where
        E: From<Error>,
        F: Fn(usize, &mut KeyEncoder<'_>) -> std::result::Result<(), E>,
    {
        let first = range.start;
        self.write(state, namespace, write, range)?;
        out.extend(
            self.written(first)
                .map(|(i, hash, encoding)| (i, locate(state, hash, encoding, part))),
        );
        Ok(())
    }
}
