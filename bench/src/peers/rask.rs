//! rask-store through its object API, with the key → id map in memory.
//!
//! When the keyed index lands, a second spec here ("rask-store (keyed
//! index)") implements [`Peer`] directly on it; the harness needs nothing else.

use std::fs;
use std::path::Path;
use std::thread;

use rask_store::layout::Layout;
use rask_store::{Durability, Kind, ObjectId, Store, StoreOptions};

use super::{PeerSpec, store_dir};
use crate::peer::{Check, KeyMapped, ObjectBackend, Peer, Res};

pub const OBJECTS: PeerSpec = PeerSpec {
    id: "rask",
    label: "rask-store (objects, key map in memory)",
    durability: "none (Durability::None)",
    verify: "walk objects/, get_object (re-hash) on every file, one thread per core \
             (stand-in until a `verify` command exists)",
    reclaim: "unlink the object files (what gc will do; gc does not exist yet)",
    create,
    open,
};

struct RaskObjects {
    store: Store,
}

fn options() -> StoreOptions {
    StoreOptions::with_durability(Durability::None)
}

fn create(dir: &Path) -> Res<Box<dyn Peer>> {
    let store = Store::create(store_dir(dir), options())?;
    Ok(Box::new(KeyMapped::new(
        Box::new(RaskObjects { store }),
        dir.join("keymap"),
    )))
}

fn open(dir: &Path) -> Res<Box<dyn Peer>> {
    let store = Store::open(store_dir(dir), options())?;
    Ok(Box::new(KeyMapped::load(
        Box::new(RaskObjects { store }),
        dir.join("keymap"),
    )?))
}

fn object_id(id: &[u8]) -> Res<ObjectId> {
    let bytes: [u8; 32] = id.try_into().map_err(|_| "object id is not 32 bytes")?;
    Ok(ObjectId::from_bytes(bytes))
}

impl ObjectBackend for RaskObjects {
    fn put_values(&mut self, values: &[&[u8]], ids: &mut Vec<Vec<u8>>) -> Res<()> {
        for value in values {
            let id = self.store.put_object(Kind::Instance, &[], value)?;
            ids.push(id.as_bytes().to_vec());
        }
        Ok(())
    }

    fn get_values(&mut self, ids: &[&[u8]], check: &mut Check<'_>) -> Res<()> {
        for (i, id) in ids.iter().enumerate() {
            let object = self.store.get_object(&object_id(id)?)?;
            check(i, object.payload())?;
        }
        Ok(())
    }

    fn contains(&mut self, ids: &[&[u8]], found: &mut Vec<bool>) -> Res<()> {
        for id in ids {
            found.push(self.store.contains_object(&object_id(id)?)?);
        }
        Ok(())
    }

    fn absent_id(&self, key: &[u8]) -> Vec<u8> {
        blake3::hash(key).as_bytes().to_vec()
    }

    fn remove(&mut self, ids: &[&[u8]]) -> Res<()> {
        for id in ids {
            fs::remove_file(self.store.object_path(&object_id(id)?))?;
        }
        Ok(())
    }

    fn reclaim(&mut self, _kept: &[&[u8]]) -> Res<()> {
        Ok(())
    }

    fn verify(&mut self) -> Res<bool> {
        let ids = list_objects(self.store.root())?;
        let threads = thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = ids.len().div_ceil(threads).max(1);
        let store = &self.store;
        thread::scope(|scope| {
            let workers: Vec<_> = ids
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || -> Res<()> {
                        for id in part {
                            store.get_object(id)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for worker in workers {
                worker.join().map_err(|_| "verify thread panicked")??;
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        })?;
        Ok(true)
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.store.flush()?;
        Ok(())
    }
}

/// Every object id under the store's fanout directories.
fn list_objects(root: &Path) -> Res<Vec<ObjectId>> {
    let layout = Layout::new(root);
    let mut ids = Vec::new();
    for fanout in fs::read_dir(layout.objects_dir())? {
        let fanout = fanout?;
        let fanout_name = fanout.file_name();
        let Some(prefix) = fanout_name.to_str() else {
            continue;
        };
        for entry in fs::read_dir(fanout.path())? {
            let name = entry?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|name| Layout::id_from_object_name(prefix, name))
            {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}
