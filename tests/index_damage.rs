//! Damaged index files: the store opens, the damage is reported, and no
//! lookup ever returns a wrong value.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rask_store::index::{IndexOptions, MissCause};
use rask_store::{Component, Durability, Index, Key, Kind, Lookup, Namespace, Store, StoreOptions};

/// A store of loose files: these tests damage one object's file.
fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path().join("cache"),
        StoreOptions::with_durability(Durability::None).loose(),
    )
    .unwrap();
    (dir, store)
}

fn key(n: u64) -> Key {
    Key::new(
        Namespace::new("dmg").unwrap(),
        vec![Component::str("fn"), Component::U64(n)],
    )
    .unwrap()
}

fn value(n: u64) -> Vec<u8> {
    format!("value {n}").into_bytes()
}

fn put_range(index: &Index, store: &Store, range: std::ops::Range<u64>) {
    for n in range {
        index
            .put(store, &key(n), Kind::Blob, &[("v", &value(n))])
            .unwrap();
    }
}

/// Every key is either its own value or a miss: never another value.
fn assert_never_wrong(index: &Index, store: &Store, range: std::ops::Range<u64>) -> usize {
    let mut hits = 0;
    for n in range {
        match index.get(store, &key(n), "v").unwrap() {
            Lookup::Hit(v) => {
                assert_eq!(v, value(n), "key {n} returned a wrong value");
                hits += 1;
            }
            Lookup::Miss(_) => {}
        }
    }
    hits
}

fn journal_path(store: &Store) -> PathBuf {
    let index = Index::open(store).unwrap();
    index.stats().unwrap().journal_path
}

fn segment_path(store: &Store) -> PathBuf {
    let index = Index::open(store).unwrap();
    index.stats().unwrap().segments[0].path.clone()
}

/// `at` is `quarantine/index-<original file name>.<nanos>` holding `bytes`,
/// and nothing named `.bad` is left in `index/`.
fn assert_quarantined(store: &Store, at: &Path, original: &Path, bytes: &[u8]) {
    assert_eq!(at.parent(), Some(store.layout().quarantine_dir().as_path()));
    let name = at.file_name().unwrap().to_string_lossy().into_owned();
    let from = original.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("index-{from}.")), "{name}");
    assert_eq!(
        fs::read(at).unwrap(),
        bytes,
        "the evidence is kept as it was"
    );
    let left: Vec<_> = fs::read_dir(store.layout().index_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bad"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    f(&mut bytes);
    // Published index files are read-only; damage arrives from outside.
    fs::remove_file(path).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_torn_journal_tail_is_ignored_reported_and_appended_past() {
    let (_dir, store) = store();
    put_range(&Index::open(&store).unwrap(), &store, 0..5);
    let journal = journal_path(&store);
    let len = fs::metadata(&journal).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(&journal).unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);

    let index = Index::open(&store).unwrap();
    assert_eq!(assert_never_wrong(&index, &store, 0..5), 4);
    assert_eq!(
        index.lookup(&key(4)).unwrap().miss_cause(),
        Some(MissCause::Absent)
    );
    let stats = index.stats().unwrap();
    assert!(stats.torn_tail.is_some(), "{stats:?}");
    assert_eq!(stats.entries, 4);
    assert!(!index.check().unwrap().is_empty());

    // New appends land after the torn bytes and are still found, from a
    // fresh open too.
    put_range(&index, &store, 5..8);
    assert_eq!(assert_never_wrong(&index, &store, 0..8), 7);
    let index = Index::open(&store).unwrap();
    assert_eq!(assert_never_wrong(&index, &store, 0..8), 7);
    let stats = index.stats().unwrap();
    assert_eq!(stats.skipped.len(), 1, "{stats:?}");
    index.compact().unwrap();
    assert_eq!(assert_never_wrong(&index, &store, 0..8), 7);
    assert!(index.check().unwrap().is_empty());
}

#[test]
fn garbage_appended_to_the_journal_is_skipped_and_reported() {
    let (_dir, store) = store();
    put_range(&Index::open(&store).unwrap(), &store, 0..5);
    let journal = journal_path(&store);
    let mut file = fs::OpenOptions::new().append(true).open(&journal).unwrap();
    // Garbage, including a plausible record marker with a bad checksum.
    file.write_all(&[0xab; 100]).unwrap();
    file.write_all(b"RSR\x01\x10\x00\x00\x00").unwrap();
    file.write_all(&[0x5a; 40]).unwrap();
    drop(file);

    let index = Index::open(&store).unwrap();
    assert_eq!(assert_never_wrong(&index, &store, 0..5), 5);
    let problems = index.check().unwrap();
    assert!(!problems.is_empty());
    put_range(&index, &store, 5..10);
    let index = Index::open(&store).unwrap();
    assert_eq!(assert_never_wrong(&index, &store, 0..10), 10);
    assert!(!index.stats().unwrap().skipped.is_empty());
}

#[test]
fn a_truncated_segment_is_reported_and_its_entries_miss() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    put_range(&index, &store, 0..20);
    index.compact().unwrap();
    put_range(&index, &store, 20..25);
    drop(index);
    let segment = segment_path(&store);
    rewrite(&segment, |b| b.truncate(b.len() - 40));

    let index = Index::open(&store).unwrap();
    let stats = index.stats().unwrap();
    assert_eq!(stats.problems.len(), 1, "{stats:?}");
    assert!(stats.problems[0].message.contains("truncated"), "{stats:?}");
    // Journal entries still answer; the segment's read as misses.
    assert_eq!(assert_never_wrong(&index, &store, 0..25), 5);

    // Compaction moves the unreadable segment to quarantine rather than
    // deleting it: same bytes, a name that says where it came from.
    let damaged = fs::read(&segment).unwrap();
    let report = index.compact().unwrap();
    assert_eq!(report.quarantined.len(), 1);
    assert_quarantined(&store, &report.quarantined[0], &segment, &damaged);
    assert!(index.stats().unwrap().problems.is_empty());
    assert_eq!(assert_never_wrong(&index, &store, 0..25), 5);
}

#[test]
fn a_segment_from_an_unknown_version_is_refused_with_a_message() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    put_range(&index, &store, 0..10);
    index.compact().unwrap();
    drop(index);
    let segment = segment_path(&store);
    rewrite(&segment, |b| b[4] = 9);

    let index = Index::open(&store).unwrap();
    let stats = index.stats().unwrap();
    assert_eq!(stats.problems.len(), 1);
    assert!(
        stats.problems[0].message.contains("version 9"),
        "{:?}",
        stats.problems
    );
    assert_eq!(assert_never_wrong(&index, &store, 0..10), 0);
    // The index still takes new entries.
    put_range(&index, &store, 10..12);
    assert_eq!(assert_never_wrong(&index, &store, 0..12), 2);
}

#[test]
fn a_version_1_segment_is_refused_then_set_aside_by_compaction() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    put_range(&index, &store, 0..10);
    index.compact().unwrap();
    drop(index);
    let segment = segment_path(&store);
    rewrite(&segment, |b| b[4] = 1);

    let index = Index::open(&store).unwrap();
    let stats = index.stats().unwrap();
    assert_eq!(stats.problems.len(), 1, "{:?}", stats.problems);
    let message = &stats.problems[0].message;
    assert!(
        message.contains("index segment version 1") && message.contains("version 2"),
        "{message}"
    );
    assert!(message.contains(&*segment.to_string_lossy()), "{message}");
    assert_eq!(assert_never_wrong(&index, &store, 0..10), 0);
    // Compaction moves the old file to quarantine and the entries are rebuilt.
    let old = fs::read(&segment).unwrap();
    let report = index.compact().unwrap();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    assert_quarantined(&store, &report.quarantined[0], &segment, &old);
    assert!(index.stats().unwrap().problems.is_empty());
    put_range(&index, &store, 0..10);
    assert_eq!(assert_never_wrong(&index, &store, 0..10), 10);
}

#[test]
fn no_single_bit_flip_in_a_segment_yields_a_wrong_value() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    put_range(&index, &store, 0..12);
    index.compact().unwrap();
    drop(index);
    let segment = segment_path(&store);
    let good = fs::read(&segment).unwrap();
    let mut corrupt_misses = 0;
    for (i, bit) in (0..good.len()).step_by(3).zip((0..8).cycle()) {
        rewrite(&segment, |b| {
            b.clone_from(&good);
            b[i] ^= 1 << bit;
        });
        for access in [
            rask_store::index::Access::Map,
            rask_store::index::Access::Read,
        ] {
            let index =
                Index::open_with(&store, IndexOptions::default().with_access(access)).unwrap();
            assert_never_wrong(&index, &store, 0..12);
            for n in 0..12 {
                if index.lookup(&key(n)).unwrap().miss_cause() == Some(MissCause::Corrupt) {
                    corrupt_misses += 1;
                }
            }
            // The full check notices every flip (the whole-file checksum).
            assert!(
                !index.check().unwrap().is_empty(),
                "flip at byte {i} unnoticed"
            );
        }
    }
    assert!(corrupt_misses > 0, "no flip was reported as a corrupt miss");
}

#[test]
fn a_journal_with_a_bad_header_is_reported_and_replaced_by_compaction() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    put_range(&index, &store, 0..3);
    drop(index);
    let journal = journal_path(&store);
    rewrite(&journal, |b| b[4] = 7);

    let index = Index::open(&store).unwrap();
    assert!(!index.stats().unwrap().problems.is_empty());
    assert_eq!(assert_never_wrong(&index, &store, 0..3), 0);
    let err = index
        .put(&store, &key(3), Kind::Blob, &[("v", &value(3))])
        .unwrap_err();
    assert!(err.to_string().contains("index compact"), "{err}");
    let damaged = fs::read(&journal).unwrap();
    let report = index.compact().unwrap();
    assert_eq!(report.quarantined.len(), 1);
    assert_quarantined(&store, &report.quarantined[0], &journal, &damaged);
    put_range(&index, &store, 3..4);
    assert_eq!(assert_never_wrong(&index, &store, 0..4), 1);
    assert!(index.stats().unwrap().problems.is_empty());
}

#[test]
fn a_deleted_journal_is_reported_and_recreated_by_the_next_put() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    put_range(&index, &store, 0..4);
    index.compact().unwrap();
    put_range(&index, &store, 4..6);
    drop(index);
    fs::remove_file(journal_path(&store)).unwrap();

    let index = Index::open(&store).unwrap();
    assert_eq!(index.stats().unwrap().problems.len(), 1);
    assert_eq!(assert_never_wrong(&index, &store, 0..6), 4);
    put_range(&index, &store, 6..8);
    assert_eq!(assert_never_wrong(&index, &store, 0..8), 6);
    let index = Index::open(&store).unwrap();
    assert!(index.stats().unwrap().problems.is_empty());
    assert_eq!(assert_never_wrong(&index, &store, 0..8), 6);
}

/// An automatic compaction that fails (here: a directory sits where its new
/// segment must go) does not fail the put that triggered it: the entry is
/// stored and found, the failure is handed out once, puts do not retry on
/// every append, and once the obstacle is gone a later put compacts.
#[test]
fn a_failed_automatic_compaction_does_not_fail_the_put() {
    let (_dir, store) = store();
    let options = IndexOptions::default().with_compact_min_bytes(2_000);
    let index = Index::open_with(&store, options).unwrap();
    let blocker = store.layout().index_segment(1);
    fs::create_dir_all(blocker.join("in-the-way")).unwrap();

    let mut n = 0;
    let failure = loop {
        index
            .put(&store, &key(n), Kind::Blob, &[("v", &value(n))])
            .unwrap_or_else(|e| panic!("put {n} failed: {e}"));
        n += 1;
        if let Some(e) = index.take_compaction_failure() {
            break e;
        }
        assert!(n < 1_000, "no compaction was attempted");
    };
    assert!(
        failure.to_string().contains("index"),
        "the failure names the index path: {failure}"
    );
    assert!(index.take_compaction_failure().is_none(), "handed out once");
    assert_eq!(assert_never_wrong(&index, &store, 0..n), n as usize);
    assert_eq!(
        index.stats().unwrap().generation,
        0,
        "nothing was compacted"
    );

    // The next few puts do not retry (the journal has not grown by another
    // threshold); once it has and the obstacle is gone, a put compacts.
    fs::remove_dir_all(&blocker).unwrap();
    let before = n;
    while index.stats().unwrap().generation == 0 {
        index
            .put(&store, &key(n), Kind::Blob, &[("v", &value(n))])
            .unwrap();
        n += 1;
        assert!(n < before + 1_000, "compaction never retried");
    }
    assert!(n > before + 1, "retried on the very next put");
    assert!(index.take_compaction_failure().is_none());
    assert_eq!(assert_never_wrong(&index, &store, 0..n), n as usize);
    let index = Index::open(&store).unwrap();
    assert_eq!(assert_never_wrong(&index, &store, 0..n), n as usize);
}

/// `Index::get_into` answers as `Index::get` does, through one reused
/// buffer: every hit is exactly its own value (a long value read before a
/// short one leaves nothing behind), and a corrupt, deleted or unnamed part
/// is a miss with its cause, never bytes.
#[test]
fn get_into_a_reused_buffer_answers_as_get_does() {
    let (_dir, store) = store();
    let index = Index::open(&store).unwrap();
    let long = |n: u64| -> Vec<u8> {
        format!("value {n} ")
            .repeat(2_000 * (n as usize % 3 + 1))
            .into_bytes()
    };
    for n in 0..6 {
        let v = if n % 2 == 0 { long(n) } else { value(n) };
        index
            .put(&store, &key(n), Kind::Blob, &[("v", &v)])
            .unwrap();
    }
    let mut buf = rask_store::ObjectBuf::new();
    for n in [0, 1, 2, 3, 4, 5, 4, 1] {
        let want = if n % 2 == 0 { long(n) } else { value(n) };
        let Lookup::Hit(got) = index.get_into(&store, &key(n), "v", &mut buf).unwrap() else {
            panic!("key {n} missed");
        };
        assert_eq!(got, &want[..], "key {n}");
        assert_eq!(index.get(&store, &key(n), "v").unwrap().hit(), Some(want));
    }
    let cause = |n: u64, part: &str, buf: &mut rask_store::ObjectBuf| {
        index
            .get_into(&store, &key(n), part, buf)
            .unwrap()
            .miss_cause()
    };
    assert_eq!(cause(99, "v", &mut buf), Some(MissCause::Absent));
    assert_eq!(cause(1, "nope", &mut buf), Some(MissCause::Absent));
    let id_of = |n: u64| {
        index
            .lookup_with(&key(n), |e| e.part("v").unwrap().id)
            .unwrap()
            .hit()
            .unwrap()
    };
    let flipped = store.object_path(&id_of(2));
    rewrite(&flipped, |b| {
        let last = b.len() - 1;
        b[last] ^= 1;
    });
    assert_eq!(cause(2, "v", &mut buf), Some(MissCause::Corrupt));
    fs::remove_file(store.object_path(&id_of(3))).unwrap();
    assert_eq!(cause(3, "v", &mut buf), Some(MissCause::Dangling));
    // The buffer still serves good values after the misses.
    let Lookup::Hit(got) = index.get_into(&store, &key(1), "v", &mut buf).unwrap() else {
        panic!("key 1 missed");
    };
    assert_eq!(got, &value(1)[..]);
}
