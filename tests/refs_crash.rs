//! kill -9 of a process in the middle of multi-ref transactions: after
//! recovery every transaction is whole, and the store is never wedged.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rask_store::{
    Durability, Expect, Kind, Namespace, ObjectId, PackageName, RefUpdate, Store, StoreOptions,
};

const CHILD_ENV: &str = "RASK_REFS_CRASH_CHILD_STORE";
const PACKAGES: [&str; 5] = ["alloc", "core", "io", "net", "std"];

fn ns() -> Namespace {
    Namespace::new("rask-crash").unwrap()
}

fn options() -> StoreOptions {
    StoreOptions::with_durability(Durability::None)
}

fn values(store: &Store) -> Vec<Option<ObjectId>> {
    PACKAGES
        .iter()
        .map(|p| {
            store
                .read_ref(&ns(), &PackageName::new(*p).unwrap())
                .unwrap()
        })
        .collect()
}

/// Publishes build after build of all five packages in one transaction,
/// each expecting the previous build, until it is killed.
#[test]
#[ignore = "helper: run as a child process by the crash test"]
fn transaction_child() {
    let root = std::env::var(CHILD_ENV).expect("run by the crash test");
    let store = Store::open(&root, options()).unwrap();
    for build in 0u64.. {
        let current = values(&store);
        let updates: Vec<_> = PACKAGES
            .iter()
            .zip(&current)
            .map(|(p, old)| {
                let new = store
                    .put_object(Kind::Root, &[], format!("{p} build {build}").as_bytes())
                    .unwrap();
                RefUpdate::set(
                    ns(),
                    PackageName::new(*p).unwrap(),
                    old.map_or(Expect::Absent, Expect::Value),
                    new,
                )
            })
            .collect();
        store
            .update_refs(&updates, &format!("build {build}"))
            .unwrap();
    }
}

fn run_and_kill(root: &Path, after: Duration) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "transaction_child",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, root)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Which build each ref's value is, from its payload.
fn builds(store: &Store) -> Vec<Option<String>> {
    values(store)
        .into_iter()
        .map(|v| {
            v.map(|id| {
                let payload = store.get_object(&id).unwrap().payload().to_vec();
                let text = String::from_utf8(payload).unwrap();
                text.split_once(' ').unwrap().1.to_string()
            })
        })
        .collect()
}

#[test]
fn a_transaction_killed_at_any_point_is_whole_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::create(&root, options()).unwrap();
    // Kill points spread over process start-up and many transactions.
    for (round, millis) in [40u64, 55, 70, 85, 100, 120, 150, 180, 220, 260]
        .into_iter()
        .enumerate()
    {
        run_and_kill(&root, Duration::from_millis(millis));
        let recovered = store.recover_ref_transactions().unwrap();
        let builds = builds(&store);
        println!(
            "round {round}: killed at build {:?}; {} transaction(s) rolled forward",
            builds[0],
            recovered.len()
        );
        assert!(
            builds.iter().all(|b| *b == builds[0]),
            "round {round}: refs from different builds after recovery: {builds:?}"
        );
        // And the store is not wedged: the next build publishes at once.
        let current = values(&store);
        let updates: Vec<_> = PACKAGES
            .iter()
            .zip(&current)
            .map(|(p, old)| {
                let new = store
                    .put_object(
                        Kind::Root,
                        &[],
                        format!("{p} build parent-{round}").as_bytes(),
                    )
                    .unwrap();
                RefUpdate::set(
                    ns(),
                    PackageName::new(*p).unwrap(),
                    old.map_or(Expect::Absent, Expect::Value),
                    new,
                )
            })
            .collect();
        store.update_refs(&updates, "parent build").unwrap();
        let expected = Some(format!("build parent-{round}"));
        assert!(builds_are(&store, &expected), "round {round}");
    }
    for p in PACKAGES {
        let log = store.reflog(&ns(), &PackageName::new(p).unwrap()).unwrap();
        // Whatever a kill tore, the newest entry names the ref's value.
        let value = store
            .read_ref(&ns(), &PackageName::new(p).unwrap())
            .unwrap();
        assert_eq!(log.entries.last().unwrap().new, value, "{p}");
    }
}

fn builds_are(store: &Store, expected: &Option<String>) -> bool {
    builds(store).iter().all(|b| b == expected)
}
