//! Many processes racing compare-and-swap updates of one ref lose nothing.

use std::path::Path;
use std::process::{Command, Stdio};

use rask_store::{
    Durability, Error, Expect, Kind, Namespace, ObjectId, PackageName, Store, StoreOptions,
};

const CHILD_ENV: &str = "RASK_REFS_CAS_CHILD_STORE";
const PROCESSES: usize = 32;
const INCREMENTS: u64 = 100;

fn names() -> (Namespace, PackageName) {
    (
        Namespace::new("rask-test").unwrap(),
        PackageName::new("counter").unwrap(),
    )
}

fn counter_of(store: &Store, id: Option<ObjectId>) -> u64 {
    match id {
        None => 0,
        Some(id) => {
            let object = store.get_object(&id).unwrap();
            std::str::from_utf8(object.payload())
                .unwrap()
                .parse()
                .unwrap()
        }
    }
}

/// One increment: read the counter, put the next number, CAS the ref to it;
/// retried until it wins. Returns how many races it lost.
fn increment(store: &Store, seed: &mut u64) -> u32 {
    let (ns, pkg) = names();
    let mut losses = 0;
    loop {
        let current = store.read_ref(&ns, &pkg).unwrap();
        let next = counter_of(store, current) + 1;
        let new = store
            .put_object(Kind::Blob, &[], next.to_string().as_bytes())
            .unwrap();
        let expect = current.map_or(Expect::Absent, Expect::Value);
        match store.update_ref(&ns, &pkg, expect, new, &format!("increment to {next}")) {
            Ok(_) => return losses,
            Err(Error::Conflict { .. } | Error::Locked { .. }) => {
                losses += 1;
                // The caller's retry policy: randomized exponential backoff,
                // so that 31 losers do not all come back at once.
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                let ceiling = 100u64 << losses.min(8);
                let pause = ceiling / 2 + *seed % ceiling;
                std::thread::sleep(std::time::Duration::from_micros(pause));
            }
            Err(e) => panic!("increment failed: {e}"),
        }
    }
}

/// Runs in a child process (see `thirty_two_processes_...`), not on its own.
#[test]
#[ignore = "helper: run as a child process by the CAS race test"]
fn cas_child() {
    let root = std::env::var(CHILD_ENV).expect("run by the CAS race test");
    let store = Store::open(&root, StoreOptions::with_durability(Durability::None)).unwrap();
    let mut losses = 0;
    let mut seed = u64::from(std::process::id()) | 1;
    for _ in 0..INCREMENTS {
        losses += increment(&store, &mut seed);
    }
    println!("lost {losses} races");
}

fn spawn_child(root: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "cas_child",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, root)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn thirty_two_processes_times_one_hundred_increments_make_exactly_3200() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::create(&root, StoreOptions::with_durability(Durability::None)).unwrap();
    let children: Vec<_> = (0..PROCESSES).map(|_| spawn_child(&root)).collect();
    let mut losses = 0u64;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a child process failed");
        let text = String::from_utf8_lossy(&out.stdout);
        // libtest prints the child's line after "test cas_child ... ".
        let words: Vec<&str> = text.split_whitespace().collect();
        losses += words
            .windows(3)
            .find_map(|w| match w {
                ["lost", n, "races"] => n.parse::<u64>().ok(),
                _ => None,
            })
            .expect("the child reports its lost races");
    }
    println!("{losses} compare-and-swap attempts lost a race and were retried");

    let (ns, pkg) = names();
    let total = PROCESSES as u64 * INCREMENTS;
    let value = store.read_ref(&ns, &pkg).unwrap();
    assert_eq!(counter_of(&store, value), total, "an update was lost");

    // The reflog is one unbroken chain of exactly `total` updates.
    let log = store.reflog(&ns, &pkg).unwrap();
    assert!(log.damaged.is_empty(), "{:?}", log.damaged);
    assert_eq!(log.entries.len() as u64, total);
    let mut previous = None;
    for (n, entry) in log.entries.iter().enumerate() {
        assert_eq!(
            entry.old,
            previous,
            "reflog line {} breaks the chain",
            n + 1
        );
        assert_eq!(counter_of(&store, entry.new), n as u64 + 1);
        previous = entry.new;
    }
    assert_eq!(previous, value);

    // No lock file survives its update.
    let leftovers: Vec<_> = std::fs::read_dir(root.join("refs").join("rask-test"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "counter")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}
