//! redb: one table of key → value, one write transaction per batch of 1,000.

use std::fs;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::{PeerSpec, store_dir};
use crate::peer::{Check, Peer, Res};

pub const SPEC: PeerSpec = PeerSpec {
    id: "redb",
    label: "redb",
    durability: "none (Durability::None per batch; one Immediate commit at close)",
    verify: "Database::check_integrity (page checksums and structure)",
    reclaim: "remove in batches of 1,000, Immediate commit, Database::compact",
    create,
    open,
};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("values");

struct Redb {
    db: Database,
}

fn db_path(dir: &Path) -> PathBuf {
    store_dir(dir).join("values.redb")
}

fn create(dir: &Path) -> Res<Box<dyn Peer>> {
    fs::create_dir_all(store_dir(dir))?;
    let db = Database::create(db_path(dir))?;
    let tx = db.begin_write()?;
    tx.open_table(TABLE)?;
    tx.commit()?;
    Ok(Box::new(Redb { db }))
}

fn open(dir: &Path) -> Res<Box<dyn Peer>> {
    Ok(Box::new(Redb {
        db: Database::open(db_path(dir))?,
    }))
}

impl Redb {
    fn commit_durably(&self) -> Res<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        tx.commit()?;
        Ok(())
    }
}

impl Peer for Redb {
    fn put_batch(&mut self, batch: &[(&[u8], &[u8])]) -> Res<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None)?;
        {
            let mut table = tx.open_table(TABLE)?;
            for (key, value) in batch {
                table.insert(*key, *value)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn get_batch(&mut self, keys: &[&[u8]], check: &mut Check<'_>) -> Res<()> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        for (i, key) in keys.iter().enumerate() {
            let value = table.get(*key)?.ok_or("key not found")?;
            check(i, value.value())?;
        }
        Ok(())
    }

    fn exists_batch(&mut self, keys: &[&[u8]], found: &mut Vec<bool>) -> Res<()> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        for key in keys {
            found.push(table.get(*key)?.is_some());
        }
        Ok(())
    }

    fn verify(&mut self) -> Res<bool> {
        if !self.db.check_integrity()? {
            return Err("check_integrity found damage (and repaired it)".into());
        }
        Ok(true)
    }

    fn delete_batch(&mut self, keys: &[&[u8]]) -> Res<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None)?;
        {
            let mut table = tx.open_table(TABLE)?;
            for key in keys {
                table.remove(*key)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn reclaim(&mut self) -> Res<()> {
        self.commit_durably()?;
        self.db.compact()?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.commit_durably()?;
        Ok(())
    }
}
