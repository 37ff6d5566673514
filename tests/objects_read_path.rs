//! The object read and publish paths a benchmark leans on: every payload
//! size reads back exactly (small ones in one `read`, larger ones in two, or
//! one into a reused buffer),
//! a file that is shorter or longer than its header says is `Corrupt`, and
//! a published object file is read-only.

use std::fs::{self, OpenOptions};
use std::io::Write;

use rask_store::{Durability, Error, Kind, ObjectBuf, Store, StoreOptions};

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn payloads_of_every_size_class_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), StoreOptions::with_durability(Durability::None)).unwrap();
    let mut buf = ObjectBuf::new();
    for len in [
        0, 1, 11, 8_171, 8_172, 8_173, 65_536, 100_000, 262_144, 300_001, 7,
    ] {
        let bytes = payload(len);
        let id = store.put_object(Kind::Instance, &[], &bytes).unwrap();
        let object = store.get_object(&id).unwrap();
        assert_eq!(object.payload(), &bytes[..], "get_object, {len} bytes");
        let object = store.get_object_into(&id, &mut buf).unwrap();
        assert_eq!(object.payload(), &bytes[..], "get_object_into, {len} bytes");
        let mut out = Vec::new();
        store.write_payload(&id, &mut out).unwrap();
        assert_eq!(out, bytes, "write_payload, {len} bytes");
    }
}

#[test]
fn a_file_shorter_or_longer_than_its_header_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), StoreOptions::default().loose()).unwrap();
    let bytes = payload(20_000);
    for change in ["truncate", "extend"] {
        let id = store.put_object(Kind::Blob, &[], &bytes).unwrap();
        let path = store.object_path(&id);
        let mut perms = fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&path, perms).unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        if change == "truncate" {
            file.set_len(file.metadata().unwrap().len() - 1).unwrap();
        } else {
            (&file).write_all(b"trailing").unwrap();
        }
        drop(file);
        let err = store.get_object(&id).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{change}: {err}");
        let err = store.write_payload(&id, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{change}: {err}");
        // Putting the good bytes again repairs it.
        store.put_object(Kind::Blob, &[], &bytes).unwrap();
        assert_eq!(store.get_object(&id).unwrap().payload(), &bytes[..]);
    }
}

#[cfg(unix)]
#[test]
fn published_objects_are_read_only_for_everyone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let loose = Store::create(dir.path(), StoreOptions::default().loose()).unwrap();
    let id = loose.put_object(Kind::Ast, &[], b"fn main() {}").unwrap();
    let mode = fs::metadata(loose.object_path(&id))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o444);
    // Pack files too, from the moment they are made: only their writer's
    // own descriptor writes to them.
    let packed = Store::open(dir.path(), StoreOptions::default()).unwrap();
    packed
        .put_object(Kind::Ast, &[], b"fn packed() {}")
        .unwrap();
    let pack_dir = dir.path().join("objects/pack");
    let files: Vec<_> = fs::read_dir(&pack_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for file in files {
        let mode = fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444, "{}", file.display());
    }
}

/// Large payloads are hashed on two threads when read; the digest must be
/// BLAKE3's own (the id FORMAT.md defines, computed here on one thread with
/// the `blake3` crate), and a flipped byte anywhere in the payload — in the
/// caller's pieces or the worker's — must still read as `Corrupt`.
#[test]
fn large_payloads_verify_on_two_threads_and_every_flipped_byte_is_caught() {
    use rask_store::object::{HEADER_LEN, ID_CONTEXT, PARALLEL_MIN};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), StoreOptions::with_durability(Durability::None)).unwrap();
    let bytes = payload(3 * PARALLEL_MIN + 777);
    let id = store.put_object(Kind::Instance, &[], &bytes).unwrap();
    let mut expected = blake3::Hasher::new_derive_key(ID_CONTEXT);
    expected.update(&[Kind::Instance as u8]);
    expected.update(&0u32.to_le_bytes());
    expected.update(&(bytes.len() as u64).to_le_bytes());
    expected.update(blake3::hash(&bytes).as_bytes());
    assert_eq!(id.as_bytes(), expected.finalize().as_bytes());
    for _ in 0..20 {
        assert_eq!(store.get_object(&id).unwrap().payload(), &bytes[..]);
    }
    let path = store.object_path(&id);
    for offset in [0, 1024, PARALLEL_MIN, 2 * PARALLEL_MIN + 5, bytes.len() - 1] {
        let mut file = fs::read(&path).unwrap();
        file[HEADER_LEN + offset] ^= 0x01;
        fs::remove_file(&path).unwrap();
        fs::write(&path, &file).unwrap();
        let err = store.get_object(&id).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { .. }),
            "offset {offset}: {err}"
        );
        // Putting the good bytes again repairs it.
        store.put_object(Kind::Instance, &[], &bytes).unwrap();
        assert_eq!(store.get_object(&id).unwrap().payload(), &bytes[..]);
    }
}
