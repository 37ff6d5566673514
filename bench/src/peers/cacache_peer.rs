//! cacache, through its synchronous API (no async runtime compiled in).
//! Keys are the hex of the canonical key bytes (cacache keys are strings).

use std::path::{Path, PathBuf};

use super::{PeerSpec, store_dir};
use crate::peer::{Check, Peer, Res};

pub const SPEC: PeerSpec = PeerSpec {
    id: "cacache",
    label: "cacache (sync API)",
    durability: "none (cacache never syncs)",
    verify: "none (cacache-rs has no verify)",
    reclaim: "RemoveOpts::remove_fully (index bucket and content file)",
    create,
    open,
};

struct Cacache {
    root: PathBuf,
}

fn create(dir: &Path) -> Res<Box<dyn Peer>> {
    std::fs::create_dir_all(store_dir(dir))?;
    open(dir)
}

fn open(dir: &Path) -> Res<Box<dyn Peer>> {
    Ok(Box::new(Cacache {
        root: store_dir(dir),
    }))
}

impl Peer for Cacache {
    fn put_batch(&mut self, batch: &[(&[u8], &[u8])]) -> Res<()> {
        for (key, value) in batch {
            cacache::write_sync(&self.root, hex::encode(key), value)?;
        }
        Ok(())
    }

    fn get_batch(&mut self, keys: &[&[u8]], check: &mut Check<'_>) -> Res<()> {
        for (i, key) in keys.iter().enumerate() {
            let value = cacache::read_sync(&self.root, hex::encode(key))?;
            check(i, &value)?;
        }
        Ok(())
    }

    fn exists_batch(&mut self, keys: &[&[u8]], found: &mut Vec<bool>) -> Res<()> {
        for key in keys {
            found.push(cacache::metadata_sync(&self.root, hex::encode(key))?.is_some());
        }
        Ok(())
    }

    fn verify(&mut self) -> Res<bool> {
        Ok(false)
    }

    fn delete_batch(&mut self, keys: &[&[u8]]) -> Res<()> {
        for key in keys {
            cacache::RemoveOpts::new()
                .remove_fully(true)
                .remove_sync(&self.root, hex::encode(key))?;
        }
        Ok(())
    }

    fn reclaim(&mut self) -> Res<()> {
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        Ok(())
    }
}
