//! `rask-store entry …` and `rask-store index …` end to end.

use std::path::Path;
use std::process::{Command, Output};

fn run(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rask-store"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn ok(store: &Path, args: &[&str]) -> String {
    let out = run(store, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn entries_round_trip_through_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("cache");
    ok(&store, &["init"]);
    // Loose files: the test deletes one object's file below.
    ok(&store, &["config", "objects.pack-max", "0"]);
    let cpp = dir.path().join("cpp");
    let meta = dir.path().join("meta");
    std::fs::write(&cpp, b"int f() { return 1; }").unwrap();
    std::fs::write(&meta, b"{\"line\":3}").unwrap();
    let hash = format!("b3:{}", "7f".repeat(32));
    let key = [
        "--ns",
        "jank-0.1",
        "clojure.core",
        &hash,
        "[",
        "u:1",
        "s:u:2",
        "]",
    ];
    let cpp_part = format!("cpp={}", cpp.display());
    let meta_part = format!("meta={}", meta.display());

    let mut put = vec!["entry", "put", "--part", &cpp_part, "--part", &meta_part];
    put.extend_from_slice(&key);
    let id = ok(&store, &put);
    assert_eq!(id.trim().len(), 64, "{id}");
    // The same value again: the same entry id, and no new journal record.
    assert_eq!(ok(&store, &put), id);
    let stats = ok(&store, &["index", "stats", "--json"]);
    assert!(stats.contains("\"entries\":1"), "{stats}");
    assert!(stats.contains("\"records\":1"), "{stats}");

    // Several parts and no --part: list them.
    let mut get = vec!["entry", "get"];
    get.extend_from_slice(&key);
    let listing = ok(&store, &get);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert!(
        lines[0].starts_with("cpp\t") && lines[0].ends_with("\t21"),
        "{listing}"
    );
    assert!(lines[1].starts_with("meta\t"), "{listing}");

    let mut get_meta = get.clone();
    get_meta.extend_from_slice(&["--part", "meta"]);
    assert_eq!(ok(&store, &get_meta), "{\"line\":3}");
    let out_file = dir.path().join("out.cpp");
    let out_arg = out_file.display().to_string();
    let mut get_cpp = get.clone();
    get_cpp.extend_from_slice(&["--part", "cpp", "-o", &out_arg]);
    ok(&store, &get_cpp);
    assert_eq!(std::fs::read(&out_file).unwrap(), b"int f() { return 1; }");

    let mut show = vec!["entry", "show", "--json"];
    show.extend_from_slice(&key);
    let json = ok(&store, &show);
    assert!(
        json.contains(&format!("\"entry_id\":\"{}\"", id.trim())),
        "{json}"
    );
    assert!(
        json.contains(&format!(
            "\"key\":[\"clojure.core\",{{\"b3\":\"{}\"}},[1,\"u:2\"]]",
            "7f".repeat(32)
        )),
        "{json}"
    );
    let mut show_text = vec!["entry", "show"];
    show_text.extend_from_slice(&key);
    let text = ok(&store, &show_text);
    assert!(text.contains("[ u:1 s:u:2 ]"), "{text}");

    // Compaction keeps the entry and moves it to a segment.
    let report = ok(&store, &["index", "compact"]);
    assert!(report.contains("1 entries"), "{report}");
    let stats = ok(&store, &["index", "stats"]);
    assert!(stats.contains("segments         1"), "{stats}");
    assert_eq!(ok(&store, &get_meta), "{\"line\":3}");

    // Another key is an absent miss; a deleted part a dangling one.
    let out = run(&store, &["entry", "get", "--ns", "jank-0.1", "other"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent miss"));
    let meta_id = lines[1].split('\t').nth(1).unwrap();
    let object = store
        .join("objects")
        .join(&meta_id[..2])
        .join(&meta_id[2..]);
    std::fs::remove_file(object).unwrap();
    let out = run(&store, &get_meta);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dangling miss"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_part_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("cache");
    ok(&store, &["init"]);
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let part = format!("a={}", file.display());
    let out = run(
        &store,
        &[
            "entry", "put", "--ns", "n", "k", "--part", &part, "--part", &part,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("given twice"));
    let out = run(
        &store,
        &["entry", "put", "--ns", "n", "k", "--part", "nofile"],
    );
    assert_ne!(out.status.code(), Some(0));
}
