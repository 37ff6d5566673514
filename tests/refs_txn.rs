//! Multi-ref transactions: all-or-nothing, and completed after a crash.

use std::fs::{self, File};
use std::path::Path;

use rask_store::refs::ABSENT_HEX;
use rask_store::{
    Error, Expect, Kind, Namespace, ObjectId, PackageName, RefUpdate, Store, StoreOptions,
};

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

fn pkg(name: &str) -> PackageName {
    PackageName::new(name).unwrap()
}

fn object(store: &Store, text: &str) -> ObjectId {
    store.put_object(Kind::Meta, &[], text.as_bytes()).unwrap()
}

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("store"), StoreOptions::default()).unwrap();
    (dir, store)
}

#[test]
fn one_failed_expectation_changes_no_ref() {
    let (_dir, store) = new_store();
    let n = ns("rask-1");
    let (a0, b0, a1, b1, c1) = (
        object(&store, "a0"),
        object(&store, "b0"),
        object(&store, "a1"),
        object(&store, "b1"),
        object(&store, "c1"),
    );
    store
        .update_refs(
            &[
                RefUpdate::set(n.clone(), pkg("a"), Expect::Absent, a0),
                RefUpdate::set(n.clone(), pkg("b"), Expect::Absent, b0),
            ],
            "first build",
        )
        .unwrap();

    // `c` expects to exist but does not: neither `a` nor `b` may move.
    let build = |c_expect| {
        vec![
            RefUpdate::set(n.clone(), pkg("b"), Expect::Value(b0), b1),
            RefUpdate::set(n.clone(), pkg("c"), c_expect, c1),
            RefUpdate::set(n.clone(), pkg("a"), Expect::Value(a0), a1),
        ]
    };
    let err = store
        .update_refs(&build(Expect::Value(a0)), "second build")
        .unwrap_err();
    match &err {
        Error::Conflict {
            reference, current, ..
        } => {
            assert_eq!(reference, "rask-1/c");
            assert_eq!(current, "absent");
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(store.read_ref(&n, &pkg("a")).unwrap(), Some(a0));
    assert_eq!(store.read_ref(&n, &pkg("b")).unwrap(), Some(b0));
    assert_eq!(store.read_ref(&n, &pkg("c")).unwrap(), None);
    for p in ["a", "b", "c"] {
        let log = store.reflog(&n, &pkg(p)).unwrap();
        assert!(
            log.entries.iter().all(|e| e.message == "first build"),
            "{p}: a failed transaction left a reflog line"
        );
    }

    // With every expectation right, all three move, and say so in input order.
    let olds = store
        .update_refs(&build(Expect::Absent), "second build")
        .unwrap();
    assert_eq!(olds, vec![Some(b0), None, Some(a0)]);
    assert_eq!(
        store.list_refs(&n).unwrap(),
        vec![(pkg("a"), a1), (pkg("b"), b1), (pkg("c"), c1)]
    );
    assert_eq!(store.reflog(&n, &pkg("c")).unwrap().entries.len(), 1);
    assert!(
        fs::read_dir(store.root().join("locks").join("txn"))
            .unwrap()
            .next()
            .is_none(),
        "the transaction record outlived the transaction"
    );
}

#[test]
fn the_same_ref_twice_in_one_transaction_is_refused() {
    let (_dir, store) = new_store();
    let id = object(&store, "x");
    let twice = [
        RefUpdate::set(ns("n"), pkg("p"), Expect::Any, id),
        RefUpdate::delete(ns("n"), pkg("p"), Expect::Any),
    ];
    let err = store.update_refs(&twice, "twice").unwrap_err();
    assert!(err.is_usage(), "{err}");
    assert!(err.to_string().contains("n/p appears twice"), "{err}");
    assert_eq!(store.read_ref(&ns("n"), &pkg("p")).unwrap(), None);
}

/// Lays out on disk what a transaction killed halfway through its renames
/// leaves: the record, a lock file per ref naming it (no live holder), and
/// only the first ref updated.
fn crashed_transaction(store: &Store, name: &str, updates: &[(&str, Option<ObjectId>, ObjectId)]) {
    let hex = |v: Option<ObjectId>| v.map_or(ABSENT_HEX.to_string(), |id| id.to_hex());
    let mut text =
        "rask-store ref transaction 1\npid 4000000\ntime 1\nmessage build 7\n".to_string();
    for (p, old, new) in updates {
        text.push_str(&format!("update n {p} {} {}\n", hex(*old), new.to_hex()));
    }
    let check = blake3::hash(text.as_bytes());
    text.push_str(&format!("check {}\n", hex::encode(&check.as_bytes()[..8])));
    let txn_dir = store.root().join("locks").join("txn");
    fs::create_dir_all(&txn_dir).unwrap();
    fs::write(txn_dir.join(name), text).unwrap();
    let refs = store.root().join("refs").join("n");
    fs::create_dir_all(&refs).unwrap();
    for (i, (p, old, new)) in updates.iter().enumerate() {
        fs::write(
            refs.join(format!(".{p}.lock")),
            format!("rask-store ref lock 1\npid 4000000\ntxn {name}\n"),
        )
        .unwrap();
        let value = if i == 0 { Some(*new) } else { *old };
        if let Some(id) = value {
            fs::write(refs.join(p), format!("{id}\n")).unwrap();
        }
    }
}

fn lock_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".lock"))
        .collect()
}

#[test]
fn the_next_writer_completes_a_transaction_whose_writer_died() {
    let (_dir, store) = new_store();
    let n = ns("n");
    let (a0, a1, b0, b1, c1, b2) = (
        object(&store, "a0"),
        object(&store, "a1"),
        object(&store, "b0"),
        object(&store, "b1"),
        object(&store, "c1"),
        object(&store, "b2"),
    );
    crashed_transaction(
        &store,
        "4000000-1-0",
        &[("a", Some(a0), a1), ("b", Some(b0), b1), ("c", None, c1)],
    );
    // Readers see the half-done state...
    assert_eq!(store.read_ref(&n, &pkg("b")).unwrap(), Some(b0));

    // ...but a writer of `b` first finishes the dead transaction, so it
    // finds `b` at the transaction's new value.
    let err = store
        .update_ref(&n, &pkg("b"), Expect::Value(b0), b2, "next build")
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(err.to_string().contains(&b1.to_hex()), "{err}");
    assert_eq!(store.read_ref(&n, &pkg("a")).unwrap(), Some(a1));
    assert_eq!(store.read_ref(&n, &pkg("c")).unwrap(), Some(c1));
    let c_log = store.reflog(&n, &pkg("c")).unwrap();
    assert_eq!(c_log.entries.len(), 1);
    assert_eq!(c_log.entries[0].new, Some(c1));
    assert!(
        c_log.entries[0]
            .message
            .contains("build 7 (completed after its writer died)")
    );
    // `a` was already done: no second line for it.
    assert!(store.reflog(&n, &pkg("a")).unwrap().entries.is_empty());

    store
        .update_ref(&n, &pkg("b"), Expect::Value(b1), b2, "next build")
        .unwrap();
    assert!(lock_files(&store.root().join("refs").join("n")).is_empty());
    assert!(!store.root().join("locks/txn/4000000-1-0").exists());
}

#[test]
fn recovery_completes_dead_transactions_and_leaves_live_ones_alone() {
    let (_dir, store) = new_store();
    let n = ns("n");
    let (a0, a1, b1) = (
        object(&store, "a0"),
        object(&store, "a1"),
        object(&store, "b1"),
    );

    // A live transaction: its record is locked by a running process (us).
    crashed_transaction(
        &store,
        "4000000-2-0",
        &[("a", Some(a0), a1), ("b", None, b1)],
    );
    let record = store.root().join("locks/txn/4000000-2-0");
    let held = File::open(&record).unwrap();
    held.lock().unwrap();
    assert!(store.recover_ref_transactions().unwrap().is_empty());
    assert_eq!(store.read_ref(&n, &pkg("b")).unwrap(), None);
    assert!(record.exists());

    // Its process dies.
    drop(held);
    let recovered = store.recover_ref_transactions().unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].completed, vec!["n/b".to_string()]);
    assert!(recovered[0].skipped.is_empty());
    assert_eq!(store.read_ref(&n, &pkg("b")).unwrap(), Some(b1));
    assert!(!record.exists());
    assert!(lock_files(&store.root().join("refs").join("n")).is_empty());
}

#[test]
fn transactions_over_the_same_refs_in_opposite_orders_do_not_deadlock() {
    let (dir, store) = new_store();
    let root = store.root().to_path_buf();
    let ids: Vec<ObjectId> = (0..4).map(|i| object(&store, &format!("v{i}"))).collect();
    let rounds = 200;
    std::thread::scope(|scope| {
        for reversed in [false, true] {
            let (root, ids) = (&root, &ids);
            scope.spawn(move || {
                let options = StoreOptions::with_durability(rask_store::Durability::None);
                let store = Store::open(root, options).unwrap();
                let mut names = [pkg("a"), pkg("b"), pkg("c")];
                if reversed {
                    names.reverse();
                }
                for round in 0..rounds {
                    let updates: Vec<_> = names
                        .iter()
                        .map(|p| {
                            RefUpdate::set(ns("n"), p.clone(), Expect::Any, ids[round % ids.len()])
                        })
                        .collect();
                    store.update_refs(&updates, "race").unwrap();
                }
            });
        }
    });
    // Every transaction is whole: each ref saw both writers' 200 updates.
    for p in ["a", "b", "c"] {
        let log = store.reflog(&ns("n"), &pkg(p)).unwrap();
        assert_eq!(log.entries.len(), 2 * rounds, "{p}");
    }
    drop(dir);
}

#[test]
fn gc_roots_are_ref_values_recent_reflog_ids_and_pending_transactions() {
    use rask_store::refs::{ReflogEntry, reflog_line};
    use std::time::Duration;

    let (_dir, store) = new_store();
    let n = ns("n");
    let (ancient, a1, a2, t_new, unrelated) = (
        object(&store, "ancient"),
        object(&store, "a1"),
        object(&store, "a2"),
        object(&store, "t-new"),
        object(&store, "unrelated"),
    );
    store
        .update_ref(&n, &pkg("a"), Expect::Absent, a1, "b1")
        .unwrap();
    store
        .update_ref(&n, &pkg("a"), Expect::Value(a1), a2, "b2")
        .unwrap();
    // An entry from long ago, before those two.
    let log = store.root().join("logs/n/a");
    let old_line = reflog_line(&ReflogEntry {
        old: Some(ancient),
        new: Some(ancient),
        time: 1_000,
        message: "long ago".into(),
    });
    let recent = fs::read_to_string(&log).unwrap();
    fs::write(&log, format!("{old_line}{recent}")).unwrap();
    // A transaction that died before it could publish `b`.
    crashed_transaction(
        &store,
        "4000000-3-0",
        &[("c", None, a2), ("d", None, t_new)],
    );

    let day = Duration::from_secs(24 * 60 * 60);
    let mut expected = vec![a1, a2, t_new];
    expected.sort();
    assert_eq!(store.ref_roots(day).unwrap(), expected);
    let mut with_old = vec![ancient, a1, a2, t_new];
    with_old.sort();
    assert_eq!(store.ref_roots(Duration::MAX).unwrap(), with_old);
    assert!(!store.ref_roots(Duration::MAX).unwrap().contains(&unrelated));
}
