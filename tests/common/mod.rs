//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `rask-store` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rask-store")
}

/// Runs the CLI against `store` with `args`, feeding `stdin`.
pub fn cli_with_input(store: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("RASK_STORE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rask-store");
    // The command may exit before reading its input (an error found first).
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().expect("wait for rask-store")
}

/// Runs the CLI against `store` with `args` and empty stdin.
pub fn cli(store: &Path, args: &[&str]) -> Output {
    cli_with_input(store, args, b"")
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The exit code (panics if the process was killed by a signal).
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

/// Replaces the bytes of a (read-only) store file.
pub fn overwrite(path: &Path, bytes: &[u8]) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, bytes).unwrap();
}

/// XORs one byte of a store file with 0x01.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x01;
    overwrite(path, &bytes);
}

/// Every regular file under `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Xorshift64: the deterministic generator the measurement tests draw
/// value sizes, bytes and read orders from.
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator started at `seed` (not zero).
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// The number in environment variable `name`, or `default` when it is unset
/// or not a number: the knobs of the measurements run by hand.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A new temporary directory for a measurement run by hand: under
/// `RASK_COST_DIR` when it is set, else the system temp dir.
pub fn cost_dir() -> tempfile::TempDir {
    match std::env::var_os("RASK_COST_DIR") {
        Some(parent) => tempfile::tempdir_in(parent).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}
