//! SQLite through rusqlite (bundled library): one table of key → value
//! blobs, WAL, `synchronous=OFF`, one transaction per batch of 1,000.

use std::fs;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::{PeerSpec, store_dir};
use crate::peer::{Check, Peer, Res};

pub const SPEC: PeerSpec = PeerSpec {
    id: "sqlite",
    label: "SQLite (rusqlite, bundled)",
    durability: "none (WAL, synchronous=OFF)",
    verify: "PRAGMA integrity_check (b-tree structure; values carry no checksum)",
    reclaim: "DELETE in batches of 1,000, VACUUM, wal_checkpoint(TRUNCATE)",
    create,
    open,
};

struct Sqlite {
    conn: Connection,
}

fn connect(dir: &Path) -> Res<Connection> {
    let conn = Connection::open(store_dir(dir).join("kv.sqlite"))?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")?;
    Ok(conn)
}

fn create(dir: &Path) -> Res<Box<dyn Peer>> {
    fs::create_dir_all(store_dir(dir))?;
    let conn = connect(dir)?;
    conn.execute_batch("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL);")?;
    Ok(Box::new(Sqlite { conn }))
}

fn open(dir: &Path) -> Res<Box<dyn Peer>> {
    Ok(Box::new(Sqlite {
        conn: connect(dir)?,
    }))
}

impl Peer for Sqlite {
    fn put_batch(&mut self, batch: &[(&[u8], &[u8])]) -> Res<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO kv (key, value) VALUES (?1, ?2)")?;
            for (key, value) in batch {
                insert.execute((key, value))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn get_batch(&mut self, keys: &[&[u8]], check: &mut Check<'_>) -> Res<()> {
        let tx = self.conn.transaction()?;
        {
            let mut select = tx.prepare_cached("SELECT value FROM kv WHERE key = ?1")?;
            for (i, key) in keys.iter().enumerate() {
                let mut rows = select.query([key])?;
                let row = rows.next()?.ok_or("key not found")?;
                check(i, row.get_ref(0)?.as_blob()?)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn exists_batch(&mut self, keys: &[&[u8]], found: &mut Vec<bool>) -> Res<()> {
        let tx = self.conn.transaction()?;
        {
            let mut select = tx.prepare_cached("SELECT 1 FROM kv WHERE key = ?1")?;
            for key in keys {
                found.push(select.query_row([key], |_| Ok(())).optional()?.is_some());
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn verify(&mut self) -> Res<bool> {
        let result: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
        if result != "ok" {
            return Err(format!("integrity_check: {result}").into());
        }
        Ok(true)
    }

    fn delete_batch(&mut self, keys: &[&[u8]]) -> Res<()> {
        let tx = self.conn.transaction()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
            for key in keys {
                delete.execute([key])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn reclaim(&mut self) -> Res<()> {
        self.conn
            .execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.conn.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}
