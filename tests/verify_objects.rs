//! verify finds every damaged object, dangling link and stray file, and
//! repair leaves a store that verifies clean without deleting evidence.

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::{cli, code, files_under, flip_byte, overwrite, pseudo_random, stdout};
use rask_store::verify::{self, ProblemKind, RepairMode, VerifyOptions};
use rask_store::{Error, Kind, ObjectId, Store, StoreOptions};

fn build_store(dir: &std::path::Path, n: usize) -> (Store, Vec<ObjectId>) {
    let store = Store::create(dir.join("cache"), StoreOptions::default().loose()).unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let payload = pseudo_random(64 + (i * 37) % 3000, i as u64);
        // Every tenth object links to the two objects before it.
        let links: Vec<ObjectId> = if i % 10 == 9 {
            ids[i - 2..i].to_vec()
        } else {
            Vec::new()
        };
        ids.push(store.put_object(Kind::Instance, &links, &payload).unwrap());
    }
    (store, ids)
}

fn problems_of(report: &verify::VerifyReport, kind: ProblemKind) -> BTreeSet<std::path::PathBuf> {
    report
        .problems
        .iter()
        .filter(|p| p.kind == kind)
        .map(|p| p.path.clone())
        .collect()
}

#[test]
fn a_clean_store_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut ids) = build_store(dir.path(), 298);
    // Two large objects among the small ones: each worker's read buffer
    // grows to the largest file and is reused for smaller ones.
    for (len, seed) in [(300_000, 1), (70_000, 2)] {
        ids.push(
            store
                .put_object(Kind::Blob, &[], &pseudo_random(len, seed))
                .unwrap(),
        );
    }
    let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.objects, ids.len() as u64);
    let on_disk: u64 = ids
        .iter()
        .map(|id| fs::metadata(store.object_path(id)).unwrap().len())
        .sum();
    assert_eq!(
        report.bytes, on_disk,
        "verify counts the bytes of every object file"
    );
    let out = cli(store.root(), &["verify"]);
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).contains("checked 300 objects"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn damage_is_all_reported_then_repaired_without_deleting_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ids) = build_store(dir.path(), 1000);
    let root = store.root().to_path_buf();

    // 1% of objects get a flipped byte, at a pseudo-random offset.
    let flipped: Vec<ObjectId> = (0..10).map(|k| ids[k * 97 + 3]).collect();
    for (k, id) in flipped.iter().enumerate() {
        let path = store.object_path(id);
        let len = fs::metadata(&path).unwrap().len() as usize;
        flip_byte(&path, (k * 7919) % len);
    }
    // One truncated, one emptied.
    let truncated = ids[500];
    let path = store.object_path(&truncated);
    let bytes = fs::read(&path).unwrap();
    overwrite(&path, &bytes[..bytes.len() / 2]);
    let emptied = ids[600];
    overwrite(&store.object_path(&emptied), b"");
    // One with a byte appended (its header no longer matches its length).
    let extended = ids[800];
    let path = store.object_path(&extended);
    let mut bytes = fs::read(&path).unwrap();
    bytes.push(b'!');
    overwrite(&path, &bytes);
    // One deleted behind the store's back: ids[707] is linked from ids[709].
    let deleted = ids[707];
    fs::remove_file(store.object_path(&deleted)).unwrap();
    // A stray file in a fanout directory.
    let stray = root.join("objects/ab/not-an-object");
    fs::write(&stray, "junk").unwrap();

    let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    let mut damaged: BTreeSet<_> = flipped.iter().map(|id| store.object_path(id)).collect();
    damaged.insert(store.object_path(&truncated));
    damaged.insert(store.object_path(&emptied));
    damaged.insert(store.object_path(&extended));
    assert_eq!(problems_of(&report, ProblemKind::CorruptObject), damaged);
    assert_eq!(
        problems_of(&report, ProblemKind::DanglingLink),
        BTreeSet::from([store.object_path(&ids[709])])
    );
    assert_eq!(
        problems_of(&report, ProblemKind::StrayFile),
        BTreeSet::from([stray.clone()])
    );

    // The CLI says the same, and exits 3.
    let out = cli(&root, &["verify", "--json"]);
    assert_eq!(code(&out), 3);
    let json = stdout(&out);
    assert!(json.starts_with(r#"{"clean":false"#), "{json}");
    assert_eq!(
        json.matches(r#""kind":"corrupt-object""#).count(),
        damaged.len()
    );

    // Nothing wrong is ever returned.
    for id in flipped.iter().chain([&truncated, &emptied, &extended]) {
        assert!(matches!(store.get_object(id), Err(Error::Corrupt { .. })));
    }

    // Repair, then the store verifies clean.
    let out = cli(&root, &["verify", "--repair"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let after = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(after.is_clean(), "{:?}", after.problems);

    // Quarantined: every damaged file, the stray, and every object that links
    // to a damaged or deleted one (its closure is incomplete).
    let lost: BTreeSet<usize> = (0..10)
        .map(|k| k * 97 + 3)
        .chain([500, 600, 707, 800])
        .collect();
    let broken_parents: Vec<usize> = (0..ids.len())
        .filter(|i| i % 10 == 9 && (lost.contains(&(i - 1)) || lost.contains(&(i - 2))))
        .collect();
    assert!(broken_parents.contains(&709));
    let quarantined = files_under(&root.join("quarantine"));
    let stray_files = 1;
    assert_eq!(
        quarantined.len(),
        damaged.len() + stray_files + broken_parents.len(),
        "{quarantined:?}"
    );
    for i in &broken_parents {
        assert!(
            matches!(store.get_object(&ids[*i]), Err(Error::NotFound { .. })),
            "{i}"
        );
    }
    // Everything else is still there and intact.
    let kept: Vec<usize> = (0..ids.len())
        .filter(|i| !lost.contains(i) && !broken_parents.contains(i))
        .collect();
    for i in &kept {
        assert_eq!(store.get_object(&ids[*i]).unwrap().kind(), Kind::Instance);
    }
    assert_eq!(after.objects, kept.len() as u64);
}

#[test]
fn repair_through_the_library_marks_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ids) = build_store(dir.path(), 20);
    flip_byte(&store.object_path(&ids[3]), 30);
    let mut options = VerifyOptions::default();
    options.repair = RepairMode::Repair;
    options.threads = 1;
    let report = verify::verify(&store, options, &|_| {}).unwrap();
    assert_eq!(report.problems.len(), 1);
    let repaired = report.problems[0].repaired.as_deref().unwrap();
    assert!(
        repaired.starts_with("moved to ") && repaired.contains("quarantine"),
        "{repaired}"
    );
    assert_eq!(report.unrepaired().count(), 0);
}

/// Objects larger than verify's read buffer (256 KiB) and larger than what
/// is read into memory at all (16 MiB) are checked too: intact ones pass, a
/// flipped byte near the end of each is found.
#[test]
fn large_objects_are_checked_to_their_last_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), StoreOptions::default().loose()).unwrap();
    let sizes = [256 << 10, (256 << 10) + 1, 300 << 10, (16 << 20) + 5];
    let ids: Vec<ObjectId> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let payload = common::pseudo_random(n, 40 + i as u64);
            store.put_object(Kind::Blob, &[], &payload).unwrap()
        })
        .collect();
    let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.objects, ids.len() as u64);

    for id in &ids {
        let path = store.object_path(id);
        let len = fs::metadata(&path).unwrap().len() as usize;
        flip_byte(&path, len - 3);
    }
    let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    let expected: BTreeSet<_> = ids.iter().map(|id| store.object_path(id)).collect();
    assert_eq!(problems_of(&report, ProblemKind::CorruptObject), expected);
}
