//! One append-only pack file: the practical limit for a store that packs
//! its objects, as git's packs do, instead of writing a file per object.
//!
//! Each new value is appended to `pack` with one `write` (no file is
//! created per value); its id is its BLAKE3 digest, and a digest → place
//! (offset, length) table in memory finds it, so a get is one lookup, one
//! `pread` and a BLAKE3 check of the bytes against the digest: the same
//! check every rask-store get makes. The table also answers existence
//! checks and skips values already stored; it is written to `pack.idx` at
//! close for the fresh-process reader. Nothing is synced. Reclaiming copies the kept
//! values into a new pack and renames it over the old one.
//!
//! Not a store: no header, no crash recovery, no concurrent writers. It
//! measures what the disk and the hash allow once file creation is gone.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{PeerSpec, store_dir};
use crate::peer::{Check, KeyMapped, ObjectBackend, Peer, Res};

pub const SPEC: PeerSpec = PeerSpec {
    id: "rawpack",
    label: "append-only pack file (limit; places in memory)",
    durability: "none (no fsync)",
    verify: "read + BLAKE3 every value, compare with its digest, one thread",
    reclaim: "copy the kept values to a new pack, rename it over the old",
    create,
    open,
};

/// An id: the value's BLAKE3 digest.
const DIGEST: usize = 32;
/// A `pack.idx` record: digest, offset (u64le), length (u32le).
const ID_LEN: usize = DIGEST + 8 + 4;

struct RawPack {
    root: PathBuf,
    pack: File,
    end: u64,
    places: HashMap<[u8; DIGEST], (u64, u32)>,
    buf: Vec<u8>,
}

fn create(dir: &Path) -> Res<Box<dyn Peer>> {
    let root = store_dir(dir);
    fs::create_dir_all(&root)?;
    let pack = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(root.join("pack"))?;
    let raw = RawPack {
        root,
        pack,
        end: 0,
        places: HashMap::new(),
        buf: Vec::new(),
    };
    Ok(Box::new(KeyMapped::new(Box::new(raw), dir.join("keymap"))))
}

fn open(dir: &Path) -> Res<Box<dyn Peer>> {
    let root = store_dir(dir);
    let pack = OpenOptions::new()
        .read(true)
        .append(true)
        .open(root.join("pack"))?;
    let end = pack.metadata()?.len();
    let mut bytes = Vec::new();
    File::open(root.join("pack.idx"))?.read_to_end(&mut bytes)?;
    let mut places = HashMap::with_capacity(bytes.len() / ID_LEN);
    for record in bytes.chunks_exact(ID_LEN) {
        let (digest, off, len) = split_record(record).ok_or("damaged pack.idx")?;
        places.insert(digest, (off, len));
    }
    let raw = RawPack {
        root,
        pack,
        end,
        places,
        buf: Vec::new(),
    };
    Ok(Box::new(KeyMapped::load(
        Box::new(raw),
        dir.join("keymap"),
    )?))
}

fn idx_record(digest: &[u8; DIGEST], off: u64, len: u32) -> Vec<u8> {
    let mut id = Vec::with_capacity(ID_LEN);
    id.extend_from_slice(digest);
    id.extend_from_slice(&off.to_le_bytes());
    id.extend_from_slice(&len.to_le_bytes());
    id
}

fn split_record(id: &[u8]) -> Option<([u8; DIGEST], u64, u32)> {
    if id.len() != ID_LEN {
        return None;
    }
    let digest = id[..DIGEST].try_into().ok()?;
    let off = u64::from_le_bytes(id[DIGEST..DIGEST + 8].try_into().ok()?);
    let len = u32::from_le_bytes(id[DIGEST + 8..].try_into().ok()?);
    Some((digest, off, len))
}

impl RawPack {
    /// Reads the value `id` into `self.buf` and checks it against its digest.
    fn read_checked(&mut self, id: &[u8]) -> Res<()> {
        let digest: [u8; DIGEST] = id.try_into()?;
        let &(off, len) = self.places.get(&digest).ok_or("no such value")?;
        self.buf.resize(len as usize, 0);
        self.pack.read_exact_at(&mut self.buf, off)?;
        if blake3::hash(&self.buf).as_bytes() != &digest {
            return Err(format!("value at offset {off} does not match its digest").into());
        }
        Ok(())
    }
}

impl ObjectBackend for RawPack {
    fn put_values(&mut self, values: &[&[u8]], ids: &mut Vec<Vec<u8>>) -> Res<()> {
        for value in values {
            let digest = *blake3::hash(value).as_bytes();
            if !self.places.contains_key(&digest) {
                let len = u32::try_from(value.len())?;
                self.pack.write_all(value)?;
                self.places.insert(digest, (self.end, len));
                self.end += u64::from(len);
            }
            ids.push(digest.to_vec());
        }
        Ok(())
    }

    fn get_values(&mut self, ids: &[&[u8]], check: &mut Check<'_>) -> Res<()> {
        for (i, id) in ids.iter().enumerate() {
            self.read_checked(id)?;
            check(i, &self.buf)?;
        }
        Ok(())
    }

    fn contains(&mut self, ids: &[&[u8]], found: &mut Vec<bool>) -> Res<()> {
        for id in ids {
            let digest: [u8; DIGEST] = (*id).try_into()?;
            found.push(self.places.contains_key(&digest));
        }
        Ok(())
    }

    fn absent_id(&self, key: &[u8]) -> Vec<u8> {
        blake3::hash(key).as_bytes().to_vec()
    }

    fn remove(&mut self, ids: &[&[u8]]) -> Res<()> {
        for id in ids {
            let digest: [u8; DIGEST] = (*id).try_into()?;
            self.places.remove(&digest);
        }
        Ok(())
    }

    fn reclaim(&mut self, _kept: &[&[u8]]) -> Res<()> {
        // The kept values are the ones still in `places`; copy them in
        // pack order.
        let mut kept: Vec<([u8; DIGEST], u64, u32)> = self
            .places
            .iter()
            .map(|(d, &(off, len))| (*d, off, len))
            .collect();
        kept.sort_by_key(|&(_, off, _)| off);
        let new_path = self.root.join("pack.new");
        let mut out = BufWriter::new(File::create(&new_path)?);
        let mut end = 0u64;
        let mut buf = Vec::new();
        for (digest, off, len) in kept {
            buf.resize(len as usize, 0);
            self.pack.read_exact_at(&mut buf, off)?;
            out.write_all(&buf)?;
            self.places.insert(digest, (end, len));
            end += u64::from(len);
        }
        out.flush()?;
        drop(out);
        fs::rename(&new_path, self.root.join("pack"))?;
        self.pack = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.root.join("pack"))?;
        self.end = end;
        Ok(())
    }

    fn verify(&mut self) -> Res<bool> {
        let mut all: Vec<([u8; DIGEST], u64)> =
            self.places.iter().map(|(d, &(off, _))| (*d, off)).collect();
        all.sort_by_key(|&(_, off)| off);
        for (digest, _) in &all {
            self.read_checked(digest)?;
        }
        Ok(true)
    }

    fn close(self: Box<Self>) -> Res<()> {
        let mut out = BufWriter::new(File::create(self.root.join("pack.idx"))?);
        for (digest, &(off, len)) in &self.places {
            out.write_all(&idx_record(digest, off, len))?;
        }
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_across_a_reopen_and_damage_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut peer = create(dir.path()).unwrap();
        let values: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let batch: Vec<(Vec<u8>, &[u8])> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("k{i}").into_bytes(), v.as_slice()))
            .collect();
        let refs: Vec<(&[u8], &[u8])> = batch.iter().map(|(k, v)| (k.as_slice(), *v)).collect();
        peer.put_batch(&refs).unwrap();
        // The same values again are not appended twice.
        peer.put_batch(&refs).unwrap();
        peer.close().unwrap();
        let pack_len = fs::metadata(store_dir(dir.path()).join("pack"))
            .unwrap()
            .len();
        assert_eq!(pack_len, values.iter().map(|v| v.len() as u64).sum::<u64>());

        let mut peer = open(dir.path()).unwrap();
        let keys: Vec<&[u8]> = batch.iter().map(|(k, _)| k.as_slice()).collect();
        let mut seen = 0;
        peer.get_batch(&keys, &mut |i, bytes| {
            assert_eq!(bytes, values[i].as_slice());
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, values.len());
        assert!(peer.verify().unwrap());

        // Deleting half and reclaiming shrinks the pack; the rest reads back.
        let (gone, kept): (Vec<usize>, Vec<usize>) = (0..values.len()).partition(|i| i % 2 == 1);
        peer.delete_batch(&gone.iter().map(|&i| keys[i]).collect::<Vec<_>>())
            .unwrap();
        peer.reclaim().unwrap();
        let kept_keys: Vec<&[u8]> = kept.iter().map(|&i| keys[i]).collect();
        peer.get_batch(&kept_keys, &mut |i, bytes| {
            assert_eq!(bytes, values[kept[i]].as_slice());
            Ok(())
        })
        .unwrap();
        let kept_len: u64 = kept.iter().map(|&i| values[i].len() as u64).sum();
        assert_eq!(
            fs::metadata(store_dir(dir.path()).join("pack"))
                .unwrap()
                .len(),
            kept_len
        );
        let mut found = Vec::new();
        peer.exists_batch(&keys, &mut found).unwrap();
        assert_eq!(
            found,
            (0..values.len()).map(|i| i % 2 == 0).collect::<Vec<_>>()
        );

        // A flipped byte in the pack fails the get that reads it.
        let path = store_dir(dir.path()).join("pack");
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 1;
        fs::write(&path, bytes).unwrap();
        let err = peer
            .get_batch(&kept_keys[..1], &mut |_, _| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
