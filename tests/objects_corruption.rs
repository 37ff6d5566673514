//! Damaged object files are reported as `Corrupt`, never returned, and
//! repaired by putting the same content again.

mod common;

use std::fs;
use std::path::Path;

use common::{cli, code, current_copy, cut_object, flip_byte, layouts, overwrite, stderr};
use rask_store::object::HEADER_LEN;
use rask_store::{Error, Kind, ObjectBuf, ObjectId, Store, StoreOptions};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    link: ObjectId,
    id: ObjectId,
    payload: Vec<u8>,
}

fn fixture(options: StoreOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("cache"), options).unwrap();
    let link = store.put_object(Kind::Blob, &[], b"callee").unwrap();
    let payload = b"fn sort<T>(items: Vec<T>) { swap(..) }".to_vec();
    let id = store.put_object(Kind::Ast, &[link], &payload).unwrap();
    Fixture {
        _dir: dir,
        store,
        link,
        id,
        payload,
    }
}

fn assert_corrupt(store: &Store, id: &ObjectId, case: &str) {
    let err = store.get_object(id).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{case}: {err:?}");
    assert!(err.is_cache_miss(), "{case}");
    let path = current_copy(store.root(), id).file().display().to_string();
    assert!(
        err.to_string().contains(&path),
        "{case}: message lacks path: {err}"
    );
    // So does the read into a reused buffer, whether it is fresh or holds
    // a good object's bytes from an earlier get.
    for mut buf in [ObjectBuf::new(), filled_buf(store, id)] {
        let err = store.get_object_into(id, &mut buf).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { .. }),
            "{case}: into: {err:?}"
        );
        assert!(err.to_string().contains(&path), "{case}: into: {err}");
    }
    // The bounded-memory paths agree.
    assert!(
        matches!(store.object_info(id), Err(Error::Corrupt { .. })),
        "{case}: info"
    );
    let mut out = Vec::new();
    assert!(
        matches!(
            store.write_payload(id, &mut out),
            Err(Error::Corrupt { .. })
        ),
        "{case}: write"
    );
    assert!(
        out.is_empty(),
        "{case}: bytes were written before the check failed"
    );
}

/// A buffer that has held a good object as long as the fixture's (its
/// stale bytes must not stand in for a damaged file's).
fn filled_buf(store: &Store, id: &ObjectId) -> ObjectBuf {
    let mut payload = vec![7u8; 4000];
    payload[..32].copy_from_slice(id.as_bytes());
    let other = store.put_object(Kind::Blob, &[*id], &payload).unwrap();
    let mut buf = ObjectBuf::new();
    assert_eq!(
        store.get_object_into(&other, &mut buf).unwrap().payload(),
        &payload[..]
    );
    buf
}

fn assert_repaired_by_put(f: &Fixture, case: &str) {
    let again = f
        .store
        .put_object(Kind::Ast, &[f.link], &f.payload)
        .unwrap();
    assert_eq!(again, f.id);
    let object = f
        .store
        .get_object(&f.id)
        .unwrap_or_else(|e| panic!("{case}: not repaired: {e}"));
    assert_eq!(object.payload(), f.payload.as_slice(), "{case}");
    let mut buf = ObjectBuf::new();
    let object = f.store.get_object_into(&f.id, &mut buf).unwrap();
    assert_eq!(object.payload(), f.payload.as_slice(), "{case}: into");
    assert_eq!(object.links(), &[f.link], "{case}: into");
}

#[test]
fn a_flipped_byte_anywhere_is_detected_and_repaired() {
    for (layout, options) in layouts() {
        let f = fixture(options);
        let len = current_copy(f.store.root(), &f.id).bytes().len();
        // Every header byte, a link byte, and payload bytes at both ends.
        let mut offsets: Vec<usize> = (0..HEADER_LEN).collect();
        offsets.extend([HEADER_LEN, HEADER_LEN + 31, HEADER_LEN + 32, len - 1]);
        for offset in offsets {
            let case = format!("{layout}: flipped byte at offset {offset}");
            let copy = current_copy(f.store.root(), &f.id);
            flip_byte(copy.file(), copy.start() as usize + offset);
            assert_corrupt(&f.store, &f.id, &case);
            assert_repaired_by_put(&f, &case);
        }
    }
}

#[test]
fn a_pack_cut_short_inside_an_object_reads_as_corrupt() {
    let (_, packed) = layouts()[1];
    let f = fixture(packed);
    let len = current_copy(f.store.root(), &f.id).bytes().len() as u64;
    for keep in [0, 7, HEADER_LEN as u64 + 5, len - 3] {
        let case = format!("pack cut {keep} bytes into the object");
        cut_object(f.store.root(), &f.id, keep);
        assert_corrupt(&f.store, &f.id, &case);
        assert_repaired_by_put(&f, &case);
    }
}

#[test]
fn truncated_empty_and_extended_files_are_corrupt() {
    let f = fixture(StoreOptions::default().loose());
    let path = f.store.object_path(&f.id);
    let good = fs::read(&path).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zero-length file", Vec::new()),
        ("truncated inside the header", good[..7].to_vec()),
        (
            "truncated inside the links",
            good[..HEADER_LEN + 5].to_vec(),
        ),
        (
            "truncated inside the payload",
            good[..good.len() - 3].to_vec(),
        ),
        ("trailing garbage", [good.as_slice(), b"xx"].concat()),
    ];
    for (case, bytes) in cases {
        overwrite(&path, &bytes);
        assert_corrupt(&f.store, &f.id, case);
        assert_repaired_by_put(&f, case);
    }
}

#[test]
fn an_object_under_the_wrong_name_is_corrupt() {
    let f = fixture(StoreOptions::default().loose());
    let wrong = f.store.object_path(&f.link);
    fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fs::copy(f.store.object_path(&f.id), &wrong).unwrap();
    let err = f.store.get_object(&f.link).unwrap_err();
    assert!(
        err.to_string().contains("not to the id it is stored under"),
        "{err}"
    );
    let err = f
        .store
        .get_object_into(&f.link, &mut ObjectBuf::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("not to the id it is stored under"),
        "{err}"
    );
    // A put of the real content replaces the impostor.
    f.store.put_object(Kind::Blob, &[], b"callee").unwrap();
    assert_eq!(f.store.get_object(&f.link).unwrap().payload(), b"callee");
}

#[test]
fn the_cli_reports_corruption_with_exit_1_and_writes_nothing() {
    for (_, options) in layouts() {
        cli_reports_corruption(options);
    }
}

fn cli_reports_corruption(options: StoreOptions) {
    let f = fixture(options);
    let copy = current_copy(f.store.root(), &f.id);
    let path = copy.file().to_path_buf();
    flip_byte(&path, copy.start() as usize + HEADER_LEN + 40);
    let id = f.id.to_hex();
    let root = f.store.root();
    for args in [vec!["get", id.as_str()], vec!["show", id.as_str()]] {
        let out = cli(root, &args);
        assert_eq!(code(&out), 1, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: wrote {:?}", out.stdout);
        let err = stderr(&out);
        assert!(
            err.contains("corrupt object") && err.contains(&path.display().to_string()),
            "{err}"
        );
        assert!(
            err.contains("putting the same content again replaces it"),
            "{err}"
        );
    }
    let target = root.parent().unwrap().join("out.bin");
    let out = cli(root, &["get", &id, "-o", target.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        !target.exists(),
        "-o left a file behind for a corrupt object"
    );
    assert!(no_stray_files(root.parent().unwrap()));
}

fn no_stray_files(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".rask-store-get")
    })
}

/// A pack index record whose checksum holds but which names bytes past the
/// end of its data file (an index written back before its data, then the
/// data lost) is never used to size a read: the object reads as absent,
/// the others in the pack still read, and nothing panics.
#[test]
fn a_packed_record_past_the_end_of_its_pack_reads_as_absent() {
    let (_, packed) = layouts()[1];
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let (kept, lost) = {
        let store = Store::create(&root, packed).unwrap();
        let kept = store.put_object(Kind::Blob, &[], b"kept").unwrap();
        let lost = store.put_object(Kind::Blob, &[], b"lost").unwrap();
        (kept, lost)
    };
    // Rewrite the second record to claim an enormous length, checksum and all.
    let copy = current_copy(&root, &lost);
    let index = copy.file().with_extension("rsi");
    let mut bytes = fs::read(&index).unwrap();
    let at = rask_store::pack::HEADER_LEN + rask_store::pack::RECORD_LEN;
    bytes[at + 40..at + 48].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let sum = rask_store::index::record::xxh64(&bytes[at..at + 56], rask_store::pack::RECORD_SEED);
    bytes[at + 56..at + 64].copy_from_slice(&sum.to_le_bytes());
    overwrite(&index, &bytes);

    let store = Store::open(&root, packed).unwrap();
    assert_eq!(store.get_object(&kept).unwrap().payload(), b"kept");
    let err = store.get_object(&lost).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(!store.contains_object(&lost).unwrap());
    // Putting it again brings it back.
    store.put_object(Kind::Blob, &[], b"lost").unwrap();
    assert_eq!(store.get_object(&lost).unwrap().payload(), b"lost");
}

#[test]
fn a_damaged_newest_packed_copy_is_read_from_an_older_intact_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let payload = b"fn max<T: Ord>(a: T, b: T) -> T { .. }".repeat(40);
    let id = {
        let store = Store::create(&root, StoreOptions::default()).unwrap();
        store.put_object(Kind::Ast, &[], &payload).unwrap()
    };
    // A second copy: the first damaged, so a put by a new handle appends
    // a good one to its own pack; then the first is mended and the second
    // damaged, leaving the newest copy bad and an older one intact.
    let first = current_copy(&root, &id);
    flip_byte(first.file(), (first.start() + 60) as usize);
    {
        let store = Store::open(&root, StoreOptions::default()).unwrap();
        store.put_object(Kind::Ast, &[], &payload).unwrap();
    }
    let second = current_copy(&root, &id);
    assert_ne!(second, first, "the put wrote a second copy");
    flip_byte(first.file(), (first.start() + 60) as usize);
    flip_byte(second.file(), (second.start() + 70) as usize);

    let store = Store::open(&root, StoreOptions::default()).unwrap();
    assert_eq!(store.get_object(&id).unwrap().payload(), &payload[..]);
    let mut buf = ObjectBuf::new();
    let object = store.get_object_into(&id, &mut buf).unwrap();
    assert_eq!(object.payload(), &payload[..]);
    // A fresh handle's first read goes through the buffer path too.
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let object = store.get_object_into(&id, &mut buf).unwrap();
    assert_eq!(object.payload(), &payload[..]);
    let mut out = Vec::new();
    store.write_payload(&id, &mut out).unwrap();
    assert_eq!(out, payload);
    // The damage is still there for verify to report.
    let out = cli(&root, &["verify"]);
    assert_ne!(code(&out), 0, "verify reports the damaged copy");

    // With every copy damaged, the read is Corrupt.
    flip_byte(first.file(), (first.start() + 60) as usize);
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    assert!(matches!(store.get_object(&id), Err(Error::Corrupt { .. })));
    assert!(matches!(
        store.get_object_into(&id, &mut buf),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_loose_copy_is_read_when_every_packed_copy_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let payload = b"impl<T: Ord> Ord for Vec<T> { .. }".repeat(50);
    // The same object as a loose file and in a pack: written loose by a
    // handle that writes no packs, set aside while a packing handle puts
    // it again, then put back.
    let id = {
        let store = Store::create(&root, StoreOptions::default().loose()).unwrap();
        store.put_object(Kind::Ast, &[], &payload).unwrap()
    };
    let loose = Store::open(&root, StoreOptions::default())
        .unwrap()
        .object_path(&id);
    let loose_bytes = fs::read(&loose).unwrap();
    fs::remove_file(&loose).unwrap();
    {
        let store = Store::open(&root, StoreOptions::default()).unwrap();
        store.put_object(Kind::Ast, &[], &payload).unwrap();
    }
    fs::write(&loose, &loose_bytes).unwrap();
    let packed = current_copy(&root, &id);
    flip_byte(packed.file(), (packed.start() + 60) as usize);

    let store = Store::open(&root, StoreOptions::default()).unwrap();
    assert_eq!(store.get_object(&id).unwrap().payload(), &payload[..]);
    let mut buf = ObjectBuf::new();
    assert_eq!(
        store.get_object_into(&id, &mut buf).unwrap().payload(),
        &payload[..]
    );
    let mut out = Vec::new();
    store.write_payload(&id, &mut out).unwrap();
    assert_eq!(out, payload);
    let got = cli(&root, &["get", &id.to_hex()]);
    assert_eq!(code(&got), 0, "{}", stderr(&got));
    assert_eq!(got.stdout, payload);

    // With the loose copy damaged too, every read is Corrupt.
    flip_byte(&loose, loose_bytes.len() - 5);
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    assert!(matches!(store.get_object(&id), Err(Error::Corrupt { .. })));
    assert!(matches!(
        store.get_object_into(&id, &mut buf),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        store.write_payload(&id, &mut Vec::new()),
        Err(Error::Corrupt { .. })
    ));
}
