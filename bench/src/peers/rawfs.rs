//! The raw filesystem: the practical limit for a store of files.
//!
//! Each value goes to `objects/<2 hex>/<62 hex>` named by the BLAKE3 hash
//! of the value, through a temp file in `tmp/` and a rename; no header, no
//! permissions change, no existence check, and reads do not re-hash. The
//! key → id map is kept in memory, as for rask-store's object API.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rask_store::dirfd::Dir;

use super::{PeerSpec, store_dir};
use crate::peer::{Check, KeyMapped, ObjectBackend, Peer, Res};

pub const SPEC: PeerSpec = PeerSpec {
    id: "rawfs",
    label: "raw filesystem (limit; key map in memory)",
    durability: "none (no fsync)",
    verify: "read + BLAKE3 every file, compare with its name, one thread",
    reclaim: "unlink the files",
    create,
    open,
};

struct RawFs {
    objects: PathBuf,
    tmp: PathBuf,
    counter: u64,
}

impl RawFs {
    fn at(dir: &Path) -> RawFs {
        let root = store_dir(dir);
        RawFs {
            objects: root.join("objects"),
            tmp: root.join("tmp"),
            counter: 0,
        }
    }

    fn path_of(&self, id: &[u8]) -> PathBuf {
        let hex = hex::encode(id);
        let mut path = self.objects.join(&hex[..2]);
        path.push(&hex[2..]);
        path
    }
}

fn create(dir: &Path) -> Res<Box<dyn Peer>> {
    let raw = RawFs::at(dir);
    fs::create_dir_all(&raw.tmp)?;
    for byte in 0..=255u8 {
        fs::create_dir_all(raw.objects.join(hex::encode([byte])))?;
    }
    Ok(Box::new(KeyMapped::new(Box::new(raw), dir.join("keymap"))))
}

fn open(dir: &Path) -> Res<Box<dyn Peer>> {
    Ok(Box::new(KeyMapped::load(
        Box::new(RawFs::at(dir)),
        dir.join("keymap"),
    )?))
}

impl ObjectBackend for RawFs {
    fn put_values(&mut self, values: &[&[u8]], ids: &mut Vec<Vec<u8>>) -> Res<()> {
        for value in values {
            let id = blake3::hash(value);
            self.counter += 1;
            let temp = self
                .tmp
                .join(format!("t{}-{}", std::process::id(), self.counter));
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(value)?;
            drop(file);
            fs::rename(&temp, self.path_of(id.as_bytes()))?;
            ids.push(id.as_bytes().to_vec());
        }
        Ok(())
    }

    fn get_values(&mut self, ids: &[&[u8]], check: &mut Check<'_>) -> Res<()> {
        let mut buf = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            read_file(&self.path_of(id), &mut buf)?;
            check(i, &buf)?;
        }
        Ok(())
    }

    fn contains(&mut self, ids: &[&[u8]], found: &mut Vec<bool>) -> Res<()> {
        for id in ids {
            found.push(match fs::symlink_metadata(self.path_of(id)) {
                Ok(_) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(e.into()),
            });
        }
        Ok(())
    }

    fn absent_id(&self, key: &[u8]) -> Vec<u8> {
        blake3::hash(key).as_bytes().to_vec()
    }

    fn remove(&mut self, ids: &[&[u8]]) -> Res<()> {
        for id in ids {
            fs::remove_file(self.path_of(id))?;
        }
        Ok(())
    }

    fn reclaim(&mut self, _kept: &[&[u8]]) -> Res<()> {
        Ok(())
    }

    fn verify(&mut self) -> Res<bool> {
        let mut buf = Vec::new();
        for fanout in fs::read_dir(&self.objects)? {
            let fanout = fanout?;
            let prefix = fanout.file_name().to_string_lossy().into_owned();
            let dir = Dir::open(&fanout.path())?;
            for entry in fs::read_dir(fanout.path())? {
                let entry = entry?;
                let n = read_whole(&dir, &entry.file_name().to_string_lossy(), &mut buf)?;
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if blake3::hash(&buf[..n]).to_hex().as_str() != name {
                    return Err(
                        format!("{} does not match its name", entry.path().display()).into(),
                    );
                }
            }
        }
        Ok(true)
    }

    fn close(self: Box<Self>) -> Res<()> {
        Ok(())
    }
}

/// Reads a whole file into `buf` with the fewest system calls: open, fstat,
/// one read (std's `read_to_end` on a `File` adds a size-hint fstat, an
/// lseek and an end-of-file probe read).
fn read_file(path: &Path, buf: &mut Vec<u8>) -> Res<()> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    buf.clear();
    buf.reserve(len as usize);
    file.take(len).read_to_end(buf)?;
    Ok(())
}

/// The smallest buffer [`read_whole`] reads with, as rask-store's verify.
const WHOLE_BUFFER: usize = 256 << 10;

/// Reads a whole file into the front of `buf` the way rask-store's verify
/// does, so the one-thread reference does the same system calls: `open`
/// relative to the open directory (`rask_store::dirfd`),
/// one `read` into a reused buffer of at least 256 KiB (a read of a regular
/// file is short only at its end), `close`; a file that fills the buffer is
/// read to the end after an `fstat`. Returns the file's length.
fn read_whole(dir: &Dir, name: &str, buf: &mut Vec<u8>) -> Res<usize> {
    let mut file = dir.open_file(name)?;
    if buf.len() < WHOLE_BUFFER {
        buf.resize(WHOLE_BUFFER, 0);
    }
    let n = file.read(buf)?;
    if n < buf.len() {
        return Ok(n);
    }
    let len = file.metadata()?.len() as usize;
    if buf.len() < len {
        buf.resize(len, 0);
    }
    file.read_exact(&mut buf[n..len])?;
    Ok(len)
}

/// Reads a pack's data file front to back in reads of 4 MiB (or one
/// object, if larger) and BLAKE3-hashes each object its index names on its
/// own; returns the number of objects and their bytes.
fn hash_pack_objects(data: &Path, index: &Path, buf: &mut Vec<u8>) -> Res<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    const WINDOW: u64 = 4 << 20;
    let file = File::open(data)?;
    let mut records = rask_store::pack::read_index(index)?.records;
    records.sort_by_key(|r| r.offset);
    let (mut start, mut held) = (0u64, 0usize);
    let (mut objects, mut bytes) = (0, 0);
    for record in records {
        let len = record.len as usize;
        if record.offset < start || record.offset + record.len > start + held as u64 {
            let want = record.len.max(WINDOW) as usize;
            if buf.len() < want {
                buf.resize(want, 0);
            }
            let mut got = 0;
            while got < want {
                match file.read_at(&mut buf[got..want], record.offset + got as u64)? {
                    0 => break,
                    n => got += n,
                }
            }
            (start, held) = (record.offset, got);
            if got < len {
                continue;
            }
        }
        let at = (record.offset - start) as usize;
        std::hint::black_box(blake3::hash(&buf[at..at + len]));
        objects += 1;
        bytes += record.len;
    }
    Ok((objects, bytes))
}

/// Reads and BLAKE3-hashes every object under `dir` on one thread; returns
/// the number of objects and bytes. The single-threaded read-and-hash
/// reference for verify: a loose file is read whole and hashed; a pack's
/// data file (`.rsp`, with its `.rsi` beside it) is read in 4 MiB reads and
/// each of its objects hashed on its own, as a verify must (one hash of the
/// whole pack would hash 16 chunks at a time across objects, work no
/// per-object check can share). Other files (a pack's index, the store's
/// own) are read and hashed whole.
pub fn read_and_hash_tree(dir: &Path) -> Res<(u64, u64)> {
    let mut buf = Vec::new();
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let dir = Dir::open(&path)?;
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let index = entry.path().with_extension("rsi");
            if name.ends_with(".rsp") && index.exists() {
                let (n, b) = hash_pack_objects(&entry.path(), &index, &mut buf)?;
                files += n;
                bytes += b;
                continue;
            }
            let n = read_whole(&dir, &name, &mut buf)?;
            std::hint::black_box(blake3::hash(&buf[..n]));
            files += 1;
            bytes += n as u64;
        }
    }
    Ok((files, bytes))
}
