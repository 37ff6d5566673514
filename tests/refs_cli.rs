//! `rask-store ref` through the binary: names, compare-and-swap, output,
//! reflogs.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use rask_store::{Namespace, PackageName, Store, StoreOptions};

fn run(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rask-store"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn new_store() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    Store::create(&root, StoreOptions::default()).unwrap();
    (dir, root)
}

fn put(store: &Path, text: &str) -> String {
    let file = store.with_file_name(format!("input-{text}"));
    fs::write(&file, text).unwrap();
    let out = run(store, &["put", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

#[test]
fn malformed_names_are_usage_errors_that_name_the_rule_and_touch_nothing() {
    let (dir, store) = new_store();
    let id = put(&store, "root");
    let long = "x".repeat(129);
    let cases: [(&str, &str); 8] = [
        ("../x", "starts with `.`"),
        ("..", "starts with `.`"),
        ("a/b", "contains `/`"),
        ("a\\b", "contains `\\`"),
        ("a\nb", "'\\n'"),
        ("a\u{1}b", "'\\u{1}'"),
        ("", "it is empty"),
        (&long, "limit is 128"),
    ];
    let before = files_under(dir.path());
    for (bad, rule) in cases {
        // As a package name and as a namespace, for every subcommand that takes one.
        let attempts = [
            vec!["ref", "set", "--ns", "good", bad, &id],
            vec!["ref", "set", "--ns", bad, "good", &id],
            vec!["ref", "get", "--ns", "good", bad],
            vec!["ref", "delete", "--ns", bad, "good"],
            vec!["ref", "log", "--ns", "good", bad],
            vec!["ref", "list", "--ns", bad],
        ];
        for args in attempts {
            let out = run(&store, &args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains(rule),
                "{args:?}: expected {rule:?} in {}",
                stderr(&out)
            );
        }
    }
    assert_eq!(
        files_under(dir.path()),
        before,
        "a rejected name wrote a file"
    );
}

#[test]
fn a_nul_byte_cannot_be_a_name() {
    // A command line cannot carry NUL; the library refuses it for every caller.
    let err = PackageName::new("a\0b").unwrap_err();
    assert!(err.is_usage());
    assert!(err.to_string().contains("'\\0'"), "{err}");
    assert!(Namespace::new("\0").is_err());
}

#[test]
fn a_lost_compare_and_swap_exits_1_and_names_the_current_value() {
    let (_dir, store) = new_store();
    let first = put(&store, "one");
    let second = put(&store, "two");
    let third = put(&store, "three");

    let out = run(
        &store,
        &["ref", "set", "--ns", "n", "p", &first, "--expect-none"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Expecting absence, but it exists.
    let out = run(
        &store,
        &["ref", "set", "--ns", "n", "p", &second, "--expect-none"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&first), "{}", stderr(&out));

    // Expecting a stale value.
    let out = run(
        &store,
        &["ref", "set", "--ns", "n", "p", &third, "--expect", &second],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("expected {second}, but it is {first}")),
        "{}",
        stderr(&out)
    );
    let out = run(
        &store,
        &["ref", "delete", "--ns", "n", "p", "--expect", &third],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&first), "{}", stderr(&out));

    // Nothing changed.
    let out = run(&store, &["ref", "get", "--ns", "n", "p"]);
    assert_eq!(stdout(&out).trim(), first);

    // The right expectation wins.
    let out = run(
        &store,
        &["ref", "set", "--ns", "n", "p", &second, "--expect", &first],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&store, &["ref", "get", "--ns", "n", "p", "--json"]);
    assert_eq!(
        stdout(&out).trim(),
        format!(r#"{{"namespace":"n","package":"p","id":"{second}"}}"#)
    );
}

#[test]
fn get_list_delete_and_log_report_what_happened() {
    let (_dir, store) = new_store();
    let a = put(&store, "a");
    let b = put(&store, "b");

    let out = run(&store, &["ref", "get", "--ns", "n", "std"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"));

    // A ref cannot point at an object the store does not have.
    let missing = "ab".repeat(32);
    let out = run(&store, &["ref", "set", "--ns", "n", "std", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    for (ns, pkg, id) in [("n", "std", &a), ("n", "core", &b), ("m", "std", &b)] {
        let out = run(
            &store,
            &["ref", "set", "--ns", ns, pkg, id, "-m", "first build"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = run(&store, &["ref", "list"]);
    assert_eq!(stdout(&out), format!("{b} m/std\n{b} n/core\n{a} n/std\n"));
    let out = run(&store, &["ref", "list", "--ns", "n", "--json"]);
    assert_eq!(
        stdout(&out).trim(),
        format!(
            r#"[{{"namespace":"n","package":"core","id":"{b}"}},{{"namespace":"n","package":"std","id":"{a}"}}]"#
        )
    );

    let out = run(
        &store,
        &["ref", "delete", "--ns", "n", "std", "--expect", &a],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&store, &["ref", "get", "--ns", "n", "std"]);
    assert_eq!(out.status.code(), Some(1));

    let zeros = "0".repeat(64);
    let out = run(&store, &["ref", "log", "--ns", "n", "std"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with(&format!("{zeros} {a} ")));
    assert!(lines[0].ends_with(" first build"));
    assert!(lines[1].starts_with(&format!("{a} {zeros} ")));
    let out = run(&store, &["ref", "log", "--ns", "n", "std", "--json"]);
    let json = stdout(&out);
    assert!(json.starts_with(r#"{"entries":[{"old":""#), "{json}");
    assert!(json.contains(r#""message":"first build""#), "{json}");
    assert!(json.trim().ends_with(r#""damaged":[]}"#), "{json}");
}

#[test]
fn a_torn_reflog_line_is_reported_and_later_lines_stay_intact() {
    let (_dir, store) = new_store();
    let a = put(&store, "a");
    let b = put(&store, "b");
    let out = run(&store, &["ref", "set", "--ns", "n", "p", &a]);
    assert!(out.status.success());

    // A crash in the middle of an append leaves a line without its end.
    let log = store.join("logs").join("n").join("p");
    let mut bytes = fs::read(&log).unwrap();
    let full_line = bytes.clone();
    bytes.extend_from_slice(&full_line[..70]);
    fs::write(&log, &bytes).unwrap();

    let out = run(&store, &["ref", "log", "--ns", "n", "p"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("line 2: no newline at the end"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out).lines().count(), 1);

    // The next update starts on a fresh line: the torn one stays one damaged line.
    let out = run(
        &store,
        &["ref", "set", "--ns", "n", "p", &b, "--expect", &a],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s = Store::open(&store, StoreOptions::default()).unwrap();
    let reflog = s
        .reflog(
            &Namespace::new("n").unwrap(),
            &PackageName::new("p").unwrap(),
        )
        .unwrap();
    assert_eq!(reflog.entries.len(), 2);
    assert_eq!(reflog.entries[1].new.unwrap().to_hex(), b);
    assert_eq!(reflog.damaged.len(), 1);
    assert_eq!(reflog.damaged[0].line, 2);
    assert!(reflog.damaged[0].reason.contains("fewer than five fields"));

    // A flipped character inside a complete line fails its checksum.
    let text = fs::read_to_string(&log).unwrap();
    let flipped = text.replacen(" set with", " sat with", 1);
    fs::write(&log, flipped).unwrap();
    let reflog = s
        .reflog(
            &Namespace::new("n").unwrap(),
            &PackageName::new("p").unwrap(),
        )
        .unwrap();
    assert_eq!(reflog.entries.len(), 1);
    assert!(
        reflog
            .damaged
            .iter()
            .any(|d| d.line == 1 && d.reason.contains("checksum"))
    );
}

#[test]
fn a_ref_holding_garbage_is_reported_as_corrupt() {
    let (_dir, store) = new_store();
    let a = put(&store, "a");
    let out = run(&store, &["ref", "set", "--ns", "n", "p", &a]);
    assert!(out.status.success());
    fs::write(store.join("refs").join("n").join("p"), "garbage\n").unwrap();
    for args in [
        vec!["ref", "get", "--ns", "n", "p"],
        vec!["ref", "list", "--ns", "n"],
        vec!["ref", "set", "--ns", "n", "p", &a, "--expect", &a],
    ] {
        let out = run(&store, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("corrupt ref n/p"), "{}", stderr(&out));
    }
    // An unconditional set replaces it, and says so in the reflog.
    let out = run(&store, &["ref", "set", "--ns", "n", "p", &a]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&store, &["ref", "get", "--ns", "n", "p"]);
    assert_eq!(stdout(&out).trim(), a);
    let out = run(&store, &["ref", "log", "--ns", "n", "p"]);
    assert!(
        stdout(&out).contains("(replaced a corrupt ref)"),
        "{}",
        stdout(&out)
    );
    // So does an unconditional delete.
    fs::write(store.join("refs").join("n").join("p"), "garbage\n").unwrap();
    let out = run(&store, &["ref", "delete", "--ns", "n", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!store.join("refs").join("n").join("p").exists());
}
