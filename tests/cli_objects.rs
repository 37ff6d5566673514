//! The CLI's put/get/show/exists/init, as a user runs them.

mod common;

use std::fs;
use std::process::Command;

use common::{bin, cli, cli_with_input, code, stderr, stdout};

fn init_store() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("cache");
    let out = cli(&store, &["init"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("created rask-store at"));
    (dir, store)
}

fn ids(out: &std::process::Output) -> Vec<String> {
    stdout(out).lines().map(str::to_string).collect()
}

#[test]
fn put_prints_one_id_per_input_in_order_and_get_returns_the_bytes() {
    let (dir, store) = init_store();
    let a = dir.path().join("a.ast");
    let b = dir.path().join("b.ast");
    fs::write(&a, "fn a() {}").unwrap();
    fs::write(&b, "fn b() {}").unwrap();
    let out = cli_with_input(
        &store,
        &[
            "put",
            "--kind",
            "ast",
            a.to_str().unwrap(),
            "-",
            b.to_str().unwrap(),
        ],
        b"from stdin",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let printed = ids(&out);
    assert_eq!(printed.len(), 3);
    for id in &printed {
        assert_eq!(id.len(), 64);
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{id}"
        );
    }
    for (id, expected) in printed.iter().zip(["fn a() {}", "from stdin", "fn b() {}"]) {
        let out = cli(&store, &["get", id]);
        assert_eq!(code(&out), 0);
        assert_eq!(stdout(&out), expected);
    }
    // A unique prefix works too, and -o writes a file.
    let target = dir.path().join("out.txt");
    let out = cli(
        &store,
        &["get", &printed[0][..10], "-o", target.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&target).unwrap(), "fn a() {}");
}

#[test]
fn put_with_no_file_reads_stdin_and_links_must_exist() {
    let (_dir, store) = init_store();
    let leaf = ids(&cli_with_input(&store, &["put"], b"leaf"))[0].clone();
    let out = cli_with_input(
        &store,
        &["put", "--kind", "instance", "--link", &leaf],
        b"node",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let node = ids(&out)[0].clone();

    let out = cli(&store, &["show", &node]);
    let text = stdout(&out);
    assert!(
        text.contains("kind   instance") && text.contains("size   4 bytes"),
        "{text}"
    );
    assert!(text.contains(&format!("  {leaf}")), "{text}");

    let out = cli(&store, &["show", "--json", &node]);
    let json = stdout(&out);
    assert!(json.contains(&format!(r#""id":"{node}""#)), "{json}");
    assert!(json.contains(r#""kind":"instance","size":4"#), "{json}");
    assert!(json.contains(&format!(r#""links":["{leaf}"]"#)), "{json}");
    // A small object is packed: show names its pack and where it starts.
    assert!(
        text.contains("pack   ") && text.contains(".rsp at byte "),
        "{text}"
    );
    assert!(
        json.contains("/objects/pack/") && json.contains(r#"","offset":"#),
        "{json}"
    );

    let absent = "ab".repeat(32);
    let out = cli_with_input(&store, &["put", "--link", &absent], b"x");
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains(&format!("linked object {absent} does not exist")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn exists_prints_the_missing_ids_and_exits_1() {
    let (_dir, store) = init_store();
    let id = ids(&cli_with_input(&store, &["put"], b"present"))[0].clone();
    let out = cli(&store, &["exists", &id, &id[..12]]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).is_empty());
    let absent = "0".repeat(64);
    let out = cli(&store, &["exists", &id, &absent, "deadbeef00"]);
    assert_eq!(code(&out), 1);
    assert_eq!(stdout(&out), format!("{absent}\ndeadbeef00\n"));
}

#[test]
fn malformed_and_unknown_ids() {
    let (_dir, store) = init_store();
    for bad in ["zz", "1234567", &"g".repeat(64), &"a".repeat(65)] {
        let out = cli(&store, &["get", bad]);
        assert_eq!(code(&out), 2, "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid object id"),
            "{}",
            stderr(&out)
        );
    }
    let unknown = "12".repeat(32);
    let out = cli(&store, &["get", &unknown]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains("not found") && err.contains(&format!("objects/12/{}", &unknown[2..])),
        "{err}"
    );
    let out = cli(&store, &["show", "12121212aa"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("no object id starts with"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_store_is_named_and_never_created_implicitly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("nowhere");
    for args in [
        vec!["put"],
        vec!["get", &"a".repeat(64)],
        vec!["exists", &"a".repeat(64)],
    ] {
        let out = cli(&store, &args);
        assert_eq!(code(&out), 1, "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("no rask-store at {}", store.display())),
            "{err}"
        );
        assert!(
            err.contains("rask-store --store") && err.contains("init"),
            "{err}"
        );
    }
    assert!(!store.exists());
}

#[test]
fn unreadable_inputs_are_named() {
    let (dir, store) = init_store();
    let missing = dir.path().join("missing.txt");
    let out = cli(&store, &["put", missing.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains(&format!("could not open {}", missing.display())),
        "{}",
        stderr(&out)
    );
    let out = cli(&store, &["put", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("it is a directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_or_newer_formats_are_refused_with_what_to_do() {
    let (_dir, store) = init_store();
    fs::write(store.join("format"), "rask-store format 3\nhash blake3\n").unwrap();
    let out = cli(&store, &["exists", &"a".repeat(64)]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains("has format 3") && err.contains("reads format 1 to 2"),
        "{err}"
    );
    assert!(err.contains("delete the cache directory"), "{err}");

    fs::write(store.join("format"), "rask-store format 1\nhash sha256\n").unwrap();
    let err = stderr(&cli(&store, &["put"]));
    assert!(err.contains("hash sha256"), "{err}");

    fs::write(store.join("format"), b"\x00\xffgarbage").unwrap();
    let out = cli(&store, &["put"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("corrupt format stamp"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_store_is_found_through_flag_then_env_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: Option<&std::path::Path>| {
        let mut cmd = Command::new(bin());
        cmd.current_dir(dir.path())
            .args(args)
            .env_remove("RASK_STORE");
        if let Some(env) = env {
            cmd.env("RASK_STORE", env);
        }
        cmd.output().unwrap()
    };
    assert_eq!(code(&run(&["init"], None)), 0);
    assert!(dir.path().join(".rask-cache/format").is_file());
    let from_env = dir.path().join("env-store");
    assert_eq!(code(&run(&["init"], Some(&from_env))), 0);
    assert!(from_env.join("format").is_file());
    let flag = dir.path().join("flag-store");
    let out = run(
        &["--store", flag.to_str().unwrap(), "init"],
        Some(&from_env),
    );
    assert_eq!(code(&out), 0);
    assert!(flag.join("format").is_file());
}

#[test]
fn help_explains_every_command() {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    let help = stdout(&out);
    for word in [
        "init",
        "put",
        "get",
        "show",
        "exists",
        "RASK_STORE",
        "Exit codes",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = Command::new(bin())
        .args(["put", "--help"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("standard input"));
    let out = Command::new(bin()).arg("frobnicate").output().unwrap();
    assert_eq!(code(&out), 2);
}

#[test]
fn get_to_a_named_pipe_or_a_symlink_keeps_what_the_path_is() {
    use std::os::unix::fs::FileTypeExt;
    let (dir, store) = init_store();
    let id = ids(&cli_with_input(&store, &["put"], b"through the pipe"))[0].clone();

    // A named pipe stands in for /dev/null or /dev/stdout: renaming a temp
    // file over it would replace it with a regular file.
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    // Hold the read end open (without blocking: O_NONBLOCK) so the command's
    // write end opens at once; the payload fits the pipe's buffer.
    let mut reader = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(0o4000)
            .open(&fifo)
            .unwrap()
    };
    let out = cli(&store, &["get", &id, "-o", fifo.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
    assert_eq!(got, b"through the pipe");
    assert!(
        fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(),
        "the named pipe was replaced by a file"
    );

    // A symbolic link is followed: the file it names gets the payload, and
    // the link stays a link.
    let target = dir.path().join("real.txt");
    fs::write(&target, "old").unwrap();
    let link = dir.path().join("link.txt");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = cli(&store, &["get", &id, "-o", link.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "through the pipe");
}
