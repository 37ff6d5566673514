//! kill -9 of writers and of gc at many points: mid-object put, mid-journal
//! append, mid-compaction, mid-ref update and mid-transaction, mid-gc.
//! Afterwards the store always reopens, nothing a published ref reaches is
//! lost, and `verify --repair` leaves it clean.
//!
//! Each round starts a writer child (and, every other round, a gc child with
//! no grace period) by re-running this test binary, and kills it after a
//! short delay drawn from a seeded generator: the runs are reproducible in
//! what they attempt, while where exactly each kill lands varies.

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rask_store::gc::{self, GcPolicy};
use rask_store::object::compute_id;
use rask_store::refs::{Expect, RefUpdate};
use rask_store::verify::{self, ProblemKind, RepairMode, VerifyOptions};
use rask_store::{
    Component, Durability, Index, Key, Kind, Namespace, ObjectId, PackageName, Store, StoreOptions,
};

const ROUNDS: u64 = 120;
const PACKAGES: usize = 3;
/// A child gives up after this long even if nobody kills it.
const CHILD_LIMIT: Duration = Duration::from_secs(10);

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn ns() -> Namespace {
    Namespace::new("rask-1.0").unwrap()
}

fn key(name: &str) -> Key {
    Key::new(ns(), vec![Component::str("instance"), Component::str(name)]).unwrap()
}

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// One build of every package: leaves and entries first, pinned before they
/// are written, then the roots, then all refs in one transaction (or one
/// ref alone).
fn build(store: &Store, index: &Index, rng: &mut Rng, tag: &str) {
    let mut pinned: Vec<ObjectId> = Vec::new();
    let mut plan = Vec::new();
    for p in 0..PACKAGES {
        let leaves: Vec<Vec<u8>> = (0..4).map(|l| payload(rng.next(), 200 + l * 300)).collect();
        let leaf_ids: Vec<ObjectId> = leaves
            .iter()
            .map(|b| compute_id(Kind::Ast, &[], b))
            .collect();
        let root = format!("{tag} pkg{p}").into_bytes();
        let root_id = compute_id(Kind::Root, &leaf_ids, &root);
        pinned.extend(&leaf_ids);
        pinned.push(root_id);
        plan.push((leaves, leaf_ids, root, root_id));
    }
    let entries: Vec<Vec<u8>> = (0..8).map(|_| payload(rng.next(), 500)).collect();
    pinned.extend(entries.iter().map(|b| compute_id(Kind::Instance, &[], b)));
    let pin = store.pin(&pinned).unwrap();
    for (i, bytes) in entries.iter().enumerate() {
        index
            .put(
                store,
                &key(&format!("{tag}-{i}")),
                Kind::Instance,
                &[("ast", bytes)],
            )
            .unwrap();
    }
    let mut updates = Vec::new();
    for (p, (leaves, leaf_ids, root, root_id)) in plan.iter().enumerate() {
        for leaf in leaves {
            store.put_object(Kind::Ast, &[], leaf).unwrap();
        }
        store.put_object(Kind::Root, leaf_ids, root).unwrap();
        let pkg = PackageName::new(format!("pkg{p}")).unwrap();
        updates.push(RefUpdate::set(ns(), pkg, Expect::Any, *root_id));
    }
    if rng.below(3) == 0 {
        let one = updates.swap_remove(rng.below(PACKAGES as u64) as usize);
        store
            .update_ref(
                &one.namespace,
                &one.package,
                Expect::Any,
                one.new.unwrap(),
                tag,
            )
            .unwrap();
    } else {
        store.update_refs(&updates, tag).unwrap();
    }
    drop(pin);
}

/// The child process: a writer or gc, looping until killed.
#[test]
#[ignore = "run as a child process by kill_9_at_many_points_never_loses_what_refs_reach"]
fn crash_child() {
    let Ok(root) = std::env::var("RASK_CRASH_STORE") else {
        return;
    };
    let role = std::env::var("RASK_CRASH_ROLE").unwrap();
    let seed: u64 = std::env::var("RASK_CRASH_SEED").unwrap().parse().unwrap();
    // Full durability in some runs: its syncs widen the windows between the
    // steps of a transaction and of a compaction, where kills then land.
    let options = match seed % 3 {
        0 => StoreOptions::with_durability(Durability::Full),
        _ => StoreOptions::default(),
    };
    let limit = std::env::var("RASK_CRASH_SECONDS")
        .map_or(CHILD_LIMIT, |s| Duration::from_secs(s.parse().unwrap()));
    let store = Store::open(&root, options).unwrap();
    let index = Index::open(&store).unwrap();
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut n = 0u64;
    while started.elapsed() < limit {
        n += 1;
        if role == "gc" {
            let mut policy = GcPolicy::default();
            policy.objects.grace = Duration::ZERO;
            policy.reflog_keep = Duration::ZERO;
            gc::collect(&store, &index, policy, &|_| {}).unwrap();
            continue;
        }
        match rng.below(4) {
            // A large object (several writes), left unreferenced.
            0 => {
                let big = payload(rng.next(), 256 << 10);
                store.put_object(Kind::Blob, &[], &big).unwrap();
            }
            // Journal appends (their parts pinned first), then a compaction.
            1 => {
                let parts: Vec<Vec<u8>> = (0..20).map(|_| payload(rng.next(), 100)).collect();
                let ids: Vec<ObjectId> = parts
                    .iter()
                    .map(|b| compute_id(Kind::Instance, &[], b))
                    .collect();
                let pin = store.pin(&ids).unwrap();
                for (i, bytes) in parts.iter().enumerate() {
                    let key = key(&format!("{seed}-{n}-{i}"));
                    index
                        .put(&store, &key, Kind::Instance, &[("ast", bytes)])
                        .unwrap();
                }
                drop(pin);
                index.compact().unwrap();
            }
            _ => build(&store, &index, &mut rng, &format!("{seed}-{n}")),
        }
    }
}

fn spawn(root: &std::path::Path, role: &str, seed: u64) -> Child {
    spawn_for(root, role, seed, CHILD_LIMIT)
}

fn spawn_for(root: &std::path::Path, role: &str, seed: u64, limit: Duration) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--test-threads=1",
            "--quiet",
        ])
        .env("RASK_CRASH_STORE", root)
        .env("RASK_CRASH_ROLE", role)
        .env("RASK_CRASH_SEED", seed.to_string())
        .env("RASK_CRASH_SECONDS", limit.as_secs().to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Kinds a kill -9 may leave behind (all repairable): a torn journal tail, a
/// transaction cut short, gc cut short among garbage it had started to
/// delete, and litter (including a compaction's unnamed index files). Anything else would be a bug.
fn allowed_after_a_crash(kind: ProblemKind) -> bool {
    matches!(
        kind,
        ProblemKind::DamagedIndexFile
            | ProblemKind::DamagedReflogLine
            | ProblemKind::UnfinishedTransaction
            | ProblemKind::DanglingLink
            | ProblemKind::StaleLock
            | ProblemKind::DeadPin
            | ProblemKind::LeftoverIndexFile
            | ProblemKind::PackLeftover
    )
}

/// Every object a ref reaches can be read and verifies.
fn assert_ref_closures(store: &Store) -> BTreeMap<String, ObjectId> {
    let mut refs = BTreeMap::new();
    for (pkg, head) in store.list_refs(&ns()).unwrap() {
        let mut todo = vec![head];
        while let Some(id) = todo.pop() {
            let object = store
                .get_object(&id)
                .unwrap_or_else(|e| panic!("ref {pkg} reaches {id}: {e}"));
            todo.extend_from_slice(object.links());
        }
        refs.insert(pkg.to_string(), head);
    }
    refs
}

#[test]
fn kill_9_at_many_points_never_loses_what_refs_reach() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    {
        let store = Store::create(&root, StoreOptions::default()).unwrap();
        let index = Index::open(&store).unwrap();
        let mut rng = Rng::new(1);
        while store.list_refs(&ns()).unwrap().len() < PACKAGES {
            build(&store, &index, &mut rng, "initial");
        }
    }
    let mut rng = Rng::new(0xC0FFEE);
    let mut seen: BTreeMap<&'static str, u32> = BTreeMap::new();
    for round in 0..ROUNDS {
        let mut writer = spawn(&root, "writer", 1000 + round);
        let gc = (round % 2 == 1).then(|| spawn(&root, "gc", 5000 + round));
        std::thread::sleep(Duration::from_millis(5 + rng.below(120)));
        writer.kill().unwrap();
        writer.wait().unwrap();
        if let Some(mut gc) = gc {
            std::thread::sleep(Duration::from_millis(rng.below(30)));
            gc.kill().unwrap();
            gc.wait().unwrap();
        }

        let store = Store::open(&root, StoreOptions::default()).expect("the store reopens");
        Index::open(&store).expect("the index reopens");
        let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
        for p in &report.problems {
            assert!(
                allowed_after_a_crash(p.kind),
                "round {round}: {} {}: {}",
                p.kind.name(),
                p.path.display(),
                p.detail
            );
            *seen.entry(p.kind.name()).or_default() += 1;
        }
        let before = assert_ref_closures(&store);
        assert_eq!(before.len(), PACKAGES, "round {round}");

        let mut options = VerifyOptions::default();
        options.repair = RepairMode::Repair;
        let repaired = verify::verify(&store, options, &|_| {}).unwrap();
        let left: Vec<_> = repaired.damage_left().collect();
        assert!(left.is_empty(), "round {round}: {left:#?}");
        let again = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
        assert!(
            again.problems.is_empty(),
            "round {round}: {:#?}",
            again.problems
        );
        // Repair retired no ref: every published ref is still there, whole.
        let after = assert_ref_closures(&store);
        assert_eq!(after.len(), PACKAGES, "round {round}");
        for (pkg, head) in &before {
            // A completed transaction may have moved a ref on, never back.
            if after[pkg] != *head {
                assert!(
                    store
                        .reflog(&ns(), &PackageName::new(pkg.as_str()).unwrap())
                        .unwrap()
                        .entries
                        .last()
                        .is_some_and(|e| e.old == Some(*head) && e.new == Some(after[pkg])),
                    "round {round}: {pkg} moved from {head} to {}",
                    after[pkg]
                );
            }
        }
    }
    // Which leftovers the kills produced (varies with timing; not asserted).
    eprintln!("problems found after kills, by kind: {seen:?}");
}

/// verify running beside two writers and gc reports no damage: everything
/// that may just have been written (or just removed) is re-checked first.
#[test]
fn verify_beside_writers_and_gc_reports_no_false_damage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    {
        let store = Store::create(&root, StoreOptions::default()).unwrap();
        let index = Index::open(&store).unwrap();
        build(&store, &index, &mut Rng::new(2), "initial");
    }
    let limit = Duration::from_secs(3);
    let mut children = vec![
        spawn_for(&root, "writer", 7001, limit),
        spawn_for(&root, "writer", 7002, limit),
        spawn_for(&root, "gc", 7003, limit),
    ];
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let mut runs = 0;
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
        let damage: Vec<_> = report.damage_left().collect();
        assert!(damage.is_empty(), "run {runs}: {damage:#?}");
        runs += 1;
    }
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a child failed");
    }
    assert!(runs > 0);
    let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_ref_closures(&store);
}
