//! The writers/gc lock, pins and ref lock files across real processes.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rask_store::layout::Layout;
use rask_store::lock::{ExclusiveGuard, SharedGuard};
use rask_store::{
    Error, Expect, Kind, Namespace, ObjectId, PackageName, PinState, Store, StoreOptions, Wait,
};

const MODE_ENV: &str = "RASK_LOCK_TEST_MODE";
const STORE_ENV: &str = "RASK_LOCK_TEST_STORE";

/// What a child process does, told by the parent through the environment.
/// It signals readiness by creating `<store>/ready-<pid>`, then holds on
/// until its standard input closes (or it is killed).
#[test]
#[ignore = "helper: run as a child process by the other tests in this file"]
fn lock_child() {
    let mode = std::env::var(MODE_ENV).expect("run by a lock test");
    let root = PathBuf::from(std::env::var(STORE_ENV).expect("run by a lock test"));
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let layout = Layout::new(&root);
    let mut held: Vec<Box<dyn std::any::Any>> = Vec::new();
    let mut pin = None;
    match mode.as_str() {
        "shared" => held.push(Box::new(
            SharedGuard::acquire(&layout, Wait::Block).unwrap(),
        )),
        "pin" => {
            let a = store.put_object(Kind::Blob, &[], b"pinned a").unwrap();
            let b = store.put_object(Kind::Blob, &[], b"pinned b").unwrap();
            let mut guard = store.pin(&[a]).unwrap();
            guard.add(&[b]).unwrap();
            pin = Some(guard);
        }
        "ref-lock" => {
            // Holds the lock of ref n/p the way every writer does: created
            // exclusively, flock held, pid recorded.
            let path = root.join("refs").join("n").join(".p.lock");
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .unwrap();
            file.lock().unwrap();
            write!(
                file,
                "rask-store ref lock 1\npid {}\ntxn -\n",
                std::process::id()
            )
            .unwrap();
            held.push(Box::new(file));
        }
        other => panic!("unknown mode {other}"),
    }
    File::create(root.join(format!("ready-{}", std::process::id()))).unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(pin);
}

fn spawn(root: &Path, mode: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "lock_child", "--test-threads=1"])
        .env(MODE_ENV, mode)
        .env(STORE_ENV, root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let ready = root.join(format!("ready-{}", child.id()));
    while !ready.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the {mode} child exited before it was ready: {status}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Lets a child finish normally (its standard input closes).
fn finish(mut child: Child) {
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

fn new_store() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::create(&root, StoreOptions::default()).unwrap();
    (dir, root, store)
}

#[test]
fn gc_cannot_take_the_lock_while_another_process_writes() {
    let (_dir, root, _store) = new_store();
    let layout = Layout::new(&root);
    let writer = spawn(&root, "shared");

    let err = ExclusiveGuard::acquire(&layout, Wait::NoWait).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("gc.lock"), "{err}");
    // Writers share it.
    drop(SharedGuard::acquire(&layout, Wait::NoWait).unwrap());

    finish(writer);
    let gc = ExclusiveGuard::acquire(&layout, Wait::NoWait).unwrap();
    // And while gc holds it, a writer cannot.
    let err = SharedGuard::acquire(&layout, Wait::NoWait).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    drop(gc);
}

#[test]
fn a_put_waits_for_gc_to_let_go() {
    let (dir, root, _store) = new_store();
    let layout = Layout::new(&root);
    let input = dir.path().join("input");
    fs::write(&input, b"written during gc").unwrap();

    let gc = ExclusiveGuard::acquire(&layout, Wait::Block).unwrap();
    let mut put = Command::new(env!("CARGO_BIN_EXE_rask-store"))
        .arg("--store")
        .arg(&root)
        .arg("put")
        .arg(&input)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        put.try_wait().unwrap().is_none(),
        "a put finished while gc held the lock exclusively"
    );
    drop(gc);
    let out = put.wait_with_output().unwrap();
    assert!(out.status.success());
    let id: ObjectId = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    assert_eq!(
        store.get_object(&id).unwrap().payload(),
        b"written during gc"
    );
}

#[test]
fn a_live_processs_pin_is_live_and_a_killed_processs_pin_is_dead() {
    let (_dir, root, store) = new_store();
    let a = store.put_object(Kind::Blob, &[], b"pinned a").unwrap();
    let b = store.put_object(Kind::Blob, &[], b"pinned b").unwrap();

    let mut builder = spawn(&root, "pin");
    let pins = store.pins().unwrap();
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].state, PinState::Live);
    assert_eq!(pins[0].pid, Some(builder.id()));
    assert_eq!(pins[0].ids, vec![a, b]);
    assert_eq!(store.live_pins().unwrap(), pins);
    // A live pin is never removed as litter.
    assert!(store.remove_dead_pins().unwrap().is_empty());

    builder.kill().unwrap();
    builder.wait().unwrap();
    let pins = store.pins().unwrap();
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].state, PinState::Dead);
    assert!(store.live_pins().unwrap().is_empty());
    assert_eq!(
        store.remove_dead_pins().unwrap(),
        vec![pins[0].path.clone()]
    );
    assert!(store.pins().unwrap().is_empty());
}

#[test]
fn a_pin_lasts_as_long_as_its_guard() {
    let (_dir, _root, store) = new_store();
    let a = store.put_object(Kind::Blob, &[], b"a").unwrap();
    let b = store.put_object(Kind::Blob, &[], b"b").unwrap();
    let mut pin = store.pin(&[a]).unwrap();
    // The holding process itself sees its pin as live.
    assert_eq!(store.live_pins().unwrap()[0].ids, vec![a]);
    pin.add(&[b]).unwrap();
    assert_eq!(store.live_pins().unwrap()[0].ids, vec![a, b]);
    assert_eq!(pin.ids(), &[a, b]);
    let path = pin.path().to_path_buf();
    drop(pin);
    assert!(!path.exists());
    assert!(store.pins().unwrap().is_empty());
}

fn names() -> (Namespace, PackageName) {
    (Namespace::new("n").unwrap(), PackageName::new("p").unwrap())
}

#[test]
fn a_ref_lock_left_by_a_dead_pid_is_recovered() {
    let (_dir, root, store) = new_store();
    let (ns, pkg) = names();
    let id = store.put_object(Kind::Meta, &[], b"root").unwrap();

    // A process that has exited: its pid is in the lock file, its flock is gone.
    let mut gone = Command::new(std::env::current_exe().unwrap())
        .arg("--list")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let lock = root.join("refs").join("n").join(".p.lock");
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    fs::write(
        &lock,
        format!("rask-store ref lock 1\npid {dead_pid}\ntxn -\n"),
    )
    .unwrap();

    store
        .update_ref(&ns, &pkg, Expect::Absent, id, "after a crash")
        .unwrap();
    assert_eq!(store.read_ref(&ns, &pkg).unwrap(), Some(id));
    assert!(!lock.exists());
}

#[test]
fn a_ref_lock_of_a_live_process_is_waited_for_then_reported_and_freed_by_its_death() {
    let (_dir, root, store) = new_store();
    let (ns, pkg) = names();
    let id = store.put_object(Kind::Meta, &[], b"root").unwrap();

    let mut holder = spawn(&root, "ref-lock");
    let err = store
        .update_ref(&ns, &pkg, Expect::Any, id, "while locked")
        .unwrap_err();
    match &err {
        Error::Locked { path, holder: who } => {
            assert!(path.ends_with("refs/n/.p.lock"), "{}", path.display());
            assert_eq!(who, &format!("held by pid {}", holder.id()));
        }
        other => panic!("expected Locked, got {other}"),
    }
    assert_eq!(store.read_ref(&ns, &pkg).unwrap(), None);

    // kill -9 of the holder: the lock file stays, but nobody holds it.
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(root.join("refs/n/.p.lock").exists());
    store
        .update_ref(&ns, &pkg, Expect::Any, id, "after the holder died")
        .unwrap();
    assert_eq!(store.read_ref(&ns, &pkg).unwrap(), Some(id));
}
