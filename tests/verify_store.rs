//! verify over the whole store: damage injected into objects, index files,
//! refs and reflogs is all reported with its path; repair leaves a store
//! that verifies clean; get never returns wrong bytes on the way.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use common::{cli, code, flip_byte, overwrite, pseudo_random, stdout};
use rask_store::index::AutoCompact;
use rask_store::refs::Expect;
use rask_store::verify::{self, ProblemKind, RepairMode, VerifyOptions, VerifyReport};
use rask_store::{
    Component, Error, Index, IndexOptions, Key, Kind, Lookup, Namespace, ObjectId, PackageName,
    Store, StoreOptions,
};

const PACKAGES: usize = 8;
const LEAVES: usize = 12;
const SEGMENT_ENTRIES: usize = 300;
const JOURNAL_ENTRIES: usize = 300;

fn key(ns: &Namespace, i: usize) -> Key {
    Key::new(
        ns.clone(),
        vec![Component::str("instance"), Component::U64(i as u64)],
    )
    .unwrap()
}

fn part_bytes(i: usize) -> Vec<u8> {
    pseudo_random(64 + (i * 53) % 900, 1_000 + i as u64)
}

/// Xorshift, seeded: which objects are damaged is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn repair_options() -> VerifyOptions {
    let mut options = VerifyOptions::default();
    options.repair = RepairMode::Repair;
    options
}

/// `(kind, path, entry id if any)` of every problem.
fn problem_set(report: &VerifyReport) -> BTreeSet<(ProblemKind, PathBuf, String)> {
    report
        .problems
        .iter()
        .map(|p| {
            let entry = p
                .detail
                .strip_prefix("entry ")
                .and_then(|d| d.split(' ').next())
                .unwrap_or("")
                .to_string();
            (p.kind, p.path.clone(), entry)
        })
        .collect()
}

struct Built {
    store: Store,
    ns: Namespace,
    /// Key number -> (entry id, part id).
    entries: Vec<(ObjectId, ObjectId)>,
    /// Per package: (root id, leaf ids).
    packages: Vec<(ObjectId, Vec<ObjectId>)>,
}

fn build(root: &Path) -> Built {
    let store = Store::create(root, StoreOptions::default().loose()).unwrap();
    let index = Index::open_with(
        &store,
        IndexOptions::default().with_auto_compact(AutoCompact::Off),
    )
    .unwrap();
    let ns = Namespace::new("rask-1.0+release").unwrap();
    let mut entries = Vec::new();
    for i in 0..SEGMENT_ENTRIES + JOURNAL_ENTRIES {
        if i == SEGMENT_ENTRIES {
            index.compact().unwrap();
        }
        let bytes = part_bytes(i);
        let id = index
            .put(&store, &key(&ns, i), Kind::Instance, &[("ast", &bytes)])
            .unwrap()
            .entry_id();
        let part = rask_store::object::compute_id(Kind::Instance, &[], &bytes);
        entries.push((id, part));
    }
    let mut packages = Vec::new();
    for p in 0..PACKAGES {
        let pkg = PackageName::new(format!("pkg{p}")).unwrap();
        let leaves: Vec<ObjectId> = (0..LEAVES)
            .map(|l| {
                let payload = pseudo_random(100 + l * 7, (p * 100 + l) as u64);
                store.put_object(Kind::Ast, &[], &payload).unwrap()
            })
            .collect();
        let first = store
            .put_object(Kind::Root, &leaves[..1], format!("pkg{p} v1").as_bytes())
            .unwrap();
        store
            .update_ref(&ns, &pkg, Expect::Absent, first, "build 1")
            .unwrap();
        let root = store
            .put_object(Kind::Root, &leaves, format!("pkg{p} v2").as_bytes())
            .unwrap();
        store
            .update_ref(&ns, &pkg, Expect::Value(first), root, "build 2")
            .unwrap();
        packages.push((root, leaves));
    }
    store.flush().unwrap();
    drop(index);
    Built {
        store,
        ns,
        entries,
        packages,
    }
}

/// Every get either misses or returns exactly the bytes that were put.
fn assert_no_wrong_bytes(built: &Built) -> usize {
    let index = Index::open(&built.store).unwrap();
    let mut hits = 0;
    for i in 0..built.entries.len() {
        match index.get(&built.store, &key(&built.ns, i), "ast").unwrap() {
            Lookup::Hit(bytes) => {
                assert_eq!(bytes, part_bytes(i), "entry {i} returned wrong bytes");
                hits += 1;
            }
            Lookup::Miss(_) => {}
        }
    }
    for (root, leaves) in &built.packages {
        for id in std::iter::once(root).chain(leaves) {
            match built.store.get_object(id) {
                Ok(object) => assert_eq!(object.id(), *id),
                Err(e) => assert!(e.is_cache_miss(), "{e}"),
            }
        }
    }
    hits
}

#[test]
fn damage_everywhere_is_reported_exactly_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let built = build(&dir.path().join("cache"));
    let store = &built.store;
    let layout = store.layout().clone();
    let ns = &built.ns;
    let clean = verify::verify(store, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(clean.entries, built.entries.len() as u64);
    assert_eq!(clean.refs, PACKAGES as u64);

    let index = Index::open(store).unwrap();
    let stats = index.stats().unwrap();
    drop(index);
    assert_eq!(stats.segments.len(), 1);
    let segment = stats.segments[0].path.clone();
    let journal = stats.journal_path.clone();

    // Every object, sorted; 1% of them get a flipped byte in their payload.
    let mut all: Vec<ObjectId> = built.entries.iter().map(|e| e.1).collect();
    for (root, leaves) in &built.packages {
        all.push(*root);
        all.extend(leaves);
    }
    all.sort();
    all.dedup();
    assert_eq!(clean.objects, all.len() as u64 + PACKAGES as u64);
    let mut rng = Rng(0x5eed_1234);
    let mut flipped: HashSet<ObjectId> = HashSet::new();
    while flipped.len() < all.len().div_ceil(100) {
        let id = all[(rng.next() % all.len() as u64) as usize];
        if flipped.insert(id) {
            let path = store.object_path(&id);
            let len = fs::metadata(&path).unwrap().len() as usize;
            flip_byte(&path, len - 1 - (rng.next() % 32) as usize);
        }
    }
    // Objects deleted behind the store's back: a part of a journal entry,
    // a leaf of package 0, a part of a segment entry.
    let victim_entry = SEGMENT_ENTRIES + 7;
    let mut deleted: HashSet<ObjectId> = HashSet::new();
    for id in [
        built.entries[victim_entry].1,
        built.packages[0].1[3],
        built.entries[5].1,
    ] {
        if !flipped.contains(&id) {
            fs::remove_file(store.object_path(&id)).unwrap();
            deleted.insert(id);
        }
    }
    // Index files: the segment cut in half, the journal's last record torn.
    let seg_bytes = fs::read(&segment).unwrap();
    overwrite(&segment, &seg_bytes[..seg_bytes.len() / 2]);
    let journal_bytes = fs::read(&journal).unwrap();
    overwrite(&journal, &journal_bytes[..journal_bytes.len() - 5]);
    // A garbage ref, and a damaged reflog line.
    let pkg1 = PackageName::new("pkg1").unwrap();
    let ref1 = layout.ref_path(ns, &pkg1);
    fs::write(&ref1, b"this is not an id\n").unwrap();
    let pkg2 = PackageName::new("pkg2").unwrap();
    let log2 = layout.reflog_path(ns, &pkg2);
    let mut log = fs::read(&log2).unwrap();
    log[70] ^= 0x04; // inside the new value of line 1
    fs::write(&log2, &log).unwrap();

    // The model of what verify must find.
    let gone = |id: &ObjectId| flipped.contains(id) || deleted.contains(id);
    let mut expected: BTreeSet<(ProblemKind, PathBuf, String)> = BTreeSet::new();
    for id in &flipped {
        expected.insert((
            ProblemKind::CorruptObject,
            store.object_path(id),
            String::new(),
        ));
    }
    for (p, (root, leaves)) in built.packages.iter().enumerate() {
        let ref_path = layout.ref_path(ns, &PackageName::new(format!("pkg{p}")).unwrap());
        if leaves.iter().any(|l| deleted.contains(l)) && !flipped.contains(root) {
            expected.insert((
                ProblemKind::DanglingLink,
                store.object_path(root),
                String::new(),
            ));
        }
        if p == 1 {
            expected.insert((ProblemKind::CorruptRef, ref_path, String::new()));
        } else if gone(root) || leaves.iter().any(gone) {
            expected.insert((ProblemKind::DanglingRef, ref_path, String::new()));
        }
    }
    expected.insert((
        ProblemKind::DamagedIndexFile,
        segment.clone(),
        String::new(),
    ));
    expected.insert((
        ProblemKind::DamagedIndexFile,
        journal.clone(),
        String::new(),
    ));
    // Segment entries are lost with the segment; the last journal entry with the torn tail.
    for i in SEGMENT_ENTRIES..built.entries.len() - 1 {
        let (entry, part) = built.entries[i];
        let kind = if flipped.contains(&part) {
            ProblemKind::CorruptEntryPart
        } else if deleted.contains(&part) {
            ProblemKind::DanglingEntry
        } else {
            continue;
        };
        expected.insert((kind, layout.index_dir().to_path_buf(), entry.to_hex()));
    }
    expected.insert((ProblemKind::DamagedReflogLine, log2.clone(), String::new()));

    let usable = (SEGMENT_ENTRIES..built.entries.len() - 1)
        .filter(|&i| !gone(&built.entries[i].1))
        .count();
    assert_eq!(assert_no_wrong_bytes(&built), usable);
    let report = verify::verify(store, VerifyOptions::default(), &|_| {}).unwrap();
    assert_eq!(problem_set(&report), expected, "{:#?}", report.problems);
    assert!(!report.is_clean());
    assert!(report.problems.iter().all(|p| p.repaired.is_none()));

    // The CLI agrees, and exits 3.
    let out = cli(store.root(), &["verify"]);
    assert_eq!(code(&out), 3, "{}", stdout(&out));
    assert!(stdout(&out).contains("corrupt-ref: "), "{}", stdout(&out));
    assert!(stdout(&out).contains("damaged-index-file: "));

    // Repair fixes every problem it reported.
    let repaired = verify::verify(store, repair_options(), &|_| {}).unwrap();
    let left: Vec<_> = repaired.damage_left().collect();
    assert!(left.is_empty(), "{left:#?}");
    let again = verify::verify(store, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(again.problems.is_empty(), "{:#?}", again.problems);
    let out = cli(store.root(), &["verify"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));

    // Nothing disappeared without a trace: retired refs are in their reflogs,
    // the garbage ref's bytes and the damaged reflog are in quarantine.
    let quarantined: Vec<String> = fs::read_dir(layout.quarantine_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        quarantined
            .iter()
            .any(|n| n.starts_with("ref-rask-1.0+release-pkg1."))
    );
    assert!(
        quarantined
            .iter()
            .any(|n| n.starts_with("reflog-rask-1.0+release-pkg2."))
    );
    for id in &flipped {
        let name = store
            .object_path(id)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(quarantined.iter().any(|n| n.starts_with(&name)), "{id}");
    }
    let mut retired = 0;
    for (p, (root, _)) in built.packages.iter().enumerate() {
        let pkg = PackageName::new(format!("pkg{p}")).unwrap();
        let log = store.reflog(ns, &pkg).unwrap();
        assert!(log.damaged.is_empty());
        let last = log.entries.last().unwrap();
        let dangling = expected.contains(&(
            ProblemKind::DanglingRef,
            layout.ref_path(ns, &pkg),
            String::new(),
        ));
        if p == 1 || dangling {
            assert_eq!(store.read_ref(ns, &pkg).unwrap(), None, "pkg{p}");
            assert!(
                last.message.starts_with("verify --repair: retired"),
                "{last:?}"
            );
            assert_eq!(last.new, None);
            if dangling {
                assert_eq!(last.old, Some(*root));
            }
            retired += 1;
        } else {
            assert_eq!(store.read_ref(ns, &pkg).unwrap(), Some(*root), "pkg{p}");
        }
    }
    assert!(retired >= 2);
    // Entries whose parts were damaged now read as plain misses; the rest hit.
    let hits = assert_no_wrong_bytes(&built);
    let index = Index::open(store).unwrap();
    let dropped: Vec<usize> = (SEGMENT_ENTRIES..built.entries.len() - 1)
        .filter(|&i| gone(&built.entries[i].1))
        .collect();
    assert!(!dropped.is_empty());
    assert_eq!(hits, usable);
    assert_eq!(hits, JOURNAL_ENTRIES - 1 - dropped.len());
    for i in &dropped {
        assert!(matches!(
            index.lookup(&key(ns, *i)).unwrap(),
            Lookup::Miss(_)
        ));
    }
    assert!(matches!(
        store.get_object(&built.packages[0].1[3]),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn litter_is_reported_but_not_damage_and_repair_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let built = build(&dir.path().join("cache"));
    let store = &built.store;
    let layout = store.layout();
    let pkg = PackageName::new("pkg3").unwrap();
    // A lock file nobody holds, and a pin file of a process that is gone.
    let lock = layout.ref_lock_path(&built.ns, &pkg);
    fs::write(&lock, "rask-store ref lock 1\npid 999999\ntxn -\n").unwrap();
    fs::create_dir_all(layout.pins_dir()).unwrap();
    let pin = layout.pins_dir().join("999999-00-0");
    fs::write(
        &pin,
        format!("rask-store pin 1\npid 999999\n{}\n", built.packages[3].0),
    )
    .unwrap();
    // A live pin is neither.
    let live = store.pin(&[built.packages[4].0]).unwrap();

    let report = verify::verify(store, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(report.is_clean(), "{:#?}", report.problems);
    let found: BTreeSet<(ProblemKind, PathBuf)> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.path.clone()))
        .collect();
    let expected: BTreeSet<(ProblemKind, PathBuf)> = [
        (ProblemKind::StaleLock, lock.clone()),
        (ProblemKind::DeadPin, pin.clone()),
    ]
    .into();
    assert_eq!(found, expected);
    let out = cli(store.root(), &["verify", "--json"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("\"kind\":\"stale-lock\""),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("\"litter\":true"));

    let repaired = verify::verify(store, repair_options(), &|_| {}).unwrap();
    assert!(
        repaired.unrepaired().next().is_none(),
        "{:#?}",
        repaired.problems
    );
    assert!(!lock.exists() && !pin.exists());
    assert!(live.path().exists());
    let again = verify::verify(store, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(again.problems.is_empty(), "{:#?}", again.problems);
    // The ref is still usable.
    let next = store.put_object(Kind::Root, &[], b"pkg3 v3").unwrap();
    store
        .update_ref(
            &built.ns,
            &pkg,
            Expect::Value(built.packages[3].0),
            next,
            "build 3",
        )
        .unwrap();
}

/// The state a multi-ref transaction leaves when its writer is killed in the
/// middle of step 5 (see crate::refs): its record, its lock files, one ref
/// already new and one still old.
#[test]
fn an_unfinished_transaction_is_reported_and_completed_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), StoreOptions::default().loose()).unwrap();
    let layout = store.layout();
    let ns = Namespace::new("rask-1.0").unwrap();
    let (a, b) = (
        PackageName::new("a").unwrap(),
        PackageName::new("b").unwrap(),
    );
    let id = |text: &str| store.put_object(Kind::Root, &[], text.as_bytes()).unwrap();
    let (old_a, old_b, new_a, new_b) = (id("a1"), id("b1"), id("a2"), id("b2"));
    store
        .update_ref(&ns, &a, Expect::Absent, old_a, "build 1")
        .unwrap();
    store
        .update_ref(&ns, &b, Expect::Absent, old_b, "build 1")
        .unwrap();

    let txn = "999999-abcdef-0";
    let mut record = format!(
        "rask-store ref transaction 1\npid 999999\ntime 1700000000\nmessage build 2\n\
         update {ns} a {old_a} {new_a}\nupdate {ns} b {old_b} {new_b}\n"
    );
    let check = blake3::hash(record.as_bytes());
    record.push_str(&format!("check {}\n", hex::encode(&check.as_bytes()[..8])));
    fs::create_dir_all(layout.txn_dir()).unwrap();
    let record_path = layout.txn_dir().join(txn);
    fs::write(&record_path, record).unwrap();
    for pkg in [&a, &b] {
        let content = format!("rask-store ref lock 1\npid 999999\ntxn {txn}\n");
        fs::write(layout.ref_lock_path(&ns, pkg), content).unwrap();
    }
    // The writer got as far as ref a (its own update bypasses the locks here).
    fs::write(layout.ref_path(&ns, &a), format!("{new_a}\n")).unwrap();

    let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    let found: BTreeSet<(ProblemKind, PathBuf)> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.path.clone()))
        .collect();
    let expected: BTreeSet<(ProblemKind, PathBuf)> = [
        (ProblemKind::UnfinishedTransaction, record_path.clone()),
        (ProblemKind::StaleLock, layout.ref_lock_path(&ns, &a)),
        (ProblemKind::StaleLock, layout.ref_lock_path(&ns, &b)),
    ]
    .into();
    assert_eq!(found, expected);
    assert!(!report.is_clean());
    let out = cli(store.root(), &["verify"]);
    assert_eq!(code(&out), 3, "{}", stdout(&out));

    let repaired = verify::verify(&store, repair_options(), &|_| {}).unwrap();
    assert!(
        repaired.unrepaired().next().is_none(),
        "{:#?}",
        repaired.problems
    );
    assert_eq!(store.read_ref(&ns, &a).unwrap(), Some(new_a));
    assert_eq!(store.read_ref(&ns, &b).unwrap(), Some(new_b));
    let last = store.reflog(&ns, &b).unwrap().entries.pop().unwrap();
    assert_eq!((last.old, last.new), (Some(old_b), Some(new_b)));
    assert!(!record_path.exists());
    let again = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(again.problems.is_empty(), "{:#?}", again.problems);
}

/// A reflog line caught half-appended (a writer holds the ref's lock and has
/// written only part of it) is not reported as damage: verify waits for the
/// lock to be free and reads the reflog again. Without the lock held, the
/// same torn line is reported.
#[test]
fn a_reflog_line_half_appended_under_its_ref_lock_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), StoreOptions::default().loose()).unwrap();
    let ns = Namespace::new("rask-1.0").unwrap();
    let pkg = PackageName::new("pkg").unwrap();
    let first = store.put_object(Kind::Blob, &[], b"first").unwrap();
    let second = store.put_object(Kind::Blob, &[], b"second").unwrap();
    store
        .update_ref(&ns, &pkg, Expect::Absent, first, "one")
        .unwrap();
    let layout = store.layout();
    let log = layout.reflog_path(&ns, &pkg);
    let line = rask_store::refs::reflog_line(&rask_store::refs::ReflogEntry {
        old: Some(first),
        new: Some(second),
        time: 1,
        message: "two".into(),
    });
    let (head, tail) = line.split_at(line.len() / 2);

    // A writer in the middle of its append: lock held, half the line written.
    let lock_path = layout.ref_lock_path(&ns, &pkg);
    let lock = fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    append(&log, head);
    let writer = {
        let (log, tail) = (log.clone(), tail.to_string());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            append(&log, &tail);
            fs::remove_file(&lock_path).unwrap();
            drop(lock);
        })
    };
    let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    writer.join().unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(store.reflog(&ns, &pkg).unwrap().entries.len(), 2);

    // The same half line with nobody appending is a torn append.
    append(&log, head);
    let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    let kinds: Vec<_> = report.problems.iter().map(|p| (p.kind, &p.path)).collect();
    assert_eq!(kinds, vec![(ProblemKind::DamagedReflogLine, &log)]);
}

fn append(path: &Path, text: &str) {
    append_bytes(path, text.as_bytes());
}

/// The same for the index journal: a record caught half-written while a
/// writer holds the journal's append lock is not damage; left torn with
/// nobody appending, it is.
#[test]
fn a_journal_record_half_appended_under_the_append_lock_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), StoreOptions::default().loose()).unwrap();
    let ns = Namespace::new("rask-1.0").unwrap();
    let index = Index::open(&store).unwrap();
    index
        .put(&store, &key(&ns, 0), Kind::Blob, &[("v", b"zero")])
        .unwrap();
    let journal = index.stats().unwrap().journal_path;
    // The bytes one more put appends: a whole record, cut from the journal.
    let before = fs::metadata(&journal).unwrap().len() as usize;
    index
        .put(&store, &key(&ns, 1), Kind::Blob, &[("v", b"one")])
        .unwrap();
    let bytes = fs::read(&journal).unwrap();
    let record = bytes[before..].to_vec();
    fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(before as u64)
        .unwrap();
    let (head, tail) = record.split_at(record.len() / 2);

    let writer_fd = fs::OpenOptions::new().append(true).open(&journal).unwrap();
    writer_fd.lock_shared().unwrap();
    append_bytes(&journal, head);
    let writer = {
        let (journal, tail) = (journal.clone(), tail.to_vec());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            append_bytes(&journal, &tail);
            drop(writer_fd);
        })
    };
    let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    writer.join().unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.entries, 2);

    append_bytes(&journal, head);
    let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    let kinds: Vec<_> = report.problems.iter().map(|p| (p.kind, &p.path)).collect();
    assert_eq!(kinds, vec![(ProblemKind::DamagedIndexFile, &journal)]);
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}
