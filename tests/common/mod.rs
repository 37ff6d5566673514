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

/// The two ways a store keeps small objects: loose files, and packs (the
/// default). The objects tests run against both.
pub fn layouts() -> [(&'static str, rask_store::StoreOptions); 2] {
    let packed = rask_store::StoreOptions::default();
    [("loose", packed.loose()), ("packed", packed)]
}

/// Where one copy of an object is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// A loose object file.
    Loose(PathBuf),
    /// Bytes `offset..offset + len` of a pack's data file.
    Packed {
        pack: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Stored {
    /// The file holding this copy.
    pub fn file(&self) -> &Path {
        match self {
            Stored::Loose(path) => path,
            Stored::Packed { pack, .. } => pack,
        }
    }

    /// Where in that file the object's encoding starts.
    pub fn start(&self) -> u64 {
        match self {
            Stored::Loose(_) => 0,
            Stored::Packed { offset, .. } => *offset,
        }
    }

    /// The bytes of this copy.
    pub fn bytes(&self) -> Vec<u8> {
        let all = fs::read(self.file()).unwrap();
        match self {
            Stored::Loose(_) => all,
            Stored::Packed { offset, len, .. } => {
                all[*offset as usize..(*offset + *len) as usize].to_vec()
            }
        }
    }
}

/// Every copy of every object under the store at `root`: loose files named
/// like objects, and each pack index record, with its id.
pub fn stored_objects(root: &Path) -> Vec<(rask_store::ObjectId, Stored)> {
    let layout = rask_store::layout::Layout::new(root);
    let mut out = Vec::new();
    for byte in 0..=u8::MAX {
        for entry in rask_store::walk::fanout_entries(&layout, byte).unwrap() {
            if let rask_store::walk::FanoutEntry::Object(id) = entry {
                out.push((id, Stored::Loose(layout.object_path(&id))));
            }
        }
    }
    let pack_dir = layout.pack_dir();
    let mut names: Vec<PathBuf> = match fs::read_dir(&pack_dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    for index in names {
        if index.extension().is_none_or(|e| e != "rsi") {
            continue;
        }
        let pack = index.with_extension("rsp");
        for record in rask_store::pack::read_index(&index).unwrap().records {
            out.push((
                record.id,
                Stored::Packed {
                    pack: pack.clone(),
                    offset: record.offset,
                    len: record.len,
                },
            ));
        }
    }
    out
}

/// The copies of `id` under the store at `root`.
pub fn copies_of(root: &Path, id: &rask_store::ObjectId) -> Vec<Stored> {
    stored_objects(root)
        .into_iter()
        .filter(|(i, _)| i == id)
        .map(|(_, s)| s)
        .collect()
}

/// The one copy of `id` (panics when there is none or more than one).
pub fn only_copy(root: &Path, id: &rask_store::ObjectId) -> Stored {
    let mut copies = copies_of(root, id);
    assert_eq!(copies.len(), 1, "{id}: {copies:?}");
    copies.remove(0)
}

/// XORs byte `at` of `id`'s one stored copy (counted from the start of its
/// encoding) with 0x01.
pub fn flip_object_byte(root: &Path, id: &rask_store::ObjectId, at: u64) {
    let copy = only_copy(root, id);
    flip_byte(copy.file(), (copy.start() + at) as usize);
}

/// The copy of `id` a get reads: the newest (a put that finds a damaged
/// packed copy appends a good one after it).
pub fn current_copy(root: &Path, id: &rask_store::ObjectId) -> Stored {
    copies_of(root, id).pop().expect("the object is stored")
}

/// Cuts the file holding `id`'s current copy so that only its first `keep`
/// bytes (and for a pack, everything before it) remain.
pub fn cut_object(root: &Path, id: &rask_store::ObjectId, keep: u64) {
    let copy = current_copy(root, id);
    let file = copy.file().to_path_buf();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(copy.start() + keep)
        .unwrap();
}
