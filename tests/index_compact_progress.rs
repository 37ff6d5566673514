//! Index compaction reports records merged of total to the caller, and
//! `rask-store index compact` draws it on standard error only when that is a
//! terminal.

mod common;

use std::cell::RefCell;
use std::path::Path;
use std::process::Command;

use common::{cli, code, stderr, stdout};
use rask_store::index::{AutoCompact, COMPACT_PROGRESS_EVERY, CompactProgress, IndexOptions};
use rask_store::{Component, Durability, Index, Key, Kind, Namespace, Store, StoreOptions};

fn key(n: u64) -> Key {
    Key::new(Namespace::new("prog").unwrap(), vec![Component::U64(n)]).unwrap()
}

fn put_range(index: &Index, store: &Store, range: std::ops::Range<u64>, tag: &str) {
    for n in range {
        let value = format!("{tag} {n}");
        index
            .put(store, &key(n), Kind::Blob, &[("v", value.as_bytes())])
            .unwrap();
    }
}

fn compact_recording(index: &Index) -> (rask_store::index::CompactReport, Vec<CompactProgress>) {
    let seen = RefCell::new(Vec::new());
    let report = index
        .compact_with_progress(&|p| seen.borrow_mut().push(p))
        .unwrap();
    (report, seen.into_inner())
}

/// Starts at zero, only grows, ends at the total, and every report names it.
fn assert_well_formed(seen: &[CompactProgress], total: u64) {
    assert_eq!(seen.first().map(|p| p.records_done), Some(0), "{seen:?}");
    assert_eq!(seen.last().map(|p| p.records_done), Some(total), "{seen:?}");
    assert!(seen.iter().all(|p| p.records_total == total), "{seen:?}");
    assert!(
        seen.windows(2)
            .all(|w| w[0].records_done < w[1].records_done),
        "{seen:?}"
    );
}

#[test]
fn compaction_reports_records_merged_of_total() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(
        dir.path().join("cache"),
        StoreOptions::with_durability(Durability::None),
    )
    .unwrap();
    let options = IndexOptions::default().with_auto_compact(AutoCompact::Off);
    let index = Index::open_with(&store, options).unwrap();
    let first = 2 * COMPACT_PROGRESS_EVERY + 500;
    put_range(&index, &store, 0..first, "a");

    // Everything is in the journal: one record per key.
    let (report, seen) = compact_recording(&index);
    assert_eq!(report.entries, first);
    assert_well_formed(&seen, first);
    // Reported along the way, not only at the start and the end.
    let steps: Vec<u64> = seen.iter().map(|p| p.records_done).collect();
    assert_eq!(
        steps,
        [0, COMPACT_PROGRESS_EVERY, 2 * COMPACT_PROGRESS_EVERY, first]
    );

    // The segment's records and the journal's newest record per key: 100
    // replaced and 50 new keys.
    put_range(&index, &store, first - 100..first + 50, "b");
    let (report, seen) = compact_recording(&index);
    assert_eq!(report.entries, first + 50);
    assert_well_formed(&seen, first + 150);

    // A journal whose only record is a remove: merged, and nothing is left.
    let empty = Store::create(
        dir.path().join("empty"),
        StoreOptions::with_durability(Durability::None),
    )
    .unwrap();
    let index = Index::open(&empty).unwrap();
    put_range(&index, &empty, 0..1, "c");
    index.remove(&key(0)).unwrap();
    let (report, seen) = compact_recording(&index);
    assert_eq!(report.entries, 0);
    assert_well_formed(&seen, 1);
}

fn store_with_entries(root: &Path, n: u64) {
    let store = Store::create(root, StoreOptions::default()).unwrap();
    let index = Index::open(&store).unwrap();
    put_range(&index, &store, 0..n, "v");
    index.flush().unwrap();
    store.flush().unwrap();
}

#[test]
fn index_compact_draws_progress_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    store_with_entries(&root, 300);
    // Standard error is a pipe here: not a byte of progress.
    let out = cli(&root, &["index", "compact"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert!(stdout(&out).contains("300 entries"), "{}", stdout(&out));

    // On a terminal (a pseudo-terminal from `script`), the count shows.
    let Some(script) = which("script") else {
        eprintln!("no `script` command: the terminal half of this test is skipped");
        return;
    };
    let root2 = dir.path().join("cache2");
    store_with_entries(&root2, 300);
    let command = format!(
        "{} --store {} index compact",
        env!("CARGO_BIN_EXE_rask-store"),
        root2.display()
    );
    let out = Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("index compact: 0/300 records merged"),
        "{text:?}"
    );
    assert!(
        text.contains("index compact: 300/300 records merged"),
        "{text:?}"
    );
    assert!(text.contains("300 entries"), "{text:?}");
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
