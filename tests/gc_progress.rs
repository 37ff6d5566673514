//! gc reports its progress to the caller phase by phase, and the CLI draws
//! it on standard error only when that is a terminal.

mod common;

use std::cell::RefCell;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{cli, code, pseudo_random, stderr};
use rask_store::gc::{self, GcPhase, GcPolicy, GcProgress};
use rask_store::{Component, Index, Key, Kind, Namespace, Store, StoreOptions};

const ENTRIES: usize = 300;

/// A store with `ENTRIES` entries no ref reaches and one unreachable object.
fn store_with_entries(root: &Path) {
    let store = Store::create(root, StoreOptions::default()).unwrap();
    let index = Index::open(&store).unwrap();
    let ns = Namespace::new("rask-1").unwrap();
    for i in 0..ENTRIES {
        let key = Key::new(ns.clone(), vec![Component::U64(i as u64)]).unwrap();
        let bytes = pseudo_random(100, i as u64);
        index
            .put(&store, &key, Kind::Instance, &[("ast", bytes.as_slice())])
            .unwrap();
    }
    store.put_object(Kind::Blob, &[], b"garbage").unwrap();
    index.flush().unwrap();
    store.flush().unwrap();
}

#[test]
fn gc_reports_every_phase_in_order_with_final_counts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    store_with_entries(&root);
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let index = Index::open(&store).unwrap();
    let mut policy = GcPolicy::default();
    policy.objects.grace = Duration::ZERO;
    policy.max_size = Some(0);
    let seen: RefCell<Vec<GcProgress>> = RefCell::new(Vec::new());
    let report = gc::collect(&store, &index, policy, &|p| seen.borrow_mut().push(p)).unwrap();
    let seen = seen.into_inner();
    assert_eq!(report.entries_evicted, ENTRIES as u64);

    let mut phases: Vec<GcPhase> = seen.iter().map(|p| p.phase).collect();
    phases.dedup();
    assert_eq!(
        phases,
        [
            GcPhase::Marking,
            GcPhase::Measuring,
            GcPhase::Evicting,
            GcPhase::Compacting,
            GcPhase::Marking,
            GcPhase::Sweeping
        ]
    );
    let last = |phase: GcPhase| *seen.iter().rev().find(|p| p.phase == phase).unwrap();
    assert_eq!(last(GcPhase::Measuring).dirs_done, 256);
    let evicting = last(GcPhase::Evicting);
    assert_eq!(evicting.entries_total, ENTRIES as u64);
    assert_eq!(evicting.entries_done, ENTRIES as u64);
    // Evicting 300 entries is reported in steps, not only at the end.
    assert!(seen.iter().filter(|p| p.phase == GcPhase::Evicting).count() >= 3);
    // The compaction merges the journal's newest record of every key (here,
    // every entry's remove) and says so.
    let compacting = last(GcPhase::Compacting);
    assert_eq!(compacting.records_total, ENTRIES as u64);
    assert_eq!(compacting.records_done, ENTRIES as u64);
    assert_eq!(last(GcPhase::Marking).marked, report.objects.reachable);
    let sweep = last(GcPhase::Sweeping);
    assert_eq!(sweep.dirs_done, 256);
    assert_eq!(sweep.removed, report.objects.removed_objects);
    assert_eq!(
        sweep.removed,
        ENTRIES as u64 + 1,
        "every part and the garbage"
    );
}

#[test]
fn gc_draws_progress_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    store_with_entries(&root);
    let args = ["gc", "--grace", "0", "--force", "--max-size", "0"];
    // Standard error is a pipe here: not a byte of progress.
    let out = cli(&root, &args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "");

    // On a terminal (a pseudo-terminal from `script`), the phases show.
    let Ok(script) = which("script") else {
        eprintln!("no `script` command: the terminal half of this test is skipped");
        return;
    };
    store_with_entries(&dir.path().join("cache2"));
    let command = format!(
        "{} --store {} {}",
        env!("CARGO_BIN_EXE_rask-store"),
        dir.path().join("cache2").display(),
        args.join(" ")
    );
    let out = Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for phase in [
        "gc: measuring",
        "gc: evicting",
        "gc: compacting the index without the evicted entries: 0/300 records merged",
        "gc: sweeping",
    ] {
        assert!(text.contains(phase), "{phase} missing from {text:?}");
    }
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
