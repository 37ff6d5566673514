//! verify over packed objects (`objects/pack/`): every packed object is
//! re-hashed and counted; damage inside a pack (an object's bytes, an index
//! record, a torn tail, a stray pack file) is reported with the pack's path;
//! repair rewrites a damaged pack without what it cannot keep, keeps the old
//! files in quarantine, leaves a pack a live writer holds alone, and leaves
//! a store that verifies clean.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{cli, code, flip_byte, pseudo_random, stdout};
use rask_store::pack::{self, HEADER_LEN, PackRecord, RECORD_LEN};
use rask_store::refs::Expect;
use rask_store::verify::{self, Problem, ProblemKind, RepairMode, VerifyOptions, VerifyReport};
use rask_store::{
    Component, Error, Index, Key, Kind, Lookup, Namespace, ObjectId, PackageName, Store,
    StoreOptions,
};

/// One object put into the store, as the test remembers it.
#[derive(Clone)]
struct Put {
    id: ObjectId,
    kind: Kind,
    links: Vec<ObjectId>,
    payload: Vec<u8>,
}

impl Put {
    /// The length of its encoding (a loose file's size).
    fn encoded_len(&self) -> u64 {
        20 + 32 * self.links.len() as u64 + self.payload.len() as u64
    }
}

/// A packed store of `n` small objects; every tenth links to the two
/// before it.
fn build(root: &Path, n: usize) -> (Store, Vec<Put>) {
    let store = Store::create(root, StoreOptions::default()).unwrap();
    let mut puts: Vec<Put> = Vec::new();
    for i in 0..n {
        let payload = pseudo_random(40 + (i * 131) % 2000, 7_000 + i as u64);
        let links: Vec<ObjectId> = if i % 10 == 9 {
            puts[i - 2..i].iter().map(|p| p.id).collect()
        } else {
            Vec::new()
        };
        let id = store.put_object(Kind::Instance, &links, &payload).unwrap();
        puts.push(Put {
            id,
            kind: Kind::Instance,
            links,
            payload,
        });
    }
    store.flush().unwrap();
    (store, puts)
}

fn repair_options() -> VerifyOptions {
    let mut options = VerifyOptions::default();
    options.repair = RepairMode::Repair;
    options
}

fn verify_only(store: &Store) -> VerifyReport {
    verify::verify(store, VerifyOptions::default(), &|_| {}).unwrap()
}

fn repair(store: &Store) -> VerifyReport {
    verify::verify(store, repair_options(), &|_| {}).unwrap()
}

/// `(data file, index file)` of every pack, sorted.
fn packs_of(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    let dir = root.join("objects/pack");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rsi") {
            out.push((path.with_extension("rsp"), path));
        }
    }
    out.sort();
    out
}

/// The one pack of `root` (panics if there are several).
fn only_pack(root: &Path) -> (PathBuf, PathBuf) {
    let packs = packs_of(root);
    assert_eq!(packs.len(), 1, "{packs:?}");
    packs[0].clone()
}

/// Where `id` is in the pack whose index is `index`.
fn record_of(index: &Path, id: &ObjectId) -> PackRecord {
    *pack::read_index(index)
        .unwrap()
        .records
        .iter()
        .find(|r| r.id == *id)
        .expect("the object is in this pack")
}

/// Files in `quarantine/` whose name starts with `prefix`.
fn quarantined(root: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root.join("quarantine")) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    out.sort();
    out
}

/// Appends bytes to a (read-only) store file.
fn append(path: &Path, bytes: &[u8]) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_string()
}

fn of_kind(report: &VerifyReport, kind: ProblemKind) -> Vec<&Problem> {
    report.problems.iter().filter(|p| p.kind == kind).collect()
}

/// Every object of `puts` reads back through `store` exactly as it was put.
fn assert_reads_back(store: &Store, puts: &[Put]) {
    for put in puts {
        let object = store
            .get_object(&put.id)
            .unwrap_or_else(|e| panic!("object {} no longer reads: {e}", put.id));
        assert_eq!(object.kind(), put.kind);
        assert_eq!(object.links(), &put.links[..]);
        assert_eq!(object.payload(), &put.payload[..], "object {}", put.id);
    }
}

fn assert_not_found(store: &Store, id: &ObjectId) {
    match store.get_object(id) {
        Err(e @ Error::NotFound { .. }) => assert!(e.is_cache_miss()),
        other => panic!("object {id}: expected NotFound, got {other:?}"),
    }
}

/// The objects of kind `kind` the statistics count.
fn counted(root: &Path, kind: Kind) -> i64 {
    let store = Store::open(root, StoreOptions::default()).unwrap();
    store
        .stats()
        .unwrap()
        .kinds
        .get(&kind)
        .map_or(0, |k| k.objects)
}

#[test]
fn a_clean_packed_store_verifies_clean_and_counts_every_object() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (store, puts) = build(&root, 300);
    // Nothing is loose: every object is in the store's pack.
    assert!(
        puts.iter().all(|p| !store.object_path(&p.id).exists()),
        "small objects are packed"
    );
    let (data, index) = only_pack(&root);
    assert_eq!(pack::read_index(&index).unwrap().records.len(), 300);

    let report = verify_only(&store);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert!(report.is_clean());
    assert_eq!(report.objects, 300, "every packed object is checked");
    let encoded: u64 = puts.iter().map(Put::encoded_len).sum();
    assert_eq!(report.bytes, encoded, "verify hashes every packed byte");
    assert_eq!(
        fs::metadata(&data).unwrap().len(),
        encoded + HEADER_LEN as u64
    );

    // The CLI says the same, and exits 0.
    let out = cli(&root, &["verify"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("checked 300 objects"),
        "{}",
        stdout(&out)
    );
    // The handle verify ran on still writes and reads: its next put goes
    // to a new pack.
    let extra = store.put_object(Kind::Blob, &[], b"after verify").unwrap();
    assert_eq!(store.get_object(&extra).unwrap().payload(), b"after verify");
    assert!(verify_only(&store).is_clean());
}

#[test]
fn a_flipped_byte_in_a_packed_object_is_reported_and_repair_rewrites_the_pack() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (store, puts) = build(&root, 200);
    let (data, index) = only_pack(&root);
    // Object 42 links to nothing; nothing links to it.
    let victim = puts[42].clone();
    assert!(victim.links.is_empty());
    let record = record_of(&index, &victim.id);
    flip_byte(&data, (record.offset + record.len - 3) as usize);
    let damaged_pack = fs::read(&data).unwrap();
    let before = counted(&root, Kind::Instance);

    let report = verify_only(&store);
    assert!(!report.is_clean());
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(p.kind, ProblemKind::CorruptObject);
    assert_eq!(p.path, data, "the problem names the pack's data file");
    assert!(p.detail.contains(&victim.id.to_hex()), "{}", p.detail);
    let range = format!("{}..{}", record.offset, record.offset + record.len);
    assert!(p.detail.contains(&range), "{}", p.detail);
    assert_eq!(report.objects, 200);
    // A get of it is a miss, never wrong bytes.
    assert!(store.get_object(&victim.id).unwrap_err().is_cache_miss());

    // The CLI agrees, and exits 3.
    let out = cli(&root, &["verify"]);
    assert_eq!(code(&out), 3, "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("corrupt-object: {}", data.display())),
        "{}",
        stdout(&out)
    );

    let repaired = repair(&store);
    assert_eq!(repaired.problems.len(), 1, "{:#?}", repaired.problems);
    let note = repaired.problems[0].repaired.as_deref().expect("repaired");
    assert!(note.contains("rewritten"), "{note}");
    assert!(note.contains("199 objects copied, 1 dropped"), "{note}");
    assert_eq!(repaired.damage_left().count(), 0);

    // The old pack is gone from the store, and kept whole in quarantine.
    assert!(!data.exists() && !index.exists());
    let (new_data, _) = only_pack(&root);
    assert_ne!(new_data, data);
    let kept_data = quarantined(&root, &file_name(&data));
    assert_eq!(kept_data.len(), 1, "{kept_data:?}");
    assert_eq!(fs::read(&kept_data[0]).unwrap(), damaged_pack);
    assert_eq!(quarantined(&root, &file_name(&index)).len(), 1);

    // The damaged object is now absent (a miss); every other object reads
    // back byte for byte, through this handle and through a new one.
    let others: Vec<Put> = puts.iter().filter(|p| p.id != victim.id).cloned().collect();
    assert_not_found(&store, &victim.id);
    assert_reads_back(&store, &others);
    let fresh = Store::open(&root, StoreOptions::default()).unwrap();
    assert_not_found(&fresh, &victim.id);
    assert_reads_back(&fresh, &others);
    drop(fresh);

    let again = verify_only(&store);
    assert!(again.problems.is_empty(), "{:#?}", again.problems);
    assert_eq!(again.objects, 199);
    let out = cli(&root, &["verify"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    // The statistics no longer count the dropped object.
    store.flush().unwrap();
    assert_eq!(counted(&root, Kind::Instance), before - 1);
    // Putting it again makes it whole.
    store
        .put_object(victim.kind, &victim.links, &victim.payload)
        .unwrap();
    assert_reads_back(&store, &puts);
}

#[test]
fn a_damaged_index_record_and_a_torn_tail_are_reported_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (store, puts) = build(&root, 100);
    let (data, index) = only_pack(&root);
    // Record 5 (object 5) gets a flipped byte in its offset field; an
    // append was cut short after the last record.
    let at = HEADER_LEN + 5 * RECORD_LEN + 35;
    flip_byte(&index, at);
    let torn_at = fs::metadata(&index).unwrap().len();
    append(&index, &[0xab; 23]);

    let report = verify_only(&store);
    assert_eq!(report.problems.len(), 2, "{:#?}", report.problems);
    assert!(report.problems.iter().all(|p| p.path == index));
    // The damaged record lost a published object: damage.
    let damaged = of_kind(&report, ProblemKind::DamagedPack);
    assert_eq!(damaged.len(), 1, "{:#?}", report.problems);
    let record_start = HEADER_LEN + 5 * RECORD_LEN;
    assert!(
        damaged[0]
            .detail
            .contains(&format!("record at byte {record_start}")),
        "{damaged:#?}"
    );
    // The torn tail is what a writer killed mid-append leaves: litter.
    let torn = of_kind(&report, ProblemKind::PackLeftover);
    assert_eq!(torn.len(), 1, "{:#?}", report.problems);
    assert!(
        torn[0].detail.contains("23 bytes")
            && torn[0].detail.contains(&format!("byte {torn_at}"))
            && torn[0].detail.contains("not a whole record"),
        "{torn:#?}"
    );
    assert!(ProblemKind::PackLeftover.is_litter());
    assert_eq!(report.objects, 99, "the damaged record names no object");
    let out = cli(&root, &["verify", "--json"]);
    assert_eq!(code(&out), 3);
    assert!(
        stdout(&out).contains("\"damaged-pack\""),
        "{}",
        stdout(&out)
    );
    // The object its damaged record named cannot be found: a miss.
    let fresh = Store::open(&root, StoreOptions::default()).unwrap();
    assert_not_found(&fresh, &puts[5].id);
    drop(fresh);

    let repaired = repair(&store);
    assert_eq!(
        repaired.damage_left().count(),
        0,
        "{:#?}",
        repaired.problems
    );
    assert!(repaired.problems.iter().all(|p| {
        p.repaired
            .as_deref()
            .is_some_and(|r| r.contains("99 objects copied"))
    }));
    assert!(!data.exists() && !index.exists());
    assert_eq!(quarantined(&root, &file_name(&index)).len(), 1);
    let again = verify_only(&store);
    assert!(again.problems.is_empty(), "{:#?}", again.problems);
    assert_eq!(again.objects, 99);
    let others: Vec<Put> = puts
        .iter()
        .filter(|p| p.id != puts[5].id)
        .cloned()
        .collect();
    assert_reads_back(&store, &others);
}

#[test]
fn a_torn_tail_in_a_pack_a_live_writer_holds_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let writer = Store::create(&root, StoreOptions::default()).unwrap();
    let put = writer.put_object(Kind::Ast, &[], b"being built").unwrap();
    let (_, index) = only_pack(&root);
    // Half a record: what an append in progress looks like.
    append(&index, &[0x11; RECORD_LEN / 2]);

    let other = Store::open(&root, StoreOptions::default()).unwrap();
    let report = verify_only(&other);
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.objects, 1);
    assert_eq!(other.get_object(&put).unwrap().payload(), b"being built");

    // Once the writer is gone, the half record is an append cut short:
    // litter (exit 0), which repair clears by rewriting the pack.
    drop(writer);
    let report = verify_only(&other);
    let torn = of_kind(&report, ProblemKind::PackLeftover);
    assert_eq!(torn.len(), 1, "{:#?}", report.problems);
    assert_eq!(torn[0].path, index);
    assert!(torn[0].detail.contains("not a whole record"));
    assert!(report.is_clean());
    let out = cli(&root, &["verify"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("pack-leftover: "), "{}", stdout(&out));
    let repaired = repair(&other);
    assert!(repaired.problems.iter().all(|p| p.repaired.is_some()));
    assert!(verify_only(&other).problems.is_empty());
    assert_eq!(other.get_object(&put).unwrap().payload(), b"being built");
}

#[test]
fn a_pack_held_by_a_live_writer_is_not_rewritten_and_the_report_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    // `writer` keeps its pack claimed while it lives; `verifier` is another
    // handle (its own open file, so its lock test sees the claim).
    let (writer, puts) = build(&root, 50);
    let (data, index) = only_pack(&root);
    // Nothing links to object 5.
    let victim = &puts[5];
    let record = record_of(&index, &victim.id);
    flip_byte(&data, (record.offset + record.len - 1) as usize);

    let verifier = Store::open(&root, StoreOptions::default()).unwrap();
    let report = repair(&verifier);
    let corrupt = of_kind(&report, ProblemKind::CorruptObject);
    assert_eq!(corrupt.len(), 1, "{:#?}", report.problems);
    assert_eq!(corrupt[0].path, data);
    assert_eq!(corrupt[0].repaired, None, "a held pack is not repaired");
    assert!(
        corrupt[0]
            .detail
            .contains("being written by a live process")
            && corrupt[0]
                .detail
                .contains("again after that process has exited"),
        "{}",
        corrupt[0].detail
    );
    assert_eq!(report.damage_left().count(), 1);
    // Left where it was, untouched.
    assert!(data.exists() && index.exists());
    assert!(quarantined(&root, &file_name(&data)).is_empty());
    assert_eq!(packs_of(&root).len(), 1);
    // The command says so too, and exits 3: the damage is still there.
    let out = cli(&root, &["verify", "--repair"]);
    assert_eq!(code(&out), 3, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("being written by a live process"),
        "{}",
        stdout(&out)
    );

    // Once the writer has exited, repair rewrites the pack.
    drop(writer);
    let report = repair(&verifier);
    assert_eq!(report.damage_left().count(), 0, "{:#?}", report.problems);
    assert!(!data.exists());
    assert_eq!(quarantined(&root, &file_name(&data)).len(), 1);
    assert!(verify_only(&verifier).is_clean());
    assert_not_found(&verifier, &victim.id);
}

#[test]
fn entries_refs_and_links_to_a_dropped_packed_object_are_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let store = Store::create(&root, StoreOptions::default()).unwrap();
    let index = Index::open(&store).unwrap();
    let ns = Namespace::new("rask-1.0").unwrap();
    let key_of = |i: u64| {
        Key::new(
            ns.clone(),
            vec![Component::str("instance"), Component::U64(i)],
        )
        .unwrap()
    };
    // An entry whose part is `leaf`, a chain root -> mid -> leaf that a ref
    // names, and an entry and a ref that have nothing to do with it.
    let leaf_bytes = pseudo_random(500, 1);
    index
        .put(&store, &key_of(1), Kind::Instance, &[("ast", &leaf_bytes)])
        .unwrap();
    let other_bytes = pseudo_random(700, 2);
    index
        .put(&store, &key_of(2), Kind::Instance, &[("ast", &other_bytes)])
        .unwrap();
    let leaf = rask_store::object::compute_id(Kind::Instance, &[], &leaf_bytes);
    let mid = store.put_object(Kind::Ast, &[leaf], b"mid").unwrap();
    let top = store.put_object(Kind::Root, &[mid], b"root").unwrap();
    let unrelated = store.put_object(Kind::Root, &[], b"unrelated").unwrap();
    let pkg = PackageName::new("app").unwrap();
    let lib = PackageName::new("lib").unwrap();
    store
        .update_ref(&ns, &pkg, Expect::Absent, top, "build")
        .unwrap();
    store
        .update_ref(&ns, &lib, Expect::Absent, unrelated, "build")
        .unwrap();
    store.flush().unwrap();
    drop(index);

    let (data, pack_index) = only_pack(&root);
    let record = record_of(&pack_index, &leaf);
    flip_byte(&data, (record.offset + record.len - 10) as usize);

    let report = verify_only(&store);
    let kinds: BTreeSet<(ProblemKind, PathBuf)> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.path.clone()))
        .collect();
    let expected = BTreeSet::from([
        (ProblemKind::CorruptObject, data.clone()),
        (
            ProblemKind::CorruptEntryPart,
            store.layout().index_dir().to_path_buf(),
        ),
        (ProblemKind::DanglingRef, store.layout().ref_path(&ns, &pkg)),
    ]);
    assert_eq!(kinds, expected, "{:#?}", report.problems);

    let repaired = repair(&store);
    assert_eq!(
        repaired.damage_left().count(),
        0,
        "{:#?}",
        repaired.problems
    );
    // mid and root (and the entry's own object, which links to its part)
    // could no longer be followed to the end: dropped from the pack too,
    // and reported as such.
    let dangling = of_kind(&repaired, ProblemKind::DanglingLink);
    for id in [mid, top] {
        assert!(
            dangling
                .iter()
                .any(|p| p.detail.starts_with(&format!("object {id} reaches {leaf}"))),
            "{:#?}",
            repaired.problems
        );
    }
    for p in &dangling {
        assert_eq!(p.path, data);
        let note = p.repaired.as_deref().unwrap();
        assert!(
            note.contains("closure is incomplete") && note.contains("dropped from pack"),
            "{note}"
        );
    }
    let again = verify_only(&store);
    assert!(again.problems.is_empty(), "{:#?}", again.problems);

    // What a build would see: the damaged entry and ref are gone (misses),
    // the others still hit.
    let fresh = Store::open(&root, StoreOptions::default()).unwrap();
    for id in [leaf, mid, top] {
        assert_not_found(&fresh, &id);
    }
    let index = Index::open(&fresh).unwrap();
    assert!(matches!(
        index.get(&fresh, &key_of(1), "ast").unwrap(),
        Lookup::Miss(_)
    ));
    match index.get(&fresh, &key_of(2), "ast").unwrap() {
        Lookup::Hit(bytes) => assert_eq!(bytes, other_bytes),
        Lookup::Miss(miss) => panic!("the intact entry misses: {miss:?}"),
    }
    assert_eq!(fresh.read_ref(&ns, &pkg).unwrap(), None);
    assert_eq!(fresh.read_ref(&ns, &lib).unwrap(), Some(unrelated));
}

#[test]
fn a_packed_object_linking_to_a_lost_one_is_reported_at_its_pack() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let store = Store::create(&root, StoreOptions::default()).unwrap();
    let lost = store.put_object(Kind::Ast, &[], b"lost").unwrap();
    let parent = store.put_object(Kind::Ast, &[lost], b"parent").unwrap();
    let fine = store.put_object(Kind::Ast, &[], b"fine").unwrap();
    store.flush().unwrap();
    let (data, index) = only_pack(&root);
    // The record of `lost` (the first) is damaged: `lost` can no longer be
    // found, and `parent` links to nothing.
    flip_byte(&index, HEADER_LEN + 3);

    let report = verify_only(&store);
    let dangling = of_kind(&report, ProblemKind::DanglingLink);
    assert_eq!(dangling.len(), 1, "{:#?}", report.problems);
    assert_eq!(dangling[0].path, data, "named by the pack that holds it");
    assert!(dangling[0].detail.contains(&parent.to_hex()));
    assert!(dangling[0].detail.contains(&lost.to_hex()));

    let repaired = repair(&store);
    assert_eq!(
        repaired.damage_left().count(),
        0,
        "{:#?}",
        repaired.problems
    );
    assert!(verify_only(&store).problems.is_empty());
    assert_not_found(&store, &parent);
    assert_eq!(store.get_object(&fine).unwrap().payload(), b"fine");
}

#[test]
fn a_damaged_copy_does_not_make_an_object_with_an_intact_copy_bad() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let store = Store::create(&root, StoreOptions::default()).unwrap();
    let payload = pseudo_random(3000, 9);
    let id = store.put_object(Kind::Meta, &[], &payload).unwrap();
    let ns = Namespace::new("rask-1.0").unwrap();
    let pkg = PackageName::new("app").unwrap();
    store
        .update_ref(&ns, &pkg, Expect::Absent, id, "build")
        .unwrap();
    store.flush().unwrap();
    // A second copy, loose: the packed encoding is a loose file's bytes.
    let (data, index) = only_pack(&root);
    let record = record_of(&index, &id);
    let encoding = fs::read(&data).unwrap()
        [record.offset as usize..(record.offset + record.len) as usize]
        .to_vec();
    fs::write(store.object_path(&id), &encoding).unwrap();
    flip_byte(&data, (record.offset + record.len - 1) as usize);

    let report = verify_only(&store);
    // The damaged copy is reported; the ref is not, since the object is
    // intact in its loose copy.
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert_eq!(report.problems[0].kind, ProblemKind::CorruptObject);
    assert_eq!(report.problems[0].path, data);
    assert_eq!(report.objects, 2, "both copies are checked");

    let repaired = repair(&store);
    assert_eq!(
        repaired.damage_left().count(),
        0,
        "{:#?}",
        repaired.problems
    );
    assert!(verify_only(&store).problems.is_empty());
    assert_eq!(store.read_ref(&ns, &pkg).unwrap(), Some(id));
    let fresh = Store::open(&root, StoreOptions::default()).unwrap();
    assert_eq!(fresh.get_object(&id).unwrap().payload(), &payload[..]);
}

#[test]
fn strays_and_leftovers_in_the_pack_directory_are_reported_unless_a_writer_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (store, puts) = build(&root, 20);
    let (data, index) = only_pack(&root);
    let pack_dir = root.join("objects/pack");
    // A data file without its index (what a writer killed while making its
    // pack leaves), an index without its data file, and a file that is no
    // pack file at all.
    let lone_data = pack_dir.join("00000000000000000001-orphan.rsp");
    fs::copy(&data, &lone_data).unwrap();
    let lone_index = pack_dir.join("00000000000000000002-orphan.rsi");
    fs::copy(&index, &lone_index).unwrap();
    let junk = pack_dir.join("notes.txt");
    fs::write(&junk, "junk").unwrap();
    // A data file a live writer holds, before it made its index.
    let making = pack_dir.join("00000000000000000003-making.rsp");
    let claim = File::create(&making).unwrap();
    claim.lock().unwrap();

    let report = verify_only(&store);
    let paths = |report: &VerifyReport, kind: ProblemKind| -> BTreeSet<PathBuf> {
        of_kind(report, kind)
            .iter()
            .map(|p| p.path.clone())
            .collect()
    };
    assert_eq!(
        paths(&report, ProblemKind::StrayFile),
        BTreeSet::from([lone_index.clone(), junk.clone()]),
        "{:#?}",
        report.problems
    );
    assert_eq!(
        paths(&report, ProblemKind::PackLeftover),
        BTreeSet::from([lone_data.clone()]),
        "{:#?}",
        report.problems
    );
    assert_eq!(report.problems.len(), 3, "{:#?}", report.problems);
    // The real pack is checked once.
    assert_eq!(report.objects, 20);

    // Once its writer is gone, the lone data file it held is a leftover
    // too.
    drop(claim);
    let repaired = repair(&store);
    assert_eq!(
        paths(&repaired, ProblemKind::PackLeftover),
        BTreeSet::from([lone_data.clone(), making.clone()])
    );
    assert_eq!(
        repaired.damage_left().count(),
        0,
        "{:#?}",
        repaired.problems
    );
    for path in [&lone_data, &lone_index, &junk, &making] {
        assert!(!path.exists(), "{}", path.display());
        assert_eq!(quarantined(&root, &file_name(path)).len(), 1);
    }
    assert!(verify_only(&store).problems.is_empty());
    assert_reads_back(&store, &puts);
}

#[test]
fn a_damaged_pack_header_is_reported_and_repaired() {
    // A data file whose magic is damaged: its objects still check by their
    // ids, so repair copies every one into a new pack.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let (store, puts) = build(&root, 30);
    let (data, index) = only_pack(&root);
    flip_byte(&data, 1);
    let report = verify_only(&store);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert_eq!(report.problems[0].kind, ProblemKind::DamagedPack);
    assert_eq!(report.problems[0].path, data);
    assert!(report.problems[0].detail.contains("bad magic"));
    assert_eq!(report.objects, 30, "its objects are checked all the same");
    let repaired = repair(&store);
    let note = repaired.problems[0].repaired.as_deref().unwrap();
    assert!(note.contains("30 objects copied, 0 dropped"), "{note}");
    assert!(!data.exists() && !index.exists());
    assert!(verify_only(&store).problems.is_empty());
    assert_reads_back(&store, &puts);

    // An index whose header is damaged: none of the pack's objects can be
    // found, so the pack goes to quarantine whole.
    let root = dir.path().join("index");
    let (store, puts) = build(&root, 30);
    let (data, index) = only_pack(&root);
    flip_byte(&index, 0);
    let report = verify_only(&store);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert_eq!(report.problems[0].kind, ProblemKind::DamagedPack);
    assert_eq!(report.problems[0].path, index);
    assert!(
        report.problems[0]
            .detail
            .contains("none of its objects can be found")
    );
    let repaired = repair(&store);
    assert_eq!(
        repaired.damage_left().count(),
        0,
        "{:#?}",
        repaired.problems
    );
    assert!(packs_of(&root).is_empty());
    assert_eq!(quarantined(&root, &file_name(&data)).len(), 1);
    assert_eq!(quarantined(&root, &file_name(&index)).len(), 1);
    assert!(verify_only(&store).problems.is_empty());
    let fresh = Store::open(&root, StoreOptions::default()).unwrap();
    for put in &puts {
        assert_not_found(&fresh, &put.id);
    }
}

#[test]
fn a_pack_of_another_format_version_is_reported_and_left_as_it_is() {
    // A data file of another version: not this build's to judge or rewrite.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (store, _puts) = build(&root, 10);
    let (data, index) = only_pack(&root);
    flip_byte(&data, 5); // the version's second byte: 1 becomes 257
    let report = verify_only(&store);
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(problem.kind, ProblemKind::DamagedPack);
    assert_eq!(problem.path, data);
    assert!(
        problem.detail.contains("of version 257"),
        "{}",
        problem.detail
    );
    assert!(problem.detail.contains("repair leaves the pack as it is"));
    let repaired = repair(&store);
    assert_eq!(repaired.problems.len(), 1);
    assert!(data.exists() && index.exists(), "repair leaves both files");
}

/// A pack larger than one of verify's work items (64 MiB) is checked in
/// parts by both workers: every object is counted once, and damage in a
/// later part is reported once, at its place.
#[test]
fn a_pack_checked_in_parts_counts_every_object_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let store = Store::create(&root, StoreOptions::default()).unwrap();
    // 2,400 objects of 60,000 bytes: ~137 MiB in one pack, three parts.
    let ids: Vec<ObjectId> = (0..2_400u64)
        .map(|i| {
            let mut payload = vec![(i % 251) as u8; 60_000];
            payload[..8].copy_from_slice(&i.to_le_bytes());
            store.put_object(Kind::Blob, &[], &payload).unwrap()
        })
        .collect();
    drop(store);
    let copies = common::stored_objects(&root);
    assert_eq!(copies.len(), ids.len());
    let packs: BTreeSet<PathBuf> = copies.iter().map(|(_, c)| c.file().to_path_buf()).collect();
    assert_eq!(packs.len(), 1, "{packs:?}");

    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let clean = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    assert!(clean.is_clean(), "{:?}", clean.problems);
    assert_eq!(clean.objects, ids.len() as u64);
    assert_eq!(clean.bytes, ids.len() as u64 * (20 + 60_000));

    // Damage two thirds of the way in: a later part's.
    let (victim, copy) = &copies[1_700];
    common::flip_byte(copy.file(), copy.start() as usize + 30_000);
    let report = verify::verify(&store, VerifyOptions::default(), &|_| {}).unwrap();
    assert_eq!(report.objects, ids.len() as u64);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(p.kind, ProblemKind::CorruptObject);
    assert!(p.detail.contains(&victim.to_hex()), "{}", p.detail);
}
