//! One build over the store: tier lookups and puts that count hits and
//! misses, pins for everything the build produces or reuses, one build root
//! per package, the quick path, and a single ref transaction at the end.
//!
//! # Files
//! A session writes only through the store's public API: objects (tier
//! parts, `Kind::Meta` metadata, `Kind::Root` build roots, see
//! [`crate::compiler::root`]), index entries, at most one pin file (none when nothing is built), refs
//! `refs/<namespace>/<package>` (one transaction) and statistics deltas.
//!
//! # Invariants
//! - Every object the session returns from a hit or writes is pinned before
//!   it is verified or linked, and stays pinned until [`BuildSession::publish`]
//!   has updated the refs, so gc cannot remove it mid-build. The quick path
//!   pins nothing: it returns the previous build's metadata already read,
//!   and a skipped package's ref is not rewritten.
//! - A package's root links every object its build used, hits and new
//!   alike, so a published build stays whole under gc.
//! - [`BuildSession::publish`] changes all refs it writes or none: each
//!   update expects the value the session read when it opened. It writes
//!   only refs whose root changed, so a no-op build writes no file but one
//!   statistics append.
//! - [`BuildSession::quick_check`] reads one ref (from the snapshot taken at
//!   open), one root object (its key list left undecoded) and one metadata
//!   object; it never touches the index.
//! - Each distinct key is counted once per session (hit or miss, by cause),
//!   at its first lookup; puts are counted every time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::compiler::explain::{Explanation, explain_against};
use crate::compiler::keys::{CacheKey, CompilerId, ContentHash, KeyBuilder, Tier, check_namespace};
use crate::compiler::metadata::PackageMetadata;
use crate::compiler::root::{BuildRoot, RootInputs, normalized};
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::index::{
    Entry, Index, Lookup, Miss, MissCause, NamedParts, PartBytes, PartRef, PutOutcome,
};
use crate::key::KeyHash;
use crate::lock::PinGuard;
use crate::name::{Namespace, PackageName};
use crate::object::Kind;
use crate::refs::{Expect, RefUpdate};
use crate::stats::TierCounters;
use crate::store::Store;

/// A package's previous build, found unchanged by the quick path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousBuild {
    /// Its root object (the ref's value).
    pub root_id: ObjectId,
    /// Its metadata object's id.
    pub metadata_id: ObjectId,
    /// Its metadata, already read, for downstream packages.
    pub metadata: PackageMetadata,
}

/// A package finished in this session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinishedPackage {
    /// The new root object.
    pub root_id: ObjectId,
    /// The package's metadata object.
    pub metadata_id: ObjectId,
}

/// What [`BuildSession::publish`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishReport {
    /// The namespace.
    pub namespace: Namespace,
    /// Every ref written (the packages whose root changed), with its root
    /// id, sorted by package.
    pub refs: Vec<(PackageName, ObjectId)>,
    /// Packages built (finished) in this session.
    pub built: usize,
    /// Packages skipped by the quick path (their refs left unchanged).
    pub skipped: usize,
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Built(FinishedPackage),
    Skipped(FinishedPackage),
}

#[derive(Debug, Default)]
struct PackageUse {
    /// Key encoding → (key, the objects the build used under it).
    keys: BTreeMap<Vec<u8>, (CacheKey, Vec<ObjectId>)>,
}

/// One build: see the module docs.
///
/// # Concurrency
/// Other processes may build, look up and collect at the same time; the
/// session's pins keep its objects, and publish fails with
/// [`Error::Conflict`] (changing nothing) if another build moved one of its
/// packages' refs since the session opened.
pub struct BuildSession<'s> {
    store: &'s Store,
    index: &'s Index,
    keys: KeyBuilder,
    start_refs: BTreeMap<PackageName, ObjectId>,
    pin: Option<PinGuard<'s>>,
    pinned: HashSet<ObjectId>,
    counted: HashSet<KeyHash>,
    used: BTreeMap<PackageName, PackageUse>,
    done: BTreeMap<PackageName, Outcome>,
    previous: HashMap<PackageName, Option<(ObjectId, BuildRoot)>>,
}

impl std::fmt::Debug for BuildSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildSession")
            .field("namespace", self.keys.namespace())
            .field("packages_done", &self.done.len())
            .field("pinned", &self.pinned.len())
            .finish()
    }
}

fn miss<T>(cause: MissCause, detail: String) -> Lookup<T> {
    Lookup::Miss(Miss { cause, detail })
}

fn cause_of(error: &Error) -> MissCause {
    match error {
        Error::NotFound { .. } => MissCause::Dangling,
        _ => MissCause::Corrupt,
    }
}

impl<'s> BuildSession<'s> {
    /// Opens a session for `compiler`'s namespace, reading every ref of the
    /// namespace (the values publish will expect).
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a ref file that is not an id; [`Error::Io`].
    pub fn open(store: &'s Store, index: &'s Index, compiler: &CompilerId) -> Result<Self> {
        let namespace = compiler.namespace()?;
        let start_refs = store.list_refs(&namespace)?.into_iter().collect();
        Ok(BuildSession {
            store,
            index,
            keys: KeyBuilder::new(namespace),
            start_refs,
            pin: None,
            pinned: HashSet::new(),
            counted: HashSet::new(),
            used: BTreeMap::new(),
            done: BTreeMap::new(),
            previous: HashMap::new(),
        })
    }

    /// The namespace of this session's compiler.
    pub fn namespace(&self) -> &Namespace {
        self.keys.namespace()
    }

    /// The key builder for this session's namespace.
    pub fn keys(&self) -> &KeyBuilder {
        &self.keys
    }

    /// The ref value of `package` when the session opened.
    pub fn start_ref(&self, package: &PackageName) -> Option<ObjectId> {
        self.start_refs.get(package).copied()
    }

    fn count(&self, tier: Tier, delta: TierCounters) {
        self.store
            .stats_recorder()
            .count(self.namespace().as_str(), tier.name(), delta);
    }

    fn count_lookup(&mut self, key: &CacheKey, cause: Option<MissCause>) {
        if !self.counted.insert(key.key().hash()) {
            return;
        }
        let mut delta = TierCounters::default();
        match cause {
            None => delta.hits = 1,
            Some(MissCause::Absent) => delta.absent = 1,
            Some(MissCause::Corrupt) => delta.corrupt = 1,
            Some(MissCause::Dangling) => delta.dangling = 1,
        }
        self.count(key.tier(), delta);
    }

    fn pin(&mut self, ids: &[ObjectId]) -> Result<()> {
        let fresh: Vec<ObjectId> = ids
            .iter()
            .copied()
            .filter(|id| !self.pinned.contains(id))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        match &mut self.pin {
            Some(pin) => pin.add(&fresh)?,
            None => self.pin = Some(self.store.pin(&fresh)?),
        }
        self.pinned.extend(fresh);
        Ok(())
    }

    fn record(&mut self, package: &PackageName, key: &CacheKey, ids: Vec<ObjectId>) {
        self.used
            .entry(package.clone())
            .or_default()
            .keys
            .insert(key.key().encoding().to_vec(), (key.clone(), ids));
    }

    /// Index lookup, pin, then check the parts exist (not counted).
    fn pinned_entry(&mut self, key: &CacheKey) -> Result<Lookup<Entry>> {
        check_namespace(key, self.namespace())?;
        let entry = match self.index.lookup(key.key())? {
            Lookup::Hit(entry) => entry,
            miss => return Ok(miss),
        };
        let ids: Vec<ObjectId> = entry.parts().iter().map(|p| p.id).collect();
        self.pin(&ids)?;
        for part in entry.parts() {
            if !self.store.contains_object(&part.id)? {
                return Ok(miss(
                    MissCause::Dangling,
                    format!(
                        "part {:?} of {key} names missing object {}",
                        part.name, part.id
                    ),
                ));
            }
        }
        Ok(Lookup::Hit(entry))
    }

    /// Looks `key` up for `package`'s build; on a hit the entry's part
    /// objects exist and are pinned, and the key counts as used by `package`.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a key of another namespace; [`Error::Io`].
    pub fn lookup(&mut self, package: &PackageName, key: &CacheKey) -> Result<Lookup<Entry>> {
        let found = self.pinned_entry(key)?;
        self.count_lookup(key, found.miss_cause());
        if let Lookup::Hit(entry) = &found {
            self.record(package, key, entry.parts().iter().map(|p| p.id).collect());
        }
        Ok(found)
    }

    /// The verified payload of part `part` of `key`'s entry, for `package`'s build.
    ///
    /// # Errors
    /// As [`BuildSession::lookup`]; damage is a miss.
    pub fn get(
        &mut self,
        package: &PackageName,
        key: &CacheKey,
        part: &str,
    ) -> Result<Lookup<Vec<u8>>> {
        let found = match self.pinned_entry(key)? {
            Lookup::Hit(entry) => match entry.part(part) {
                None => miss(
                    MissCause::Absent,
                    format!("the entry for {key} has no part named {part:?}"),
                ),
                Some(part_ref) => match self.read_part(key, part_ref)? {
                    Lookup::Hit(bytes) => {
                        self.record(package, key, entry.parts().iter().map(|p| p.id).collect());
                        Lookup::Hit(bytes)
                    }
                    Lookup::Miss(m) => Lookup::Miss(m),
                },
            },
            Lookup::Miss(m) => Lookup::Miss(m),
        };
        self.count_lookup(key, found.miss_cause());
        Ok(found)
    }

    /// The verified payloads of every part of `key`'s entry.
    ///
    /// # Errors
    /// As [`BuildSession::lookup`]; damage is a miss.
    pub fn get_all(
        &mut self,
        package: &PackageName,
        key: &CacheKey,
    ) -> Result<Lookup<Vec<PartBytes>>> {
        let found = match self.pinned_entry(key)? {
            Lookup::Hit(entry) => {
                let mut out = Vec::with_capacity(entry.parts().len());
                let mut failed = None;
                for part in entry.parts() {
                    match self.read_part(key, part)? {
                        Lookup::Hit(bytes) => out.push((part.clone(), bytes)),
                        Lookup::Miss(m) => {
                            failed = Some(m);
                            break;
                        }
                    }
                }
                match failed {
                    Some(m) => Lookup::Miss(m),
                    None => {
                        self.record(package, key, entry.parts().iter().map(|p| p.id).collect());
                        Lookup::Hit(out)
                    }
                }
            }
            Lookup::Miss(m) => Lookup::Miss(m),
        };
        self.count_lookup(key, found.miss_cause());
        Ok(found)
    }

    /// [`BuildSession::get`] of part `part` for every key of `keys`, the
    /// parts read and verified on every core ([`Store::get_many`]): `each`
    /// is called once per index into `keys`, in no particular order, on the
    /// calling thread, with the payload or the miss. Hits pin, record and
    /// count exactly as `get` does. The first error `each` returns stops
    /// the call and is returned.
    ///
    /// # Errors
    /// As [`BuildSession::lookup`], and what `each` returns.
    pub fn get_many(
        &mut self,
        package: &PackageName,
        keys: &[CacheKey],
        part: &str,
        mut each: impl FnMut(usize, Lookup<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        // Every key looked up and pinned first; the reads are shared out.
        let mut wanted: Vec<ObjectId> = Vec::new();
        let mut hits: Vec<(usize, PartRef, Vec<ObjectId>)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let found = match self.pinned_entry(key)? {
                Lookup::Hit(entry) => match entry.part(part) {
                    Some(part_ref) => {
                        wanted.push(part_ref.id);
                        let ids = entry.parts().iter().map(|p| p.id).collect();
                        hits.push((i, part_ref.clone(), ids));
                        continue;
                    }
                    None => miss(
                        MissCause::Absent,
                        format!("the entry for {key} has no part named {part:?}"),
                    ),
                },
                Lookup::Miss(m) => Lookup::Miss(m),
            };
            self.count_lookup(key, found.miss_cause());
            each(i, found)?;
        }
        let store = self.store;
        store.get_many(&wanted, |j, read| {
            let (i, part_ref, ids) = &hits[j];
            let key = &keys[*i];
            let found = match read {
                Ok(object) if object.payload().len() as u64 == part_ref.size => {
                    Lookup::Hit(object.payload())
                }
                Ok(object) => miss(
                    MissCause::Corrupt,
                    format!(
                        "part {:?} of {key}: object {} has {} bytes, the entry says {}",
                        part_ref.name,
                        part_ref.id,
                        object.payload().len(),
                        part_ref.size
                    ),
                ),
                Err(e) if e.is_cache_miss() => miss(
                    cause_of(&e),
                    format!("part {:?} of {key}: {e}", part_ref.name),
                ),
                Err(e) => return Err(e),
            };
            if let Lookup::Hit(_) = found {
                self.record(package, key, ids.clone());
            }
            self.count_lookup(key, found.miss_cause());
            each(*i, found)
        })
    }

    fn read_part(&self, key: &CacheKey, part: &PartRef) -> Result<Lookup<Vec<u8>>> {
        match self.store.get_object(&part.id) {
            Ok(object) if object.payload().len() as u64 == part.size => {
                Ok(Lookup::Hit(object.into_payload()))
            }
            Ok(object) => Ok(miss(
                MissCause::Corrupt,
                format!(
                    "part {:?} of {key}: object {} has {} bytes, the entry says {}",
                    part.name,
                    part.id,
                    object.payload().len(),
                    part.size
                ),
            )),
            Err(e) if e.is_cache_miss() => Ok(miss(
                cause_of(&e),
                format!("part {:?} of {key}: {e}", part.name),
            )),
            Err(e) => Err(e),
        }
    }

    /// The positions in `keys` that have no usable entry (absent, damaged,
    /// or with a missing part object). Present keys are pinned and count as
    /// used by `package`; each key is counted as a hit or miss.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a key of another namespace; [`Error::Io`].
    pub fn find_missing(&mut self, package: &PackageName, keys: &[CacheKey]) -> Result<Vec<usize>> {
        for key in keys {
            check_namespace(key, self.namespace())?;
        }
        let plain: Vec<_> = keys.iter().map(|k| k.key().clone()).collect();
        let answers = self.index.lookup_many(&plain)?;
        let mut missing = Vec::new();
        for (i, (key, answer)) in keys.iter().zip(answers).enumerate() {
            let cause = match answer {
                Lookup::Hit(entry) => {
                    let ids: Vec<ObjectId> = entry.parts().iter().map(|p| p.id).collect();
                    self.pin(&ids)?;
                    let mut all = true;
                    for id in &ids {
                        all &= self.store.contains_object(id)?;
                    }
                    if all {
                        self.record(package, key, ids);
                        None
                    } else {
                        Some(MissCause::Dangling)
                    }
                }
                Lookup::Miss(m) => Some(m.cause),
            };
            if cause.is_some() {
                missing.push(i);
            }
            self.count_lookup(key, cause);
        }
        Ok(missing)
    }

    /// [`BuildSession::put`] of every `(key, parts)` of `entries`: the
    /// parts of each tier stored at once on every core
    /// ([`Store::put_many`]), pinned, then every entry published with one
    /// append ([`Index::put_entries`]). Outcomes are in the order of
    /// `entries`.
    ///
    /// # Errors
    /// As [`BuildSession::put`].
    pub fn put_many(
        &mut self,
        package: &PackageName,
        entries: &[(&CacheKey, NamedParts<'_>)],
    ) -> Result<Vec<PutOutcome>> {
        for (key, _) in entries {
            check_namespace(key, self.namespace())?;
        }
        // The writers lock is held from the first write to the pin, so a
        // gc (even with grace 0) cannot run between them and take objects
        // no entry names yet: gc reads the pins under its exclusive lock.
        let store = self.store;
        let writing = store.writing()?;
        // One `Store::put_many` per object kind (tier), in order of first use.
        let mut ids: Vec<Vec<ObjectId>> = vec![Vec::new(); entries.len()];
        let mut kinds: Vec<crate::object::Kind> = Vec::new();
        for (key, _) in entries {
            let kind = key.tier().object_kind();
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        for kind in kinds {
            let objects: Vec<(&[ObjectId], &[u8])> = entries
                .iter()
                .filter(|(key, _)| key.tier().object_kind() == kind)
                .flat_map(|(_, parts)| parts.iter().map(|(_, bytes)| (&[][..], *bytes)))
                .collect();
            let mut stored = self.store.put_many(kind, &objects)?.into_iter();
            for (slot, (key, parts)) in ids.iter_mut().zip(entries) {
                if key.tier().object_kind() == kind {
                    slot.extend(stored.by_ref().take(parts.len()));
                }
            }
        }
        let all: Vec<ObjectId> = ids.iter().flatten().copied().collect();
        self.pin(&all)?;
        drop(writing);
        let published: Vec<(crate::key::Key, Vec<PartRef>)> = entries
            .iter()
            .zip(&ids)
            .map(|((key, parts), ids)| {
                let refs = parts
                    .iter()
                    .zip(ids)
                    .map(|((name, bytes), id)| PartRef {
                        name: (*name).to_string(),
                        id: *id,
                        size: bytes.len() as u64,
                    })
                    .collect();
                (key.key().clone(), refs)
            })
            .collect();
        let outcomes = self.index.put_entries(self.store, published)?;
        for ((key, parts), ids) in entries.iter().zip(ids) {
            self.record(package, key, ids);
            self.count(
                key.tier(),
                TierCounters {
                    puts: 1,
                    put_bytes: parts.iter().map(|(_, b)| b.len() as u64).sum(),
                    ..TierCounters::default()
                },
            );
        }
        Ok(outcomes)
    }

    /// Stores `parts` (name, bytes) as objects of the tier's kind, pins
    /// them, and publishes the entry for `key`; the key counts as used by
    /// `package`.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] for a key of another namespace;
    /// [`Error::InvalidEntry`] for bad part names; [`Error::Io`].
    pub fn put(
        &mut self,
        package: &PackageName,
        key: &CacheKey,
        parts: &[(&str, &[u8])],
    ) -> Result<PutOutcome> {
        check_namespace(key, self.namespace())?;
        let kind = key.tier().object_kind();
        let mut refs = Vec::with_capacity(parts.len());
        let mut bytes = 0u64;
        // Held from the write to the pin, as in `put_many`.
        let store = self.store;
        let writing = store.writing()?;
        for (name, payload) in parts {
            let id = self.store.put_object(kind, &[], payload)?;
            self.pin(&[id])?;
            bytes += payload.len() as u64;
            refs.push(PartRef {
                name: (*name).to_string(),
                id,
                size: payload.len() as u64,
            });
        }
        drop(writing);
        let ids = refs.iter().map(|p| p.id).collect();
        let outcome = self.index.put_entry(self.store, key.key(), refs)?;
        self.record(package, key, ids);
        self.count(
            key.tier(),
            TierCounters {
                puts: 1,
                put_bytes: bytes,
                ..TierCounters::default()
            },
        );
        Ok(outcome)
    }

    /// The previous build root of `package` (from the ref read at open),
    /// or `None` when there is none or it is unreadable.
    ///
    /// # Errors
    /// [`Error::Io`] only; a missing or damaged root is `None`.
    pub fn previous_root(
        &mut self,
        package: &PackageName,
    ) -> Result<Option<(ObjectId, BuildRoot)>> {
        if let Some(cached) = self.previous.get(package) {
            return Ok(cached.clone());
        }
        let found = self.read_root(package)?.ok();
        self.previous.insert(package.clone(), found.clone());
        Ok(found)
    }

    /// Reads the root the start ref names: `Err(cause)` when there is none
    /// or it cannot be used.
    fn read_root(
        &self,
        package: &PackageName,
    ) -> Result<std::result::Result<(ObjectId, BuildRoot), MissCause>> {
        self.read_root_with(package, BuildRoot::decode, |r| (&r.package, &r.namespace))
    }

    /// As [`Self::read_root`], decoding with `decode`; `names` gives the
    /// decoded root's package and namespace, which must be this package's.
    fn read_root_with<T>(
        &self,
        package: &PackageName,
        decode: impl FnOnce(&[u8], &[ObjectId]) -> Result<T>,
        names: impl FnOnce(&T) -> (&PackageName, &Namespace),
    ) -> Result<std::result::Result<(ObjectId, T), MissCause>> {
        let Some(root_id) = self.start_ref(package) else {
            return Ok(Err(MissCause::Absent));
        };
        let object = match self.store.get_object(&root_id) {
            Ok(object) => object,
            Err(e) if e.is_cache_miss() => return Ok(Err(cause_of(&e))),
            Err(e) => return Err(e),
        };
        if object.kind() != Kind::Root {
            return Ok(Err(MissCause::Corrupt));
        }
        match decode(object.payload(), object.links()) {
            Ok(root) if names(&root) == (package, self.namespace()) => Ok(Ok((root_id, root))),
            _ => Ok(Err(MissCause::Corrupt)),
        }
    }

    /// The previous build's metadata, when the quick path's inputs match.
    fn read_quick(
        &self,
        package: &PackageName,
        file_hashes: &[ContentHash],
        upstream_metadata_ids: &[ObjectId],
    ) -> Result<std::result::Result<Option<PreviousBuild>, MissCause>> {
        let (root_id, inputs) =
            match self.read_root_with(package, BuildRoot::decode_inputs, |r: &RootInputs| {
                (&r.package, &r.namespace)
            })? {
                Ok(found) => found,
                Err(cause) => return Ok(Err(cause)),
            };
        if inputs.file_hashes != normalized(file_hashes)
            || inputs.upstream_metadata_ids != normalized(upstream_metadata_ids)
        {
            return Ok(Ok(None));
        }
        match self.load_metadata(&inputs.metadata_id) {
            Ok(metadata) => Ok(Ok(Some(PreviousBuild {
                root_id,
                metadata_id: inputs.metadata_id,
                metadata,
            }))),
            Err(e) if e.is_cache_miss() => Ok(Err(cause_of(&e))),
            Err(Error::Malformed { .. }) => Ok(Err(MissCause::Corrupt)),
            Err(e) => Err(e),
        }
    }

    /// The quick path: `Some` when `package`'s previous build (per the ref
    /// read at open) had exactly these source file hashes and upstream
    /// metadata ids, so the package can be skipped. Its ref is then left as
    /// it is by [`BuildSession::publish`], and its metadata, already read
    /// and decoded, comes back in the answer (and its id from
    /// [`BuildSession::metadata_id`]). Reads one root object (without
    /// decoding its key list) and one metadata object; never touches the
    /// index and pins nothing, since nothing of the previous build is used
    /// from disk afterwards. Counted in the `meta` tier (a skip is a hit); a
    /// root or metadata object that is missing or damaged is a miss.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the package is already finished in this
    /// session; [`Error::Io`].
    pub fn quick_check(
        &mut self,
        package: &PackageName,
        file_hashes: &[ContentHash],
        upstream_metadata_ids: &[ObjectId],
    ) -> Result<Option<PreviousBuild>> {
        self.check_not_done(package)?;
        let found = self.read_quick(package, file_hashes, upstream_metadata_ids)?;
        let mut delta = TierCounters::default();
        let answer = match found {
            Ok(Some(previous)) => {
                delta.hits = 1;
                Some(previous)
            }
            Ok(None) | Err(MissCause::Absent) => {
                delta.absent = 1;
                None
            }
            Err(MissCause::Corrupt) => {
                delta.corrupt = 1;
                None
            }
            Err(MissCause::Dangling) => {
                delta.dangling = 1;
                None
            }
        };
        self.count(Tier::Meta, delta);
        if let Some(previous) = &answer {
            self.done.insert(
                package.clone(),
                Outcome::Skipped(FinishedPackage {
                    root_id: previous.root_id,
                    metadata_id: previous.metadata_id,
                }),
            );
        }
        Ok(answer)
    }

    fn check_not_done(&self, package: &PackageName) -> Result<()> {
        if self.done.contains_key(package) {
            return Err(Error::InvalidRequest {
                reason: format!("package {package} is already finished or skipped in this build"),
            });
        }
        Ok(())
    }

    /// Writes `package`'s metadata (a `Kind::Meta` object) and its build
    /// root (a `Kind::Root` object linking the metadata and every object the
    /// package's build used), both pinned until publish.
    ///
    /// `file_hashes` and `upstream_metadata_ids` are the quick-path inputs
    /// the next build compares against (order does not matter).
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the package is already finished or
    /// skipped; [`Error::Encode`] for unencodable metadata; [`Error::Io`].
    pub fn finish_package(
        &mut self,
        package: &PackageName,
        metadata: &PackageMetadata,
        file_hashes: &[ContentHash],
        upstream_metadata_ids: &[ObjectId],
    ) -> Result<FinishedPackage> {
        self.check_not_done(package)?;
        let meta_bytes = metadata.encode()?;
        let metadata_id = self.store.put_object(Kind::Meta, &[], &meta_bytes)?;
        self.pin(&[metadata_id])?;
        self.count(
            Tier::Meta,
            TierCounters {
                puts: 1,
                put_bytes: meta_bytes.len() as u64,
                ..TierCounters::default()
            },
        );
        let used = self.used.remove(package).unwrap_or_default();
        let mut objects = BTreeSet::new();
        let mut keys = Vec::with_capacity(used.keys.len());
        for (key, ids) in used.keys.into_values() {
            objects.extend(ids);
            keys.push(key);
        }
        objects.remove(&metadata_id);
        let mut links = Vec::with_capacity(objects.len() + 1);
        links.push(metadata_id);
        links.extend(objects);
        let root = BuildRoot {
            package: package.clone(),
            namespace: self.namespace().clone(),
            metadata_id,
            file_hashes: normalized(file_hashes),
            upstream_metadata_ids: normalized(upstream_metadata_ids),
            keys,
        };
        let root_id = self.store.put_object(Kind::Root, &links, &root.encode())?;
        self.pin(&[root_id])?;
        let finished = FinishedPackage {
            root_id,
            metadata_id,
        };
        self.done.insert(package.clone(), Outcome::Built(finished));
        Ok(finished)
    }

    /// The metadata id of a package finished or skipped in this session.
    pub fn metadata_id(&self, package: &PackageName) -> Option<ObjectId> {
        self.done.get(package).map(|o| match o {
            Outcome::Built(f) | Outcome::Skipped(f) => f.metadata_id,
        })
    }

    /// Reads a package's metadata object (e.g. an upstream package's, by the
    /// id from [`BuildSession::metadata_id`]).
    ///
    /// # Errors
    /// [`Error::NotFound`] / [`Error::Corrupt`] / [`Error::Malformed`]
    /// (all cache misses); [`Error::Io`].
    pub fn load_metadata(&self, id: &ObjectId) -> Result<PackageMetadata> {
        let object = self.store.get_object(id)?;
        if object.kind() != Kind::Meta {
            return Err(Error::Malformed {
                what: "package metadata",
                reason: format!("object {id} is a {} object, not meta", object.kind()),
            });
        }
        PackageMetadata::decode(object.payload())
    }

    /// Why `key` (used by `package`'s build) missed: which components differ
    /// from the closest key the previous build of `package` used for the
    /// same function. Reads the previous root once per package.
    ///
    /// # Errors
    /// [`Error::Io`] only.
    pub fn explain(&mut self, package: &PackageName, key: &CacheKey) -> Result<Explanation> {
        let previous = self.previous_root(package)?;
        Ok(explain_against(
            key,
            previous.as_ref().map(|(id, root)| (*id, root)),
        ))
    }

    /// Updates the ref of every finished package whose root differs from
    /// the ref's value at open, in one transaction, each expecting that
    /// value; then releases the pins and flushes the store (objects,
    /// statistics) and the index. Skipped packages, and packages rebuilt to
    /// the same root, are not written (a no-op build writes no ref, reflog
    /// or transaction file). A ref of such a package that another build
    /// moved meanwhile is left as the other build made it: every root
    /// records the upstream metadata it was built against, so the next quick
    /// path rebuilds whatever this build's new roots got wrong.
    ///
    /// # Errors
    /// [`Error::Conflict`] when another build moved one of the refs to be
    /// written: no ref is changed. [`Error::Locked`], [`Error::Io`].
    pub fn publish(mut self, message: &str) -> Result<PublishReport> {
        let namespace = self.namespace().clone();
        let mut updates = Vec::with_capacity(self.done.len());
        let (mut built, mut skipped) = (0, 0);
        for (package, outcome) in &self.done {
            let root = match outcome {
                Outcome::Built(f) => {
                    built += 1;
                    f.root_id
                }
                Outcome::Skipped(f) => {
                    skipped += 1;
                    f.root_id
                }
            };
            let start = self.start_refs.get(package).copied();
            if start == Some(root) {
                // Skipped, or rebuilt to the same root: nothing to write.
                continue;
            }
            let expect = match start {
                Some(id) => Expect::Value(id),
                None => Expect::Absent,
            };
            updates.push(RefUpdate::set(
                namespace.clone(),
                package.clone(),
                expect,
                root,
            ));
        }
        // An empty transaction touches nothing.
        let result = self.store.update_refs(&updates, message);
        let released = match self.pin.take() {
            Some(pin) => pin.release(),
            None => Ok(()),
        };
        let flushed = self.index.flush().and_then(|()| self.store.flush());
        result?;
        released?;
        flushed?;
        Ok(PublishReport {
            namespace,
            refs: updates
                .into_iter()
                .filter_map(|u| u.new.map(|id| (u.package, id)))
                .collect(),
            built,
            skipped,
        })
    }
}
