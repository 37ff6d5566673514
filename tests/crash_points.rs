//! Every fault point (`rask_store::fault`), reached on purpose through the
//! CLI's hidden `--fault-point`: the command dies there as kill -9 would
//! (abort: no destructor, no flush). Then the store reopens, every lookup
//! answers correctly, nothing a published ref reaches is lost, verify
//! reports exactly what that step leaves behind, and `verify --repair`
//! leaves the store clean.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use common::{cli, code, files_under, pseudo_random, stderr, stdout};
use rask_store::object::compute_id;
use rask_store::verify::{self, Problem, ProblemKind, VerifyOptions};
use rask_store::{
    Component, Durability, Error, Expect, Index, Key, Kind, MissCause, Namespace, ObjectId,
    PackageName, Store, StoreOptions,
};

const NS: &str = "crash-points";
const PACKAGES: [&str; 3] = ["core", "io", "std"];
const ENTRIES: usize = 12;
const SIGABRT: i32 = 6;

fn ns() -> Namespace {
    Namespace::new(NS).unwrap()
}

fn pkg(name: &str) -> PackageName {
    PackageName::new(name).unwrap()
}

fn key(name: &str) -> Key {
    Key::new(ns(), vec![Component::str("instance"), Component::str(name)]).unwrap()
}

/// What the store held before the crash; all of it must survive.
struct Model {
    /// Every object a ref or an entry reaches, with its payload.
    objects: BTreeMap<ObjectId, Vec<u8>>,
    /// Every entry's key and the bytes of its one part, `ast`.
    entries: Vec<(Key, Vec<u8>)>,
    /// Every ref of `NS`.
    refs: BTreeMap<&'static str, ObjectId>,
}

/// A store with three published packages (a root linking three leaves
/// each) and twelve entries, half in a segment and half in the journal,
/// all in loose files, and configured to stay so: the fault points below
/// are those of the loose layout (the pack points have their own test).
fn seeded(root: &Path) -> Model {
    let model = seeded_with(
        root,
        StoreOptions::with_durability(Durability::None).loose(),
    );
    let out = cli(root, &["config", "objects.pack-max", "0"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    model
}

fn seeded_with(root: &Path, options: StoreOptions) -> Model {
    let store = Store::create(root, options).unwrap();
    let index = Index::open(&store).unwrap();
    let mut model = Model {
        objects: BTreeMap::new(),
        entries: Vec::new(),
        refs: BTreeMap::new(),
    };
    for (p, name) in PACKAGES.into_iter().enumerate() {
        let mut leaves = Vec::new();
        for l in 0..3 {
            let bytes = pseudo_random(300 + 100 * l, (p * 10 + l) as u64);
            let id = store.put_object(Kind::Ast, &[], &bytes).unwrap();
            model.objects.insert(id, bytes);
            leaves.push(id);
        }
        let bytes = format!("{name} root").into_bytes();
        let head = store.put_object(Kind::Root, &leaves, &bytes).unwrap();
        model.objects.insert(head, bytes);
        store
            .update_ref(&ns(), &pkg(name), Expect::Absent, head, "seed")
            .unwrap();
        model.refs.insert(name, head);
    }
    for i in 0..ENTRIES {
        let bytes = pseudo_random(200, 100 + i as u64);
        let k = key(&format!("k{i}"));
        index
            .put(&store, &k, Kind::Instance, &[("ast", bytes.as_slice())])
            .unwrap();
        model
            .objects
            .insert(compute_id(Kind::Instance, &[], &bytes), bytes.clone());
        model.entries.push((k, bytes));
        if i == ENTRIES / 2 {
            index.compact().unwrap();
        }
    }
    index.flush().unwrap();
    store.flush().unwrap();
    model
}

/// Runs the CLI with `spec` armed and checks that it died at that point.
fn die_at(root: &Path, spec: &str, args: &[&str]) -> Output {
    let mut full = vec!["--fault-point", spec];
    full.extend_from_slice(args);
    let out = cli(root, &full);
    let name = spec.split(':').next().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(SIGABRT),
        "{spec}: {args:?} was expected to die there; status {:?}, stderr: {}",
        out.status,
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("fault point {name} reached")),
        "{spec}: {}",
        stderr(&out)
    );
    out
}

fn open(root: &Path, when: &str) -> (Store, Index) {
    open_with(
        root,
        when,
        StoreOptions::with_durability(Durability::None).loose(),
    )
}

fn open_with(root: &Path, when: &str, options: StoreOptions) -> (Store, Index) {
    let store = Store::open(root, options)
        .unwrap_or_else(|e| panic!("{when}: the store does not reopen: {e}"));
    let index = Index::open(&store).unwrap_or_else(|e| panic!("{when}: the index: {e}"));
    (store, index)
}

/// Every object, entry and ref of the model reads back exactly.
fn assert_intact(root: &Path, model: &Model, when: &str) {
    let (store, index) = open(root, when);
    for (id, bytes) in &model.objects {
        let object = store
            .get_object(id)
            .unwrap_or_else(|e| panic!("{when}: object {id}: {e}"));
        assert_eq!(object.payload(), &bytes[..], "{when}: object {id}");
    }
    for (k, bytes) in &model.entries {
        let got = index.get(&store, k, "ast").unwrap();
        assert_eq!(got.hit().as_deref(), Some(&bytes[..]), "{when}: {k:?}");
    }
    for (name, head) in &model.refs {
        assert_eq!(
            store.read_ref(&ns(), &pkg(name)).unwrap(),
            Some(*head),
            "{when}: ref {name}"
        );
    }
}

/// What verify (report only) finds.
fn problems(root: &Path) -> Vec<Problem> {
    let (store, _) = open(root, "verify");
    verify::verify(&store, VerifyOptions::default(), &|_| {})
        .unwrap()
        .problems
}

fn kinds(problems: &[Problem]) -> BTreeMap<ProblemKind, usize> {
    let mut kinds = BTreeMap::new();
    for p in problems {
        *kinds.entry(p.kind).or_default() += 1;
    }
    kinds
}

/// `verify --repair` exits 0, and a verify afterwards finds nothing at all.
fn repair_leaves_it_clean(root: &Path, when: &str) {
    let repaired = cli(root, &["verify", "--repair"]);
    assert_eq!(code(&repaired), 0, "{when}: {}", stdout(&repaired));
    let again = cli(root, &["verify", "--json"]);
    assert_eq!(code(&again), 0, "{when}: {}", stdout(&again));
    assert!(
        stdout(&again).contains("\"problems\":[]"),
        "{when}: {}",
        stdout(&again)
    );
}

fn index_files(root: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(root.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("seg-") || name.starts_with("journal-")
        })
        .collect()
}

#[test]
fn object_write_leaves_only_a_temp_file_that_gc_removes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let model = seeded(&root);
    let file = dir.path().join("big");
    let bytes = pseudo_random(300 << 10, 7);
    fs::write(&file, &bytes).unwrap();

    die_at(&root, "object-write", &["put", file.to_str().unwrap()]);
    let temps: Vec<PathBuf> = files_under(&root.join("tmp"));
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert!(fs::metadata(&temps[0]).unwrap().len() < bytes.len() as u64);
    let id = compute_id(Kind::Blob, &[], &bytes);
    {
        let (store, _) = open(&root, "object-write");
        assert!(matches!(store.get_object(&id), Err(Error::NotFound { .. })));
    }
    assert_intact(&root, &model, "object-write");
    // A temp file is not part of the store: nothing to report.
    assert_eq!(problems(&root), Vec::new());

    // gc removes it once it is old enough to belong to no write in flight.
    let old = SystemTime::now() - Duration::from_secs(2 * 60 * 60);
    fs::File::options()
        .write(true)
        .open(&temps[0])
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(code(&cli(&root, &["gc"])), 0);
    assert_eq!(files_under(&root.join("tmp")), Vec::<PathBuf>::new());

    // The same put now succeeds, and reads back whole.
    let out = cli(&root, &["put", file.to_str().unwrap()]);
    assert_eq!(stdout(&out).trim(), id.to_string());
    let got = cli(&root, &["get", &id.to_string()]);
    assert_eq!(got.stdout, bytes);

    // The in-memory put path (used by builds) dies the same way.
    die_at(
        &root,
        "object-write",
        &["--durability", "none", "simulate", "--scale", "S"],
    );
    assert_intact(&root, &model, "object-write in a build");
    assert_eq!(problems(&root), Vec::new());
    repair_leaves_it_clean(&root, "object-write");
    assert_intact(&root, &model, "object-write, repaired");
}

#[test]
fn a_torn_journal_record_is_reported_and_dropped_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let model = seeded(&root);
    let part = dir.path().join("part");
    let bytes = pseudo_random(500, 99);
    fs::write(&part, &bytes).unwrap();
    let part_arg = format!("ast={}", part.display());
    let put = [
        "entry", "put", "--kind", "instance", "--part", &part_arg, "--ns", NS, "instance", "new",
    ];

    die_at(&root, "journal-append", &put);
    let found = problems(&root);
    assert_eq!(
        kinds(&found),
        BTreeMap::from([(ProblemKind::DamagedIndexFile, 1)]),
        "{found:#?}"
    );
    assert!(found[0].detail.contains("torn append"), "{found:#?}");
    assert_intact(&root, &model, "journal-append");
    {
        // The torn record is never read as an entry.
        let (_, index) = open(&root, "journal-append");
        let miss = index.lookup(&key("new")).unwrap().miss_cause();
        assert_eq!(miss, Some(MissCause::Absent));
    }
    repair_leaves_it_clean(&root, "journal-append");
    assert_intact(&root, &model, "journal-append, repaired");

    // The same put now lands, and reads back.
    assert_eq!(code(&cli(&root, &put)), 0);
    let get = cli(&root, &["entry", "get", "--ns", NS, "instance", "new"]);
    assert_eq!(get.stdout, bytes);
}

#[test]
fn a_compaction_cut_before_or_after_its_manifest_leaves_only_litter() {
    for point in ["compact-segment-written", "compact-manifest-switched"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let model = seeded(&root);
        let before = index_files(&root);
        assert_eq!(before.len(), 2, "one segment and one journal: {before:?}");

        die_at(&root, point, &["index", "compact"]);
        let after = index_files(&root);
        let leftover: BTreeSet<PathBuf> = if point == "compact-segment-written" {
            // The new segment and journal, which no manifest names yet.
            after.difference(&before).cloned().collect()
        } else {
            // The replaced segment and journal, not yet removed.
            before.clone()
        };
        assert_eq!(leftover.len(), 2, "{point}: {after:?}");
        let found = problems(&root);
        assert!(
            found
                .iter()
                .all(|p| p.kind == ProblemKind::LeftoverIndexFile),
            "{point}: {found:#?}"
        );
        let paths: BTreeSet<PathBuf> = found.iter().map(|p| p.path.clone()).collect();
        assert_eq!(paths, leftover, "{point}");
        // Litter, not damage: verify exits 0.
        assert_eq!(code(&cli(&root, &["verify"])), 0, "{point}");
        assert_intact(&root, &model, point);

        // The index keeps working: an entry put now is found.
        let part = dir.path().join("part");
        fs::write(&part, b"after the crash").unwrap();
        let part_arg = format!("ast={}", part.display());
        let put = ["entry", "put", "--part", &part_arg, "--ns", NS, "later"];
        assert_eq!(code(&cli(&root, &put)), 0, "{point}");

        repair_leaves_it_clean(&root, point);
        let now = index_files(&root);
        assert!(now.is_disjoint(&leftover) || point == "compact-segment-written");
        assert_eq!(now.len(), 2, "{point}: {now:?}");
        assert_intact(&root, &model, point);
        let get = cli(&root, &["entry", "get", "--ns", NS, "later"]);
        assert_eq!(get.stdout, b"after the crash", "{point}");
        assert_eq!(code(&cli(&root, &["index", "compact"])), 0, "{point}");
    }
}

#[test]
fn a_ref_update_cut_after_its_reflog_line_keeps_the_old_value() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let model = seeded(&root);
    let old = model.refs["core"];
    let new = {
        let (store, _) = open(&root, "setup");
        store.put_object(Kind::Root, &[old], b"core next").unwrap()
    };
    let set = [
        "ref",
        "set",
        "--ns",
        NS,
        "core",
        &new.to_string(),
        "--expect",
        &old.to_string(),
    ];

    die_at(&root, "ref-reflog-written", &set);
    let found = problems(&root);
    assert_eq!(
        kinds(&found),
        BTreeMap::from([(ProblemKind::StaleLock, 1)]),
        "{found:#?}"
    );
    assert_eq!(found[0].path, root.join("refs").join(NS).join(".core.lock"));
    assert_intact(&root, &model, "ref-reflog-written");
    {
        // The reflog names the update that did not happen; the ref does not.
        let (store, _) = open(&root, "ref-reflog-written");
        let last = store.reflog(&ns(), &pkg("core")).unwrap().entries;
        assert_eq!(last.last().unwrap().new, Some(new));
    }
    repair_leaves_it_clean(&root, "ref-reflog-written");
    assert_intact(&root, &model, "ref-reflog-written, repaired");

    // The compare-and-swap against the old value now goes through.
    assert_eq!(code(&cli(&root, &set)), 0);
    let (store, _) = open(&root, "ref set again");
    assert_eq!(store.read_ref(&ns(), &pkg("core")).unwrap(), Some(new));
}

/// Every ref of every namespace but `NS`, with its closure read in full.
fn build_refs(store: &Store) -> Vec<(String, ObjectId)> {
    let mut refs = Vec::new();
    for namespace in store.list_namespaces().unwrap() {
        if namespace == ns() {
            continue;
        }
        for (package, head) in store.list_refs(&namespace).unwrap() {
            let mut todo = vec![head];
            while let Some(id) = todo.pop() {
                let object = store
                    .get_object(&id)
                    .unwrap_or_else(|e| panic!("{namespace}/{package} reaches {id}: {e}"));
                todo.extend_from_slice(object.links());
            }
            refs.push((format!("{namespace}/{package}"), head));
        }
    }
    refs
}

#[test]
fn a_transaction_cut_after_one_ref_is_rolled_forward_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let model = seeded(&root);

    // A build publishes its two packages in one transaction; it dies with
    // one ref applied.
    die_at(
        &root,
        "txn-ref-applied:1",
        &["--durability", "none", "simulate", "--scale", "S"],
    );
    let found = problems(&root);
    let mut found_kinds = kinds(&found);
    found_kinds.remove(&ProblemKind::DeadPin); // the build's pins
    assert_eq!(
        found_kinds,
        BTreeMap::from([
            (ProblemKind::UnfinishedTransaction, 1),
            (ProblemKind::StaleLock, 2),
        ]),
        "{found:#?}"
    );
    {
        let (store, _) = open(&root, "txn-ref-applied");
        assert_eq!(build_refs(&store).len(), 1, "one ref applied");
    }
    assert_intact(&root, &model, "txn-ref-applied");

    repair_leaves_it_clean(&root, "txn-ref-applied");
    assert_intact(&root, &model, "txn-ref-applied, repaired");
    let (store, _) = open(&root, "txn-ref-applied, repaired");
    assert_eq!(build_refs(&store).len(), 2, "the transaction is whole");
}

#[test]
fn a_gc_cut_mid_sweep_leaves_garbage_that_repair_quarantines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let model = seeded(&root);
    // Unreachable garbage: a chain, each object linking the one before.
    let mut garbage: Vec<ObjectId> = Vec::new();
    {
        let (store, _) = open(&root, "setup");
        for i in 0..16u64 {
            let links: Vec<ObjectId> = garbage.last().copied().into_iter().collect();
            let id = store
                .put_object(Kind::Blob, &links, &pseudo_random(64, 1000 + i))
                .unwrap();
            garbage.push(id);
        }
    }

    let object_files = || files_under(&root.join("objects")).len() as i64;
    let counted = |store: &Store| -> i64 {
        let stats = store.stats().unwrap();
        stats.kinds.values().map(|k| k.objects).sum()
    };
    {
        let (store, _) = open(&root, "before gc");
        assert_eq!(counted(&store), object_files(), "stats match the disk");
    }

    die_at(
        &root,
        "gc-object-removed:8",
        &["gc", "--grace", "0", "--force"],
    );
    let (store, _) = open(&root, "gc-object-removed");
    let present: Vec<bool> = garbage
        .iter()
        .map(|id| store.contains_object(id).unwrap())
        .collect();
    assert_eq!(
        present.iter().filter(|p| !**p).count(),
        8,
        "died after 8 removals"
    );
    // gc sweeps fanout directories in order and records its removals after
    // each one: only the directory it died in is missing from the stats.
    let removed: Vec<&ObjectId> = garbage
        .iter()
        .zip(&present)
        .filter(|(_, p)| !**p)
        .map(|(id, _)| id)
        .collect();
    let last_dir = removed.iter().map(|id| id.as_bytes()[0]).max().unwrap();
    let unrecorded = removed
        .iter()
        .filter(|id| id.as_bytes()[0] == last_dir)
        .count() as i64;
    assert_eq!(counted(&store), object_files() + unrecorded);
    // Garbage whose link target gc removed is reported; nothing else is.
    let expected: BTreeSet<PathBuf> = (1..garbage.len())
        .filter(|&i| present[i] && !present[i - 1])
        .map(|i| store.object_path(&garbage[i]))
        .collect();
    let found = problems(&root);
    assert!(
        found.iter().all(|p| p.kind == ProblemKind::DanglingLink),
        "{found:#?}"
    );
    let paths: BTreeSet<PathBuf> = found.iter().map(|p| p.path.clone()).collect();
    assert_eq!(paths, expected);
    assert_intact(&root, &model, "gc-object-removed");

    repair_leaves_it_clean(&root, "gc-object-removed");
    assert_intact(&root, &model, "gc-object-removed, repaired");
    // The next gc finishes the job.
    assert_eq!(code(&cli(&root, &["gc", "--grace", "0", "--force"])), 0);
    for id in &garbage {
        assert!(!store.contains_object(id).unwrap(), "{id} survived gc");
    }
    assert_intact(&root, &model, "gc after repair");
}

#[test]
fn an_unknown_fault_point_is_a_usage_error_that_lists_the_points() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let out = cli(&root, &["--fault-point", "mid-nothing", "init"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("journal-append"), "{}", stderr(&out));
    assert!(!root.exists(), "nothing ran");
    // Hidden: not in the help.
    let help = cli(&root, &["--help"]);
    assert!(!stdout(&help).contains("fault-point"), "{}", stdout(&help));
}

#[test]
fn the_environment_arms_a_point_too() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let model = seeded(&root);
    let new = {
        let (store, _) = open(&root, "setup");
        store.put_object(Kind::Root, &[], b"io next").unwrap()
    };
    let out = std::process::Command::new(common::bin())
        .arg("--store")
        .arg(&root)
        .args(["ref", "set", "--ns", NS, "io", &new.to_string()])
        .env("RASK_STORE_FAULT", "txn-ref-applied")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(SIGABRT), "{}", stderr(&out));
    assert!(stderr(&out).contains("fault point txn-ref-applied reached"));
    // A single update dies after its rename: the new value is in place, and
    // only its lock file is left.
    let found = problems(&root);
    assert_eq!(kinds(&found), BTreeMap::from([(ProblemKind::StaleLock, 1)]));
    let (store, _) = open(&root, "env");
    assert_eq!(store.read_ref(&ns(), &pkg("io")).unwrap(), Some(new));
    drop(store);
    repair_leaves_it_clean(&root, "env");
    let mut model = model;
    model.refs.insert("io", new);
    model.objects.insert(new, b"io next".to_vec());
    assert_intact(&root, &model, "env");
}

/// The pack fault points, through a packed store: a `put` killed while it
/// makes its pack (data file made, index not yet in place), after an
/// object's bytes (no record yet), and halfway through a record; and a gc
/// killed between removing a rewritten pack's index and its data file.
/// Each time everything published survives, the object being put is
/// absent, verify finds no damage, and the same put then succeeds.
#[test]
fn a_packed_put_or_gc_killed_at_each_pack_step_loses_nothing_published() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let packed = StoreOptions::with_durability(Durability::None);
    let model = seeded_with(&root, packed);
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    for (n, point) in [
        "pack-index-publish",
        "pack-object-written",
        "pack-record-append",
    ]
    .into_iter()
    .enumerate()
    {
        let bytes = pseudo_random(700 + n, 500 + n as u64);
        let more = pseudo_random(900 + n, 600 + n as u64);
        fs::write(&first, &bytes).unwrap();
        fs::write(&second, &more).unwrap();
        let id = compute_id(Kind::Blob, &[], &bytes);
        // The first object of this process makes its pack; the second
        // appends to it. `pack-index-publish` dies in the first, the append
        // points in the second (their first arrival is the first object).
        let spec = if point == "pack-index-publish" {
            point.to_string()
        } else {
            format!("{point}:2")
        };
        die_at(
            &root,
            &spec,
            &["put", first.to_str().unwrap(), second.to_str().unwrap()],
        );
        assert_intact(&root, &model, point);
        {
            let (store, _) = open_with(&root, point, packed);
            let lost = compute_id(Kind::Blob, &[], &more);
            assert!(
                matches!(store.get_object(&lost), Err(Error::NotFound { .. })),
                "{point}: the object being appended is absent"
            );
            if point == "pack-index-publish" {
                assert!(matches!(store.get_object(&id), Err(Error::NotFound { .. })));
            } else {
                assert_eq!(store.get_object(&id).unwrap().payload(), &bytes[..]);
            }
        }
        let found = problems(&root);
        assert!(
            found.iter().all(|p| p.kind.is_litter()),
            "{point}: {found:?}"
        );
        let out = cli(
            &root,
            &["put", first.to_str().unwrap(), second.to_str().unwrap()],
        );
        assert_eq!(code(&out), 0, "{point}: {}", stderr(&out));
        let got = cli(&root, &["get", &id.to_string()]);
        assert_eq!(got.stdout, bytes, "{point}: put again");
    }

    // gc rewrites the packs (their live share fell, and they are small)
    // and dies between one old pack's index and its data file.
    die_at(
        &root,
        "gc-object-removed",
        &["gc", "--grace", "0", "--force"],
    );
    assert_intact(&root, &model, "gc killed mid-removal");
    let found = problems(&root);
    assert!(
        found.iter().all(|p| p.kind.is_litter()),
        "gc killed mid-removal: {found:?}"
    );
    repair_leaves_it_clean(&root, "pack points");
    assert_intact(&root, &model, "pack points, repaired");
    assert_eq!(code(&cli(&root, &["gc", "--grace", "0", "--force"])), 0);
    assert_intact(&root, &model, "pack points, collected");
    assert_eq!(problems(&root), Vec::new());
}
