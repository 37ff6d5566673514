//! What every benchmarked store implements, and the adapter that turns an
//! object store (value → id) into a keyed store by keeping key → id in memory.
//!
//! Adding a peer is one type implementing [`Peer`] (keyed stores) or
//! [`ObjectBackend`] (content-addressed stores, wrapped in [`KeyMapped`]),
//! plus one entry in [`crate::peers::ALL`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Errors in the harness: any error, described.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Called with each value read: the index into the key batch and the bytes.
pub type Check<'a> = dyn FnMut(usize, &[u8]) -> Res<()> + 'a;

/// A keyed store under benchmark.
pub trait Peer {
    /// Stores a batch of keyed values (one transaction where the peer has them).
    fn put_batch(&mut self, batch: &[(&[u8], &[u8])]) -> Res<()>;
    /// Reads every key of the batch and hands its value to `check`; a key
    /// that is not found is an error.
    fn get_batch(&mut self, keys: &[&[u8]], check: &mut Check<'_>) -> Res<()>;
    /// Pushes, for each key, whether the store holds it.
    fn exists_batch(&mut self, keys: &[&[u8]], found: &mut Vec<bool>) -> Res<()>;
    /// Checks the integrity of the whole store; `Ok(false)` when the peer
    /// has no such operation.
    fn verify(&mut self) -> Res<bool>;
    /// Deletes a batch of keys.
    fn delete_batch(&mut self, keys: &[&[u8]]) -> Res<()>;
    /// Gives the space of deleted values back to the filesystem.
    fn reclaim(&mut self) -> Res<()>;
    /// Leaves everything readable by another process that opens the store
    /// (final commit, key map written) and closes the store.
    fn close(self: Box<Self>) -> Res<()>;
}

/// A content-addressed store: values in, ids out.
pub trait ObjectBackend {
    /// Stores each value and pushes its id, in order.
    fn put_values(&mut self, values: &[&[u8]], ids: &mut Vec<Vec<u8>>) -> Res<()>;
    /// Reads each id and hands its value to `check`.
    fn get_values(&mut self, ids: &[&[u8]], check: &mut Check<'_>) -> Res<()>;
    /// Pushes, for each id, whether the store holds it.
    fn contains(&mut self, ids: &[&[u8]], found: &mut Vec<bool>) -> Res<()>;
    /// An id in this store's format that no stored value has (for absent keys).
    fn absent_id(&self, key: &[u8]) -> Vec<u8>;
    /// Deletes the objects `ids` (or forgets them, for stores that delete at `reclaim`).
    fn remove(&mut self, ids: &[&[u8]]) -> Res<()>;
    /// Gives back the space of removed objects; `kept` is every id still in use.
    fn reclaim(&mut self, kept: &[&[u8]]) -> Res<()>;
    /// Checks the whole store; `Ok(false)` when there is no such operation.
    fn verify(&mut self) -> Res<bool>;
    /// Closes the store.
    fn close(self: Box<Self>) -> Res<()>;
}

/// A keyed store made of an object store and a key → id map in memory,
/// saved to a side file (outside the store) for the fresh-process reader.
pub struct KeyMapped {
    backend: Box<dyn ObjectBackend>,
    map: HashMap<Vec<u8>, Vec<u8>>,
    map_file: PathBuf,
    ids: Vec<Vec<u8>>,
}

impl KeyMapped {
    /// Wraps a new, empty store.
    pub fn new(backend: Box<dyn ObjectBackend>, map_file: PathBuf) -> KeyMapped {
        KeyMapped {
            backend,
            map: HashMap::new(),
            map_file,
            ids: Vec::new(),
        }
    }

    /// Wraps an existing store, loading the key map saved by [`Peer::close`].
    pub fn load(backend: Box<dyn ObjectBackend>, map_file: PathBuf) -> Res<KeyMapped> {
        let map = read_map(&map_file)?;
        Ok(KeyMapped {
            backend,
            map,
            map_file,
            ids: Vec::new(),
        })
    }
}

impl Peer for KeyMapped {
    fn put_batch(&mut self, batch: &[(&[u8], &[u8])]) -> Res<()> {
        let values: Vec<&[u8]> = batch.iter().map(|(_, v)| *v).collect();
        self.ids.clear();
        self.backend.put_values(&values, &mut self.ids)?;
        for ((key, _), id) in batch.iter().zip(self.ids.drain(..)) {
            self.map.insert(key.to_vec(), id);
        }
        Ok(())
    }

    fn get_batch(&mut self, keys: &[&[u8]], check: &mut Check<'_>) -> Res<()> {
        let KeyMapped { backend, map, .. } = self;
        let ids = keys
            .iter()
            .map(|k| {
                map.get(*k)
                    .map(Vec::as_slice)
                    .ok_or_else(|| "key not in the key map".into())
            })
            .collect::<Res<Vec<&[u8]>>>()?;
        backend.get_values(&ids, check)
    }

    fn exists_batch(&mut self, keys: &[&[u8]], found: &mut Vec<bool>) -> Res<()> {
        // A key the map does not know still costs one lookup in the store
        // (of an id nothing has), as it would with an on-disk index.
        let KeyMapped { backend, map, .. } = self;
        let absent: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| !map.contains_key(**k))
            .map(|k| backend.absent_id(k))
            .collect();
        let mut absent_iter = absent.iter();
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            match map.get(*key) {
                Some(id) => ids.push(id.as_slice()),
                None => ids.push(absent_iter.next().ok_or("absent id list too short")?),
            }
        }
        backend.contains(&ids, found)
    }

    fn verify(&mut self) -> Res<bool> {
        self.backend.verify()
    }

    fn delete_batch(&mut self, keys: &[&[u8]]) -> Res<()> {
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            ids.push(
                self.map
                    .remove(*key)
                    .ok_or("deleting a key not in the map")?,
            );
        }
        let refs: Vec<&[u8]> = ids.iter().map(Vec::as_slice).collect();
        self.backend.remove(&refs)
    }

    fn reclaim(&mut self) -> Res<()> {
        let kept: Vec<&[u8]> = self.map.values().map(Vec::as_slice).collect();
        self.backend.reclaim(&kept)
    }

    fn close(self: Box<Self>) -> Res<()> {
        write_map(&self.map_file, &self.map)?;
        self.backend.close()
    }
}

/// Key map file: repeated `u16le key len ‖ key ‖ u8 id len ‖ id`.
fn write_map(path: &Path, map: &HashMap<Vec<u8>, Vec<u8>>) -> Res<()> {
    let mut out = BufWriter::new(File::create(path)?);
    for (key, id) in map {
        out.write_all(&(key.len() as u16).to_le_bytes())?;
        out.write_all(key)?;
        out.write_all(&[id.len() as u8])?;
        out.write_all(id)?;
    }
    out.flush()?;
    Ok(())
}

fn read_map(path: &Path) -> Res<HashMap<Vec<u8>, Vec<u8>>> {
    let mut bytes = Vec::new();
    BufReader::new(File::open(path)?).read_to_end(&mut bytes)?;
    let mut map = HashMap::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(2).ok_or("truncated key map")?;
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let (key, tail) = tail.split_at_checked(len).ok_or("truncated key map")?;
        let (&id_len, tail) = tail.split_first().ok_or("truncated key map")?;
        let (id, tail) = tail
            .split_at_checked(usize::from(id_len))
            .ok_or("truncated key map")?;
        map.insert(key.to_vec(), id.to_vec());
        rest = tail;
    }
    Ok(map)
}

/// Bytes the files under `dir` take on disk (allocated blocks), and how many files.
pub fn disk_usage(dir: &Path) -> Res<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                bytes += meta.blocks() * 512;
                files += 1;
            }
        }
    }
    Ok((bytes, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_map_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map");
        let mut map = HashMap::new();
        map.insert(vec![1, 2, 3], vec![9; 32]);
        map.insert(vec![], vec![7; 20]);
        write_map(&path, &map).unwrap();
        assert_eq!(read_map(&path).unwrap(), map);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read_map(&path).is_err());
    }
}
