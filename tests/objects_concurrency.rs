//! Several processes putting the same and different objects at once.

mod common;

use std::process::{Command, Stdio};

use common::{bin, cli, files_under, stored_objects};
use rask_store::{Kind, Store, StoreOptions, object::compute_id};

const WRITERS: usize = 6;
const PER_WRITER: usize = 40;

fn payload(writer: usize, i: usize) -> Vec<u8> {
    // Even items are shared by every writer, odd ones belong to one writer.
    if i.is_multiple_of(2) {
        format!("shared object {i}").repeat(i + 1).into_bytes()
    } else {
        format!("writer {writer} object {i}")
            .repeat(i + 1)
            .into_bytes()
    }
}

#[test]
fn concurrent_writers_leave_every_object_intact_and_no_temp_files() {
    for layout in ["loose", "packed"] {
        concurrent_writers(layout);
    }
}

fn concurrent_writers(layout: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    Store::create(&root, StoreOptions::default()).unwrap();
    if layout == "loose" {
        let out = cli(&root, &["config", "objects.pack-max", "0"]);
        assert!(out.status.success());
    }
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();

    let mut children = Vec::new();
    for writer in 0..WRITERS {
        let mut args = vec![
            "--store".to_string(),
            root.display().to_string(),
            "put".into(),
            "--kind".into(),
            "ast".into(),
        ];
        for i in 0..PER_WRITER {
            let path = inputs.join(format!("{writer}-{i}"));
            std::fs::write(&path, payload(writer, i)).unwrap();
            args.push(path.display().to_string());
        }
        let child = Command::new(bin())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        children.push((writer, child));
    }
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    for (writer, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "writer {writer}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(printed.len(), PER_WRITER);
        for (i, id) in printed.iter().enumerate() {
            let expected = payload(writer, i);
            assert_eq!(id, &compute_id(Kind::Ast, &[], &expected).to_hex());
            let object = store.get_object(&id.parse().unwrap()).unwrap();
            assert_eq!(object.payload(), expected.as_slice());
        }
    }
    let shared = PER_WRITER / 2;
    let distinct = shared + WRITERS * (PER_WRITER - shared);
    let mut ids: Vec<_> = stored_objects(&root)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), distinct, "{layout}");
    let packs = files_under(&root.join("objects/pack"));
    if layout == "loose" {
        assert_eq!(files_under(&root.join("objects")).len(), distinct);
        assert!(packs.is_empty(), "{packs:?}");
    } else {
        // One pack per writer process: a data file and its index each.
        assert_eq!(packs.len(), 2 * WRITERS, "{packs:?}");
    }
    assert!(
        files_under(&root.join("tmp")).is_empty(),
        "temp files left behind"
    );
}
