//! Pack files (`src/pack.rs`): round trips, one writer per pack, and every
//! state a crash or damage can leave a pack in. Each state must read back as
//! absent or `Corrupt`, never as wrong bytes.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rask_store::object::compute_id;
use rask_store::pack::{self, HEADER_LEN, Pack, PackRecord, PackWriter, RECORD_LEN};
use rask_store::{Error, Kind, ObjectId};

struct Files {
    _dir: tempfile::TempDir,
    data: PathBuf,
    index: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("1-1.rsp");
    let index = dir.path().join("1-1.rsi");
    Files {
        _dir: dir,
        data,
        index,
    }
}

/// Payloads of uneven sizes (0 B to ~70 KiB), each distinct.
fn payload(n: usize) -> Vec<u8> {
    let len = (n * 7919) % 70_000;
    (0..len).map(|i| (i * 31 + n * 17) as u8).collect()
}

/// A pack of `n` objects; object `i` links to object `i - 1`.
fn written(f: &Files, n: usize) -> Vec<(PackRecord, Vec<u8>)> {
    let mut w = PackWriter::create(&f.data, &f.index).unwrap();
    let mut out: Vec<(PackRecord, Vec<u8>)> = Vec::new();
    for i in 0..n {
        let links: Vec<ObjectId> = out.last().map(|(r, _)| r.id).into_iter().collect();
        let p = payload(i);
        let record = w.append(Kind::Ast, &links, &p).unwrap();
        out.push((record, p));
    }
    w.sync().unwrap();
    out
}

/// Every record the index lists reads back as the object written under it.
fn assert_listed_read_back(f: &Files, listed: &[PackRecord], objects: &[(PackRecord, Vec<u8>)]) {
    let pack = Pack::open(&f.data).unwrap();
    for record in listed {
        let (_, p) = objects
            .iter()
            .find(|(w, _)| w.id == record.id)
            .expect("only records of objects written");
        assert_eq!(pack.read(record).unwrap().payload(), &p[..]);
    }
}

fn flip(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x20;
    file.write_all_at(&b, offset).unwrap();
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn every_appended_object_reads_back_with_its_kind_links_and_payload() {
    let f = files();
    let objects = written(&f, 40);
    let index = pack::read_index(&f.index).unwrap();
    assert_eq!(index.records.len(), 40);
    assert!(index.damaged.is_empty() && index.torn_tail.is_none());
    let pack = Pack::open(&f.data).unwrap();
    for (i, ((record, p), listed)) in objects.iter().zip(&index.records).enumerate() {
        assert_eq!(record, listed, "record {i} as the index lists it");
        let links: Vec<ObjectId> = (i > 0).then(|| objects[i - 1].0.id).into_iter().collect();
        assert_eq!(
            record.id,
            compute_id(Kind::Ast, &links, p),
            "object {i}'s id"
        );
        let object = pack.read(record).unwrap();
        assert_eq!(object.payload(), &p[..], "object {i}'s payload");
        assert_eq!(object.links(), &links[..]);
        assert_eq!(object.kind(), Kind::Ast);
    }
    // Objects lie back to back after the header.
    assert_eq!(objects[0].0.offset, HEADER_LEN as u64);
    for pair in objects.windows(2) {
        assert_eq!(pair[1].0.offset, pair[0].0.offset + pair[0].0.len);
    }
}

#[test]
fn a_pack_is_claimed_by_its_writer_and_an_existing_pack_is_never_overwritten() {
    let f = files();
    let first = PackWriter::create(&f.data, &f.index).unwrap();
    assert!(pack::is_being_written(&f.data).unwrap());
    let second = PackWriter::create(&f.data, &f.index).unwrap_err();
    assert!(matches!(second, Error::Io { .. }), "{second}");
    assert!(second.to_string().contains("1-1.rsp"), "{second}");
    drop(first);
    assert!(!pack::is_being_written(&f.data).unwrap());
    assert!(pack::read_index(&f.index).unwrap().records.is_empty());
}

#[test]
fn a_record_cut_short_is_a_torn_tail_and_its_object_is_absent() {
    let f = files();
    let objects = written(&f, 5);
    let full = fs::metadata(&f.index).unwrap().len();
    truncate(&f.index, full - (RECORD_LEN as u64) / 2);
    let index = pack::read_index(&f.index).unwrap();
    assert_eq!(index.records.len(), 4);
    assert_eq!(
        index.torn_tail,
        Some((full - RECORD_LEN as u64, (RECORD_LEN / 2) as u64))
    );
    assert!(!index.records.iter().any(|r| r.id == objects[4].0.id));
    assert_listed_read_back(&f, &index.records, &objects);
}

#[test]
fn bytes_written_without_their_record_are_invisible() {
    // A writer killed between an object's bytes and its record.
    let f = files();
    let objects = written(&f, 3);
    let data = OpenOptions::new().append(true).open(&f.data).unwrap();
    use std::io::Write;
    (&data).write_all(&payload(99)).unwrap();
    let index = pack::read_index(&f.index).unwrap();
    assert_eq!(index.records.len(), 3);
    assert!(index.damaged.is_empty() && index.torn_tail.is_none());
    assert_listed_read_back(&f, &index.records, &objects);
}

#[test]
fn a_damaged_record_is_reported_and_skipped_and_the_others_still_read() {
    let f = files();
    let objects = written(&f, 6);
    let third = (HEADER_LEN + 2 * RECORD_LEN) as u64;
    flip(&f.index, third + 40); // its length field
    let index = pack::read_index(&f.index).unwrap();
    assert_eq!(index.records.len(), 5);
    assert_eq!(index.damaged.len(), 1);
    assert_eq!(index.damaged[0].0, third);
    assert!(!index.records.iter().any(|r| r.id == objects[2].0.id));
    assert_listed_read_back(&f, &index.records, &objects);
}

#[test]
fn a_flipped_byte_in_an_object_is_corrupt_and_names_the_pack() {
    let f = files();
    let objects = written(&f, 4);
    let (victim, _) = &objects[2];
    // The header's kind byte, a link, and the last payload byte.
    for at in [4, 40, victim.len - 1] {
        flip(&f.data, victim.offset + at);
        let pack = Pack::open(&f.data).unwrap();
        let err = pack.read(victim).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "byte {at}: {err}");
        assert!(err.is_cache_miss(), "byte {at}: {err}");
        assert!(err.to_string().contains("1-1.rsp"), "byte {at}: {err}");
        flip(&f.data, victim.offset + at);
        assert_eq!(pack.read(victim).unwrap().payload(), &objects[2].1[..]);
    }
    // Its neighbours never noticed.
    assert_listed_read_back(&f, &[objects[1].0, objects[3].0], &objects);
}

#[test]
fn a_record_past_the_end_of_a_cut_pack_is_corrupt_not_a_short_read() {
    // Power loss with the index written back and the data not.
    let f = files();
    let objects = written(&f, 4);
    let (last, _) = &objects[3];
    truncate(&f.data, last.offset + last.len / 2);
    let pack = Pack::open(&f.data).unwrap();
    let err = pack.read(last).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("outside the pack"), "{err}");
    assert_listed_read_back(&f, &[objects[2].0], &objects);
}

#[test]
fn a_foreign_or_newer_file_is_refused_with_what_it_found() {
    let f = files();
    written(&f, 1);
    // A newer version of each file.
    for path in [&f.data, &f.index] {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(&2u32.to_le_bytes(), 4).unwrap();
    }
    let err = Pack::open(&f.data).unwrap_err();
    assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err}");
    assert!(err.to_string().contains("version 2"), "{err}");
    let err = pack::read_index(&f.index).unwrap_err();
    assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err}");
    // Not a pack at all, and an empty file.
    fs::write(&f.data, b"GIT PACK FILE, NOT OURS").unwrap();
    let err = Pack::open(&f.data).unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
    fs::write(&f.index, b"").unwrap();
    let err = pack::read_index(&f.index).unwrap_err();
    assert!(err.to_string().contains("shorter than its header"), "{err}");
}

#[test]
fn the_files_have_the_documented_bytes() {
    // docs/FORMAT.md, "Pack files": a change here is a format change.
    let f = files();
    let objects = written(&f, 2);
    let data = fs::read(&f.data).unwrap();
    let index = fs::read(&f.index).unwrap();
    assert_eq!(&data[..16], b"RSPK\x01\0\0\0\0\0\0\0\0\0\0\0");
    assert_eq!(&index[..16], b"RSPI\x01\0\0\0\0\0\0\0\0\0\0\0");
    assert_eq!(index.len(), HEADER_LEN + 2 * RECORD_LEN);
    for (i, (record, _)) in objects.iter().enumerate() {
        let raw = &index[HEADER_LEN + i * RECORD_LEN..][..RECORD_LEN];
        let word = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().unwrap());
        assert_eq!(&raw[..32], record.id.as_bytes());
        assert_eq!(word(32), record.offset);
        assert_eq!(word(40), record.len);
        assert_eq!(word(48), record.written_unix_nanos);
        assert_eq!(
            word(56),
            rask_store::index::record::xxh64(&raw[..56], pack::RECORD_SEED)
        );
        // The object's bytes are a loose object file's: its magic, and the
        // id they hash to.
        let loose = &data[record.offset as usize..][..record.len as usize];
        assert_eq!(loose[..4], rask_store::object::MAGIC, "object {i}");
        let object = rask_store::Object::read(record.id, &f.data, &mut &loose[..], record.len);
        assert!(object.is_ok(), "object {i} as a loose file: {object:?}");
    }
    assert_eq!(pack::RECORD_SEED, 0x7273_7069_6e64_6578);
}

#[test]
fn a_reused_buffer_reads_the_same_bytes_and_a_wrong_id_reads_as_corrupt() {
    let f = files();
    let mut w = PackWriter::create(&f.data, &f.index).unwrap();
    let good = w.append(Kind::Blob, &[], b"right bytes").unwrap();
    // The caller's id is not the bytes': the object can never be read as
    // anything, let alone as the object that id names.
    let named = compute_id(Kind::Blob, &[], b"other bytes");
    let wrong = w
        .append_with_id(named, Kind::Blob, &[], b"right bytes")
        .unwrap();
    let pack = Pack::open(&f.data).unwrap();
    let mut buf = rask_store::ObjectBuf::new();
    assert_eq!(
        pack.read_into(&good, &mut buf).unwrap().payload(),
        b"right bytes"
    );
    let err = pack.read_into(&wrong, &mut buf).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(matches!(pack.read(&wrong), Err(Error::Corrupt { .. })));
    assert_eq!(
        pack.read_into(&good, &mut buf).unwrap().payload(),
        b"right bytes"
    );
}

#[test]
fn a_pack_whose_index_cannot_be_made_leaves_no_data_file_behind() {
    let f = files();
    fs::write(&f.index, b"someone else's file").unwrap();
    let err = PackWriter::create(&f.data, &f.index).unwrap_err();
    assert!(err.to_string().contains("1-1.rsi"), "{err}");
    assert!(!f.data.exists(), "a data file without its index was left");
    assert_eq!(fs::read(&f.index).unwrap(), b"someone else's file");
}
