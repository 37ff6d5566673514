//! rask-store, twice: through its keyed index the way a compiler uses it
//! ([`KEYED`], the row every ratio is against; puts go through
//! `Index::put_many`, one batch of 1,000 at a time as redb and SQLite commit
//! theirs; gets through `Index::get_many_with`, one batch of 1,000 at a
//! time, its keys written and looked up and its objects read and hashed on
//! every core), and through its object API
//! with the key → id map in memory like the raw filesystem ([`OBJECTS`]; gets
//! go one at a time through `Store::get_object_into` with one buffer per
//! batch, as the raw filesystem peer reuses one: the one-thread get).
//! Both verify with the store's own `verify::verify` and reclaim with
//! `gc::collect`.

use std::path::Path;
use std::time::Duration;

use rask_store::gc::{self, GcPolicy};
use rask_store::index::NamedParts;
use rask_store::key::KeyEncoder;
use rask_store::verify::{self, VerifyOptions};
use rask_store::{
    Component, Durability, Expect, Index, Key, KeyHash, Kind, Lookup, Namespace, ObjectBuf,
    ObjectId, PackageName, Store, StoreOptions, Wait,
};

use super::{PeerSpec, store_dir};
use crate::peer::{Check, KeyMapped, ObjectBackend, Peer, Res};
use crate::workload::key_fields;

/// The namespace (compiler identity) every W1 key lives in.
pub const NAMESPACE: &str = "rask-bench-w1";
/// The one part of every W1 entry.
pub const PART: &str = "ast";

pub const KEYED: PeerSpec = PeerSpec {
    id: "rask",
    label: "rask-store (keyed index, get_many_with)",
    durability: "none (Durability::None)",
    verify: "verify::verify (every object re-hashed on every core, links, index files, \
             every entry's closure, refs)",
    reclaim: "Index::remove of every doomed key, then gc::collect (grace 0, as `gc --grace 0 \
              --force`: no build runs beside the benchmark)",
    create: create_keyed,
    open: open_keyed,
};

pub const OBJECTS: PeerSpec = PeerSpec {
    id: "rask-objects",
    label: "rask-store (objects, key map in memory, one get at a time)",
    durability: "none (Durability::None)",
    verify: "verify::verify (every object re-hashed on every core, links)",
    reclaim: "a Root object linking the kept half, published as a ref, then gc::collect \
              (grace 0, as `gc --grace 0 --force`)",
    create,
    open,
};

fn options() -> StoreOptions {
    StoreOptions::with_durability(Durability::None)
}

/// Runs the store's verify (on every core) and fails unless the store is clean.
pub fn verify_clean(store: &Store) -> Res<verify::VerifyReport> {
    verify_clean_with(store, &|_| {})
}

/// [`verify_clean`], reporting progress of the object walk.
pub fn verify_clean_with(
    store: &Store,
    progress: &(dyn Fn(verify::VerifyProgress) + Sync),
) -> Res<verify::VerifyReport> {
    let report = verify::verify(store, VerifyOptions::default(), progress)?;
    if let Some(problem) = report.damage_left().next() {
        return Err(format!(
            "verify found {} problems, the first: {} {}: {}",
            report.problems.len(),
            problem.kind.name(),
            problem.path.display(),
            problem.detail
        )
        .into());
    }
    Ok(report)
}

/// gc as a benchmark with no concurrent build runs it: grace period 0 (the
/// CLI's `--grace 0 --force`), waiting for no one.
pub fn collect_now(store: &Store, index: &Index) -> Res<gc::StoreGcReport> {
    let mut policy = GcPolicy::default();
    policy.objects.grace = Duration::ZERO;
    policy.wait = Wait::NoWait;
    Ok(gc::collect(store, index, policy, &|_| {})?)
}

/// The composite key a compiler would build for a W1 key:
/// `(package, function, [type args], body hash, [type-def hashes])`,
/// written straight into its encoding with [`Key::build`] as the W1 bytes
/// are read (no field is collected first, as a compiler holding the fields
/// would not).
pub fn w1_key(namespace: &Namespace, bytes: &[u8]) -> Res<Key> {
    let mut key = Key::build(namespace);
    write_w1_key(&mut key, bytes)?;
    Ok(key.finish()?)
}

/// Writes the components of [`w1_key`]'s key into `key` (for
/// [`Index::find_missing_with`], which hashes and looks keys up without
/// making a [`Key`] of each).
pub fn write_w1_key(key: &mut KeyEncoder<'_>, bytes: &[u8]) -> Res<()> {
    let mut r = W1Reader { rest: bytes };
    let mut ok = r.take(1) == Some(&[1][..]);
    for _ in 0..2 {
        match r.string() {
            Some(s) => key.str(s),
            None => return Err("not a W1 key".into()),
        };
    }
    let n = r.count();
    key.list(|args| {
        for _ in 0..n.unwrap_or(0) {
            match r.string() {
                Some(s) => args.str(s),
                None => {
                    ok = false;
                    return;
                }
            };
        }
    });
    match r.hash() {
        Some(h) => key.hash(h),
        None => return Err("not a W1 key".into()),
    };
    let m = r.count();
    key.list(|defs| {
        for _ in 0..m.unwrap_or(0) {
            match r.hash() {
                Some(h) => defs.hash(h),
                None => {
                    ok = false;
                    return;
                }
            };
        }
    });
    if !ok || n.is_none() || m.is_none() || !r.rest.is_empty() {
        return Err("not a W1 key".into());
    }
    Ok(())
}

/// Reads the fields of a W1 key in order (the format `key_fields` decodes).
struct W1Reader<'a> {
    rest: &'a [u8],
}

impl<'a> W1Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    fn count(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn string(&mut self) -> Option<&'a str> {
        let len = self.take(2)?;
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn hash(&mut self) -> Option<&'a [u8; 32]> {
        self.take(32)?.try_into().ok()
    }
}

/// [`w1_key`] the way a caller without [`Key::build`] writes it: the
/// component tree first, then [`Key::new`] (the same key).
pub fn w1_key_from_components(namespace: &Namespace, bytes: &[u8]) -> Res<Key> {
    let f = key_fields(bytes).ok_or("not a W1 key")?;
    let components = vec![
        Component::str(f.package),
        Component::str(f.function),
        Component::List(f.type_args.into_iter().map(Component::str).collect()),
        Component::Hash(f.body_hash),
        Component::List(f.type_defs.into_iter().map(Component::Hash).collect()),
    ];
    Ok(Key::new(namespace.clone(), components)?)
}

struct RaskKeyed {
    store: Store,
    index: Index,
    namespace: Namespace,
    /// Keys built and the seconds building them took (inside the timed
    /// phases), reported when the handle is dropped.
    keys_built: u64,
    key_secs: f64,
    /// The W1 keys of the first existence batch, kept to compare ways of
    /// building keys on the same bytes when the handle is dropped.
    sample: Vec<Vec<u8>>,
}

impl Drop for RaskKeyed {
    fn drop(&mut self) {
        if self.keys_built > 0 {
            eprintln!(
                "rask: building {} Keys from W1 bytes took {:.3} s of this handle's phases \
                 ({:.2} µs per key)",
                self.keys_built,
                self.key_secs,
                self.key_secs * 1e6 / self.keys_built as f64
            );
        }
        if !self.sample.is_empty() {
            compare_key_building(&self.namespace, &self.sample);
        }
    }
}

/// Prints what building a key costs by each way on the same W1 key bytes,
/// interleaved in rounds so load on the machine hits every way alike:
/// [`w1_key`] ([`Key::build`]), [`w1_key_from_components`] ([`Key::new`]),
/// the key hash alone (the floor either way pays), and `key_fields` alone
/// (what the component tree is built from); then [`w1_key`] again with every
/// key of the batch kept until the end, as an existence batch keeps them, and
/// the drop of those keys.
fn compare_key_building(namespace: &Namespace, sample: &[Vec<u8>]) {
    const ROUNDS: usize = 20;
    let Ok(keys) = sample
        .iter()
        .map(|k| w1_key(namespace, k))
        .collect::<Res<Vec<Key>>>()
    else {
        return;
    };
    let mut secs = [0f64; 6];
    for _ in 0..ROUNDS {
        let start = std::time::Instant::now();
        for k in sample {
            std::hint::black_box(w1_key(namespace, std::hint::black_box(k)).ok());
        }
        secs[0] += start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        for k in sample {
            std::hint::black_box(w1_key_from_components(namespace, std::hint::black_box(k)).ok());
        }
        secs[1] += start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        for k in &keys {
            std::hint::black_box(KeyHash::of_encoding(std::hint::black_box(k.encoding())));
        }
        secs[2] += start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        for k in sample {
            std::hint::black_box(key_fields(std::hint::black_box(k)));
        }
        secs[3] += start.elapsed().as_secs_f64();
        // As an existence batch does: every key of the batch kept, then dropped.
        let start = std::time::Instant::now();
        let kept: Vec<Key> = sample
            .iter()
            .filter_map(|k| w1_key(namespace, k).ok())
            .collect();
        secs[4] += start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        drop(std::hint::black_box(kept));
        secs[5] += start.elapsed().as_secs_f64();
    }
    let each = |s: f64| s * 1e6 / (ROUNDS * sample.len()) as f64;
    let mean_len = keys.iter().map(|k| k.encoding().len()).sum::<usize>() / keys.len().max(1);
    eprintln!(
        "rask: one W1 key ({mean_len} bytes encoded, mean of {} keys × {ROUNDS}): Key::build \
         {:.3} µs, component tree + Key::new {:.3} µs, the key hash alone {:.3} µs, key_fields alone (what the \
         tree is built from) {:.3} µs; Key::build of the whole batch kept {:.3} µs, dropping \
         them {:.3} µs",
        sample.len(),
        each(secs[0]),
        each(secs[1]),
        each(secs[2]),
        each(secs[3]),
        each(secs[4]),
        each(secs[5])
    );
}

fn create_keyed(dir: &Path) -> Res<Box<dyn Peer>> {
    let store = Store::create(store_dir(dir), options())?;
    keyed(store)
}

fn open_keyed(dir: &Path) -> Res<Box<dyn Peer>> {
    let store = Store::open(store_dir(dir), options())?;
    keyed(store)
}

fn keyed(store: Store) -> Res<Box<dyn Peer>> {
    let index = Index::open(&store)?;
    Ok(Box::new(RaskKeyed {
        store,
        index,
        namespace: Namespace::new(NAMESPACE)?,
        keys_built: 0,
        key_secs: 0.0,
        sample: Vec::new(),
    }))
}

impl RaskKeyed {
    fn keys(&mut self, keys: &[&[u8]]) -> Res<Vec<Key>> {
        let start = std::time::Instant::now();
        let out = keys.iter().map(|k| w1_key(&self.namespace, k)).collect();
        self.key_secs += start.elapsed().as_secs_f64();
        self.keys_built += keys.len() as u64;
        out
    }
}

impl Peer for RaskKeyed {
    fn put_batch(&mut self, batch: &[(&[u8], &[u8])]) -> Res<()> {
        // A batch of 1,000 results published together, as redb and SQLite
        // commit 1,000 puts per transaction: `Index::put_many`, one journal
        // append for the batch.
        let keys: Vec<&[u8]> = batch.iter().map(|(key, _)| *key).collect();
        let keys = self.keys(&keys)?;
        let parts: Vec<[(&str, &[u8]); 1]> =
            batch.iter().map(|(_, value)| [(PART, *value)]).collect();
        let entries: Vec<(&Key, NamedParts<'_>)> = keys
            .iter()
            .zip(&parts)
            .map(|(key, parts)| (key, parts.as_slice()))
            .collect();
        self.index.put_many(&self.store, Kind::Instance, &entries)?;
        Ok(())
    }

    fn get_batch(&mut self, keys: &[&[u8]], check: &mut Check<'_>) -> Res<()> {
        // The batch in one `Index::get_many_with`, as a compiler loading a
        // package's cached instances would ask: the keys are written and
        // looked up, and the objects read and hashed, on every core (no
        // `Key` is made); every value is checked on this thread.
        self.index.get_many_with(
            &self.store,
            &self.namespace,
            keys.len(),
            |i, key| write_w1_key(key, keys[i]),
            PART,
            |i, answer| match answer? {
                Lookup::Hit(bytes) => check(i, bytes),
                Lookup::Miss(miss) => {
                    Err(format!("{} miss: {}", miss.cause.name(), miss.detail).into())
                }
            },
        )
    }

    fn exists_batch(&mut self, keys: &[&[u8]], found: &mut Vec<bool>) -> Res<()> {
        if self.sample.is_empty() {
            self.sample = keys.iter().map(|k| k.to_vec()).collect();
        }
        // Written, hashed and looked up on every core, no `Key` made:
        // `Index::find_missing_with`, as a compiler asking which of a
        // package's keys the cache lacks would call it.
        let missing = self
            .index
            .find_missing_with(&self.namespace, keys.len(), |i, key| {
                write_w1_key(key, keys[i])
            })?;
        let start = found.len();
        found.resize(start + keys.len(), true);
        for i in missing {
            found[start + i] = false;
        }
        Ok(())
    }

    fn verify(&mut self) -> Res<bool> {
        verify_clean(&self.store)?;
        Ok(true)
    }

    fn delete_batch(&mut self, keys: &[&[u8]]) -> Res<()> {
        for key in self.keys(keys)? {
            if !self.index.remove(&key)? {
                return Err(format!("deleting {key}, which has no entry").into());
            }
        }
        Ok(())
    }

    fn reclaim(&mut self) -> Res<()> {
        collect_now(&self.store, &self.index)?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.index.flush()?;
        self.store.flush()?;
        Ok(())
    }
}

struct RaskObjects {
    store: Store,
}

fn create(dir: &Path) -> Res<Box<dyn Peer>> {
    let store = Store::create(store_dir(dir), options())?;
    Ok(Box::new(KeyMapped::new(
        Box::new(RaskObjects { store }),
        dir.join("keymap"),
    )))
}

fn open(dir: &Path) -> Res<Box<dyn Peer>> {
    let store = Store::open(store_dir(dir), options())?;
    Ok(Box::new(KeyMapped::load(
        Box::new(RaskObjects { store }),
        dir.join("keymap"),
    )?))
}

/// An object id from the bytes the harness keeps for it.
pub fn object_id(id: &[u8]) -> Res<ObjectId> {
    let bytes: [u8; 32] = id.try_into().map_err(|_| "object id is not 32 bytes")?;
    Ok(ObjectId::from_bytes(bytes))
}

impl ObjectBackend for RaskObjects {
    fn put_values(&mut self, values: &[&[u8]], ids: &mut Vec<Vec<u8>>) -> Res<()> {
        for value in values {
            let id = self.store.put_object(Kind::Instance, &[], value)?;
            ids.push(id.as_bytes().to_vec());
        }
        Ok(())
    }

    fn get_values(&mut self, ids: &[&[u8]], check: &mut Check<'_>) -> Res<()> {
        // One buffer reused across the batch, as the raw filesystem peer
        // does and as a compiler loading many artifacts in a row would.
        let mut buf = ObjectBuf::new();
        for (i, id) in ids.iter().enumerate() {
            let object = self.store.get_object_into(&object_id(id)?, &mut buf)?;
            check(i, object.payload())?;
        }
        Ok(())
    }

    fn contains(&mut self, ids: &[&[u8]], found: &mut Vec<bool>) -> Res<()> {
        for id in ids {
            found.push(self.store.contains_object(&object_id(id)?)?);
        }
        Ok(())
    }

    fn absent_id(&self, key: &[u8]) -> Vec<u8> {
        blake3::hash(key).as_bytes().to_vec()
    }

    fn remove(&mut self, _ids: &[&[u8]]) -> Res<()> {
        // Objects are removed by gc, once nothing reaches them.
        Ok(())
    }

    fn reclaim(&mut self, kept: &[&[u8]]) -> Res<()> {
        // What a build publishes: a root linking everything it keeps, named
        // by a ref; gc keeps what the ref reaches and removes the rest.
        let links = kept
            .iter()
            .map(|id| object_id(id))
            .collect::<Res<Vec<_>>>()?;
        let root = self.store.put_object(Kind::Root, &links, b"kept half")?;
        let ns = Namespace::new(NAMESPACE)?;
        let pkg = PackageName::new("kept")?;
        self.store
            .update_ref(&ns, &pkg, Expect::Any, root, "bench: keep the kept half")?;
        let index = Index::open(&self.store)?;
        collect_now(&self.store, &index)?;
        Ok(())
    }

    fn verify(&mut self) -> Res<bool> {
        verify_clean(&self.store)?;
        Ok(true)
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.store.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Workload;

    /// Puts `w` through `spec`, checks every read, then deletes the odd keys
    /// and reclaims; returns the number of stored objects (loose or packed,
    /// as verify counts them) before and after.
    fn round_trip(spec: &PeerSpec, w: &Workload) -> (u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let mut peer = (spec.create)(dir.path()).unwrap();
        let batch: Vec<(&[u8], &[u8])> = (0..w.len()).map(|i| (w.key(i), w.value(i))).collect();
        peer.put_batch(&batch).unwrap();
        let keys: Vec<&[u8]> = (0..w.len()).map(|i| w.key(i)).collect();
        let mut seen = 0;
        peer.get_batch(&keys, &mut |i, bytes| {
            assert_eq!(bytes, w.value(i));
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, w.len());
        let mut asked = keys.clone();
        asked.extend(w.absent_keys());
        let mut found = Vec::new();
        peer.exists_batch(&asked, &mut found).unwrap();
        let expected: Vec<bool> = (0..asked.len()).map(|i| i < w.len()).collect();
        assert_eq!(found, expected);
        assert!(peer.verify().unwrap());
        peer.close().unwrap();

        let objects = || {
            let store = Store::open(store_dir(dir.path()), StoreOptions::default()).unwrap();
            verify_clean(&store).unwrap().objects
        };
        let before = objects();
        let mut peer = (spec.open)(dir.path()).unwrap();
        let doomed: Vec<&[u8]> = (1..w.len()).step_by(2).map(|i| w.key(i)).collect();
        peer.delete_batch(&doomed).unwrap();
        peer.reclaim().unwrap();
        let kept: Vec<&[u8]> = (0..w.len()).step_by(2).map(|i| w.key(i)).collect();
        peer.get_batch(&kept, &mut |i, bytes| {
            assert_eq!(bytes, w.value(i * 2));
            Ok(())
        })
        .unwrap();
        assert!(peer.verify().unwrap());
        peer.close().unwrap();
        (before, objects())
    }

    #[test]
    fn building_a_w1_key_matches_the_component_tree() {
        let w = Workload::generate(200, 9);
        let ns = Namespace::new(NAMESPACE).unwrap();
        let mut lists = 0;
        for i in 0..w.len() {
            let built = w1_key(&ns, w.key(i)).unwrap();
            let tree = w1_key_from_components(&ns, w.key(i)).unwrap();
            assert_eq!(built.encoding(), tree.encoding());
            assert_eq!(built.hash(), tree.hash());
            assert_eq!(built.components(), tree.components());
            // Bytes that are not a W1 key are refused by both.
            let cut = &w.key(i)[..w.key(i).len() - 1];
            assert!(w1_key(&ns, cut).is_err());
            assert!(w1_key_from_components(&ns, cut).is_err());
            if let Some(Component::List(args)) = tree.components().get(2) {
                lists += usize::from(!args.is_empty());
            }
        }
        assert!(lists > 0, "some W1 keys have type arguments");
    }

    #[test]
    fn the_keyed_row_reads_back_and_gc_removes_the_deleted_half() {
        let w = Workload::generate(40, 5);
        assert_eq!(
            round_trip(&KEYED, &w),
            (40, 20),
            "gc removes the deleted parts"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut peer = (KEYED.create)(dir.path()).unwrap();
        peer.put_batch(&[(w.key(0), w.value(0))]).unwrap();
        let err = peer.get_batch(&[w.key(1)], &mut |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[test]
    fn the_objects_row_keeps_what_its_ref_reaches() {
        let w = Workload::generate(40, 6);
        // The 20 unreferenced objects go; the kept 20 and their root stay.
        assert_eq!(round_trip(&OBJECTS, &w), (40, 21));
    }
}
