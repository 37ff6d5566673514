//! rask-store's own pack files (`rask_store::pack`, step 1 of
//! docs/PACKS.md) with the table a packed store would keep in memory: what
//! a rask-store that packs its objects could reach, with its real object
//! encoding, its real index records and its real verified read.
//!
//! Each new value becomes an `Instance` object appended to one pack
//! (`PackWriter::append_with_id`: the id is computed once, to skip values
//! already stored), and an id → record table in memory finds it; a get is
//! one lookup and `Pack::read_into` (bounds, header, BLAKE3 against the id)
//! into a reused buffer. Opening reads the pack index (`read_index`), as a
//! fresh process would. Nothing is synced. Reclaiming writes the kept
//! objects into a new pack and removes the old one.
//!
//! Not yet a store: no concurrent writers, no gc, no refs; the row measures
//! the pack format and its checks on this disk.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use rask_store::object::compute_id;
use rask_store::pack::{self, Pack, PackRecord, PackWriter};
use rask_store::{Kind, ObjectBuf, ObjectId};

use super::rask::object_id;
use super::{PeerSpec, store_dir};
use crate::peer::{Check, KeyMapped, ObjectBackend, Peer, Res};

pub const SPEC: PeerSpec = PeerSpec {
    id: "rask-pack",
    label: "rask-store pack files (src/pack.rs; records in memory)",
    durability: "none (no fsync)",
    verify: "Pack::read of every record in pack order, one thread",
    reclaim: "append the kept objects to a new pack, remove the old one",
    create,
    open,
};

struct RaskPack {
    root: PathBuf,
    /// The pack being written and its number (`<n>.rsp`, `<n>.rsi`).
    generation: u64,
    writer: Option<PackWriter>,
    pack: Pack,
    records: HashMap<ObjectId, PackRecord>,
    buf: ObjectBuf,
}

fn paths(root: &Path, generation: u64) -> (PathBuf, PathBuf) {
    (
        root.join(format!("{generation}.rsp")),
        root.join(format!("{generation}.rsi")),
    )
}

fn create(dir: &Path) -> Res<Box<dyn Peer>> {
    let root = store_dir(dir);
    fs::create_dir_all(&root)?;
    let (data, index) = paths(&root, 1);
    let writer = PackWriter::create(&data, &index)?;
    let peer = RaskPack {
        pack: Pack::open(&data)?,
        root,
        generation: 1,
        writer: Some(writer),
        records: HashMap::new(),
        buf: ObjectBuf::new(),
    };
    Ok(Box::new(KeyMapped::new(Box::new(peer), dir.join("keymap"))))
}

fn open(dir: &Path) -> Res<Box<dyn Peer>> {
    let root = store_dir(dir);
    let generation: u64 = fs::read_to_string(root.join("current"))?.trim().parse()?;
    let (data, index) = paths(&root, generation);
    let listed = pack::read_index(&index)?;
    if !listed.damaged.is_empty() || listed.torn_tail.is_some() {
        return Err(format!("damaged pack index {}", index.display()).into());
    }
    let records = listed.records.into_iter().map(|r| (r.id, r)).collect();
    let peer = RaskPack {
        pack: Pack::open(&data)?,
        root,
        generation,
        writer: None,
        records,
        buf: ObjectBuf::new(),
    };
    Ok(Box::new(KeyMapped::load(
        Box::new(peer),
        dir.join("keymap"),
    )?))
}

impl ObjectBackend for RaskPack {
    fn put_values(&mut self, values: &[&[u8]], ids: &mut Vec<Vec<u8>>) -> Res<()> {
        let writer = self.writer.as_mut().ok_or("this pack was opened to read")?;
        for value in values {
            let id = compute_id(Kind::Instance, &[], value);
            if let std::collections::hash_map::Entry::Vacant(slot) = self.records.entry(id) {
                slot.insert(writer.append_with_id(id, Kind::Instance, &[], value)?);
            }
            ids.push(id.as_bytes().to_vec());
        }
        Ok(())
    }

    fn get_values(&mut self, ids: &[&[u8]], check: &mut Check<'_>) -> Res<()> {
        for (i, id) in ids.iter().enumerate() {
            let record = self.records.get(&object_id(id)?).ok_or("no such object")?;
            let object = self.pack.read_into(record, &mut self.buf)?;
            check(i, object.payload())?;
        }
        Ok(())
    }

    fn contains(&mut self, ids: &[&[u8]], found: &mut Vec<bool>) -> Res<()> {
        for id in ids {
            found.push(self.records.contains_key(&object_id(id)?));
        }
        Ok(())
    }

    fn absent_id(&self, key: &[u8]) -> Vec<u8> {
        blake3::hash(key).as_bytes().to_vec()
    }

    fn remove(&mut self, ids: &[&[u8]]) -> Res<()> {
        for id in ids {
            self.records.remove(&object_id(id)?);
        }
        Ok(())
    }

    fn reclaim(&mut self, _kept: &[&[u8]]) -> Res<()> {
        // The kept objects are the ones still in the table; copy them in
        // pack order into the next generation.
        let mut kept: Vec<PackRecord> = self.records.values().copied().collect();
        kept.sort_by_key(|r| r.offset);
        let next = self.generation + 1;
        let (data, index) = paths(&self.root, next);
        let mut writer = PackWriter::create(&data, &index)?;
        for record in kept {
            let object = self.pack.read_into(&record, &mut self.buf)?;
            let moved = writer.append_with_id(
                record.id,
                object.kind(),
                object.links(),
                object.payload(),
            )?;
            self.records.insert(record.id, moved);
        }
        let (old_data, old_index) = paths(&self.root, self.generation);
        self.pack = Pack::open(&data)?;
        self.writer = Some(writer);
        self.generation = next;
        fs::remove_file(old_data)?;
        fs::remove_file(old_index)?;
        Ok(())
    }

    fn verify(&mut self) -> Res<bool> {
        let mut all: Vec<PackRecord> = self.records.values().copied().collect();
        all.sort_by_key(|r| r.offset);
        for record in &all {
            self.pack.read_into(record, &mut self.buf)?;
        }
        Ok(true)
    }

    fn close(self: Box<Self>) -> Res<()> {
        fs::write(self.root.join("current"), self.generation.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_across_a_reopen_and_a_reclaim() {
        let dir = tempfile::tempdir().unwrap();
        let mut peer = create(dir.path()).unwrap();
        let values: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let keys: Vec<Vec<u8>> = (0..50u8).map(|i| vec![b'k', i]).collect();
        let batch: Vec<(&[u8], &[u8])> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        peer.put_batch(&batch).unwrap();
        let half: Vec<&[u8]> = keys.iter().step_by(2).map(Vec::as_slice).collect();
        peer.delete_batch(&half).unwrap();
        peer.reclaim().unwrap();
        peer.close().unwrap();

        let mut peer = open(dir.path()).unwrap();
        let kept: Vec<&[u8]> = keys.iter().skip(1).step_by(2).map(Vec::as_slice).collect();
        let mut seen = 0;
        peer.get_batch(&kept, &mut |i, bytes| {
            assert_eq!(bytes, &values[2 * i + 1][..]);
            seen += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 25);
        let mut found = Vec::new();
        peer.exists_batch(&half, &mut found).unwrap();
        assert!(found.iter().all(|f| !f), "deleted keys are gone");
        assert!(peer.verify().unwrap());
    }
}
