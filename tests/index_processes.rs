//! Several processes inserting into one index at once, with compactions
//! rotating the journal under them, and processes killed mid-write.
//!
//! The child processes are this test binary run again with a filter that
//! selects `child_inserter` and an environment variable telling it what to
//! do; without the variable that test does nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rask_store::index::{IndexOptions, MissCause};
use rask_store::{Component, Durability, Index, Key, Kind, Lookup, Namespace, Store, StoreOptions};

const ENV_STORE: &str = "RASK_TEST_CHILD_STORE";
const ENV_PROC: &str = "RASK_TEST_CHILD_PROC";
const ENV_COUNT: &str = "RASK_TEST_CHILD_COUNT";
const ENV_COMPACT: &str = "RASK_TEST_CHILD_COMPACT_MIN";

fn key(proc_no: u64, i: u64) -> Key {
    Key::new(
        Namespace::new("mp").unwrap(),
        vec![
            Component::U64(proc_no),
            Component::U64(i),
            Component::str("inst"),
        ],
    )
    .unwrap()
}

fn value(proc_no: u64, i: u64) -> Vec<u8> {
    format!("value of {proc_no}/{i}").into_bytes()
}

fn open_store(root: &Path) -> Store {
    Store::create(root, StoreOptions::with_durability(Durability::None)).unwrap()
}

/// The child's body: insert `count` keys (forever when count is 0), printing
/// `done <i>` after each put returns.
#[test]
fn child_inserter() {
    let Ok(root) = std::env::var(ENV_STORE) else {
        return;
    };
    let proc_no: u64 = std::env::var(ENV_PROC).unwrap().parse().unwrap();
    let count: u64 = std::env::var(ENV_COUNT).unwrap().parse().unwrap();
    let compact_min: u64 = std::env::var(ENV_COMPACT).unwrap().parse().unwrap();
    let store = open_store(Path::new(&root));
    let index = Index::open_with(
        &store,
        IndexOptions::default().with_compact_min_bytes(compact_min),
    )
    .unwrap();
    let mut i = 0;
    while count == 0 || i < count {
        index
            .put(
                &store,
                &key(proc_no, i),
                Kind::Instance,
                &[("ast", &value(proc_no, i))],
            )
            .unwrap();
        if count == 0 {
            println!("done {i}");
        }
        i += 1;
    }
}

fn spawn_child(root: &Path, proc_no: u64, count: u64, compact_min: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_inserter",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_STORE, root)
        .env(ENV_PROC, proc_no.to_string())
        .env(ENV_COUNT, count.to_string())
        .env(ENV_COMPACT, compact_min.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn four_processes_insert_at_once_and_nothing_is_lost() {
    const PROCS: u64 = 4;
    const PER_PROC: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let store = open_store(&root);
    // A small threshold, so the journal is rotated many times while the
    // processes append.
    let children: Vec<Child> = (0..PROCS)
        .map(|p| spawn_child(&root, p, PER_PROC, 128 << 10))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a child failed");
    }
    let index = Index::open(&store).unwrap();
    let stats = index.stats().unwrap();
    assert!(stats.generation > 1, "no compaction ran: {stats:?}");
    assert_eq!(stats.entries, PROCS * PER_PROC);
    assert!(stats.problems.is_empty(), "{:?}", stats.problems);
    let keys: Vec<Key> = (0..PROCS)
        .flat_map(|p| (0..PER_PROC).map(move |i| key(p, i)))
        .collect();
    assert_eq!(index.find_missing(&keys).unwrap(), Vec::<usize>::new());
    for p in 0..PROCS {
        for i in 0..PER_PROC {
            let got = index.get(&store, &key(p, i), "ast").unwrap();
            assert_eq!(got, Lookup::Hit(value(p, i)), "key {p}/{i}");
        }
    }
    assert!(index.check().unwrap().is_empty());
}

#[test]
fn a_process_killed_mid_append_or_mid_compaction_leaves_a_working_index() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let store = open_store(&root);
    let mut done: Vec<(u64, u64)> = Vec::new();
    for round in 0..6u64 {
        // A tiny threshold: the child compacts every few dozen puts, so a
        // kill lands in a compaction about as often as in an append.
        let mut child = spawn_child(&root, round, 0, 4 << 10);
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.strip_prefix("done ") {
                    last.push(i.parse::<u64>().unwrap());
                }
            }
            last
        });
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let finished = reader.join().unwrap();
        assert!(!finished.is_empty(), "the child made no progress");
        done.extend(finished.into_iter().map(|i| (round, i)));

        // The store opens and answers after every kill.
        let index = Index::open(&store).unwrap();
        for &(p, i) in &done {
            match index.get(&store, &key(p, i), "ast").unwrap() {
                Lookup::Hit(v) => assert_eq!(v, value(p, i)),
                Lookup::Miss(m) => panic!("round {round}: {p}/{i} lost: {m:?}"),
            }
        }
    }
    let index = Index::open(&store).unwrap();
    // Whatever the kills left behind, compaction and puts still work.
    index.compact().unwrap();
    index
        .put(&store, &key(99, 0), Kind::Blob, &[("ast", b"after")])
        .unwrap();
    assert_eq!(
        index.get(&store, &key(99, 0), "ast").unwrap(),
        Lookup::Hit(b"after".to_vec())
    );
    assert_eq!(
        index.lookup(&key(99, 1)).unwrap().miss_cause(),
        Some(MissCause::Absent)
    );
    for &(p, i) in &done {
        assert!(index.lookup(&key(p, i)).unwrap().is_hit(), "{p}/{i} lost");
    }
}

#[test]
fn a_handle_open_across_another_process_compaction_sees_entries_put_after_it() {
    // The compacting process dies right after switching the manifest, so
    // the replaced journal is still there (not unlinked): a handle opened
    // before must still notice the switch (the compaction marked its
    // journal retired) and find an entry put into the next journal.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let store = open_store(&root);
    let reader = Index::open(&store).unwrap();
    reader
        .put(&store, &key(0, 1), Kind::Blob, &[("v", &value(0, 1))])
        .unwrap();
    assert!(!reader.lookup(&key(0, 2)).unwrap().is_hit());
    let journal = reader.stats().unwrap().journal_path;
    let out = Command::new(env!("CARGO_BIN_EXE_rask-store"))
        .arg("--store")
        .arg(&root)
        .args([
            "--fault-point",
            "compact-manifest-switched",
            "index",
            "compact",
        ])
        .env_remove("RASK_STORE")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the compaction was to die: {out:?}");
    assert!(
        journal.exists(),
        "the replaced journal was to be left behind"
    );
    let writer = Index::open(&store).unwrap();
    assert_ne!(writer.stats().unwrap().journal_path, journal);
    writer
        .put(&store, &key(0, 2), Kind::Blob, &[("v", &value(0, 2))])
        .unwrap();
    assert_eq!(
        reader.get(&store, &key(0, 2), "v").unwrap(),
        Lookup::Hit(value(0, 2)),
        "an entry put after another process's compaction was not found"
    );
    assert!(reader.lookup(&key(0, 1)).unwrap().is_hit());
}
