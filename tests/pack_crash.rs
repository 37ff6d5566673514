//! A pack writer killed at each step of an append (the fault points in
//! `src/pack.rs`, which die as `kill -9` would): every object appended
//! before survives and reads back, the one being appended is absent (never
//! wrong bytes), the pack is no longer claimed, and a new writer can start.

use std::path::Path;
use std::process::{Command, Stdio};

use rask_store::fault::{self, Point};
use rask_store::pack::{self, Pack, PackWriter};
use rask_store::{Error, Kind};

const ENV_DIR: &str = "RASK_PACK_CRASH_DIR";
const ENV_POINT: &str = "RASK_PACK_CRASH_POINT";
/// Objects appended before the one the child dies in.
const BEFORE: usize = 12;

fn payload(n: usize) -> Vec<u8> {
    (0..100 + n * 997).map(|i| (i * 13 + n) as u8).collect()
}

/// The child's body: append `BEFORE` objects, then die appending one more.
#[test]
fn child_appender() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let point = std::env::var(ENV_POINT).unwrap();
    let (point, _) = fault::parse(&point).unwrap();
    let dir = Path::new(&dir);
    let mut w = PackWriter::create(&dir.join("1.rsp"), &dir.join("1.rsi")).unwrap();
    for n in 0..BEFORE {
        w.append(Kind::Blob, &[], &payload(n)).unwrap();
    }
    fault::arm(point, 1, |_| {});
    w.append(Kind::Blob, &[], &payload(BEFORE)).unwrap();
    unreachable!("the fault point must have fired");
}

fn die_at(dir: &Path, point: Point) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_appender",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir)
        .env(ENV_POINT, point.name())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die at {}", point.name());
}

#[test]
fn a_writer_killed_mid_append_loses_only_the_object_it_was_appending() {
    for point in [Point::PackObjectWritten, Point::PackRecordAppend] {
        let dir = tempfile::tempdir().unwrap();
        die_at(dir.path(), point);
        let what = point.name();
        let (data, index_path) = (dir.path().join("1.rsp"), dir.path().join("1.rsi"));

        let index = pack::read_index(&index_path).unwrap();
        assert_eq!(
            index.records.len(),
            BEFORE,
            "{what}: records before the crash"
        );
        assert!(index.damaged.is_empty(), "{what}: {:?}", index.damaged);
        match point {
            // Half a record: a torn tail, not a record.
            Point::PackRecordAppend => assert!(index.torn_tail.is_some(), "{what}"),
            _ => assert_eq!(index.torn_tail, None, "{what}"),
        }
        let pack = Pack::open(&data).unwrap();
        for (n, record) in index.records.iter().enumerate() {
            let object = pack.read(record).unwrap();
            assert_eq!(object.payload(), &payload(n)[..], "{what}: object {n}");
        }
        // The object being appended is nowhere, and its bytes are in the
        // data file (written before the record), unnamed.
        let lost = rask_store::object::compute_id(Kind::Blob, &[], &payload(BEFORE));
        assert!(index.records.iter().all(|r| r.id != lost), "{what}");
        let last = index.records.last().unwrap();
        assert!(
            std::fs::metadata(&data).unwrap().len() > last.offset + last.len,
            "{what}: the lost object's bytes were written before its record"
        );

        // The dead writer's claim went with it, and the pack is never
        // reopened for writing: a new writer starts a new pack.
        assert!(!pack::is_being_written(&data).unwrap(), "{what}");
        let again = PackWriter::create(&data, &index_path).unwrap_err();
        assert!(matches!(again, Error::Io { .. }), "{what}: {again}");
        let mut next =
            PackWriter::create(&dir.path().join("2.rsp"), &dir.path().join("2.rsi")).unwrap();
        let record = next.append(Kind::Blob, &[], &payload(BEFORE)).unwrap();
        assert_eq!(record.id, lost);
    }
}
