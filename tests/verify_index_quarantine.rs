//! Unreadable index files are evidence: verify reports them while they are in
//! `index/`, and repair (through compaction) moves them into `quarantine/`
//! under a name that says where they came from; afterwards the store
//! verifies clean.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{cli, code, stdout};
use rask_store::verify::{self, ProblemKind, RepairMode, VerifyOptions, VerifyReport};
use rask_store::{Component, Durability, Index, Key, Kind, Lookup, Namespace, Store, StoreOptions};

fn key(n: u64) -> Key {
    Key::new(Namespace::new("q").unwrap(), vec![Component::U64(n)]).unwrap()
}

/// A store whose index is one segment of 20 entries.
fn store_with_segment(root: &Path) -> (Store, PathBuf) {
    let store = Store::create(root, StoreOptions::with_durability(Durability::None)).unwrap();
    let index = Index::open(&store).unwrap();
    for n in 0..20 {
        index
            .put(
                &store,
                &key(n),
                Kind::Blob,
                &[("v", format!("v{n}").as_bytes())],
            )
            .unwrap();
    }
    index.compact().unwrap();
    let segment = index.stats().unwrap().segments[0].path.clone();
    (store, segment)
}

fn verify_with(store: &Store, repair: bool) -> VerifyReport {
    let mut options = VerifyOptions::default();
    if repair {
        options.repair = RepairMode::Repair;
    }
    verify::verify(store, options, &|_| {}).unwrap()
}

/// Files in `quarantine/` whose names start with `prefix`.
fn quarantined(store: &Store, prefix: &str) -> Vec<PathBuf> {
    let Ok(dir) = fs::read_dir(store.layout().quarantine_dir()) else {
        return Vec::new();
    };
    dir.map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect()
}

fn assert_repaired_clean(store: &Store, path: &Path) {
    let repaired = verify_with(store, true);
    let fixed: Vec<_> = repaired
        .problems
        .iter()
        .filter(|p| p.path == path)
        .collect();
    assert_eq!(fixed.len(), 1, "{:#?}", repaired.problems);
    let note = fixed[0].repaired.as_deref().unwrap_or_default();
    assert!(note.contains("quarantine"), "{note}");
    assert!(
        repaired.unrepaired().next().is_none(),
        "{:#?}",
        repaired.problems
    );
    assert!(!path.exists(), "{} is still in index/", path.display());
    let again = verify_with(store, false);
    assert!(again.problems.is_empty(), "{:#?}", again.problems);
    let out = cli(store.root(), &["verify"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
}

#[test]
fn an_unreadable_segment_is_reported_then_moved_to_quarantine_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let (store, segment) = store_with_segment(&dir.path().join("cache"));
    // An old-version segment: the version field says 1.
    let mut bytes = fs::read(&segment).unwrap();
    bytes[4] = 1;
    fs::remove_file(&segment).unwrap();
    fs::write(&segment, &bytes).unwrap();

    let report = verify_with(&store, false);
    assert!(
        report
            .damage_left()
            .any(|p| p.kind == ProblemKind::DamagedIndexFile && p.path == segment),
        "{:#?}",
        report.problems
    );
    assert_eq!(code(&cli(store.root(), &["verify"])), 3);
    assert!(quarantined(&store, "index-").is_empty());

    assert_repaired_clean(&store, &segment);
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    let kept = quarantined(&store, &format!("index-{name}."));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        fs::read(&kept[0]).unwrap(),
        bytes,
        "the evidence is unchanged"
    );
    // The index works: its entries are gone (misses), new ones go in.
    let index = Index::open(&store).unwrap();
    assert!(!index.lookup(&key(0)).unwrap().is_hit());
    index
        .put(&store, &key(0), Kind::Blob, &[("v", b"again")])
        .unwrap();
    assert!(matches!(index.get(&store, &key(0), "v").unwrap(), Lookup::Hit(v) if v == b"again"));
}

#[test]
fn a_file_an_older_version_set_aside_as_bad_is_reported_until_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _segment) = store_with_segment(&dir.path().join("cache"));
    // What compaction used to leave: `index/<file>.bad`.
    let bad = store
        .layout()
        .index_dir()
        .join("seg-00000000000000aa.rsx.bad");
    fs::write(&bad, b"bytes of a segment that could not be read").unwrap();

    let report = verify_with(&store, false);
    let found: Vec<_> = report.problems.iter().filter(|p| p.path == bad).collect();
    assert_eq!(found.len(), 1, "{:#?}", report.problems);
    assert_eq!(found[0].kind, ProblemKind::DamagedIndexFile);
    assert!(!report.is_clean());
    let out = cli(store.root(), &["verify"]);
    assert_eq!(code(&out), 3);
    assert!(
        stdout(&out).contains(&*bad.to_string_lossy()),
        "{}",
        stdout(&out)
    );

    assert_repaired_clean(&store, &bad);
    let kept = quarantined(&store, "index-seg-00000000000000aa.rsx.");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        fs::read(&kept[0]).unwrap(),
        b"bytes of a segment that could not be read"
    );
    // The store's entries were untouched.
    let index = Index::open(&store).unwrap();
    assert!(index.lookup(&key(19)).unwrap().is_hit());
}

#[test]
fn index_compact_moves_a_bad_file_to_quarantine_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _segment) = store_with_segment(&dir.path().join("cache"));
    let bad = store
        .layout()
        .index_dir()
        .join("journal-0000000000000003.rsj.bad");
    fs::write(&bad, b"an old journal").unwrap();
    let out = cli(store.root(), &["index", "compact"]);
    assert_eq!(code(&out), 0);
    let kept = quarantined(&store, "index-journal-0000000000000003.rsj.");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        stdout(&out).contains(&format!(
            "quarantined unreadable index file as {}",
            kept[0].display()
        )),
        "{}",
        stdout(&out)
    );
    assert!(!bad.exists());
    assert_eq!(fs::read(&kept[0]).unwrap(), b"an old journal");
}
