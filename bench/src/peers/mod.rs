//! The peers: every store the benchmark runs, in table order.
//!
//! Each peer lives in `<peer dir>/store` (what disk usage counts); side
//! files such as a key map live next to it, outside the store.

use std::path::{Path, PathBuf};

use crate::peer::{Peer, Res};

mod cacache_peer;
pub mod git;
pub mod rask;
mod raskpack;
mod rawfs;
mod rawpack;
mod redb_peer;
mod sqlite;

pub use rawfs::read_and_hash_tree;

/// How to make, describe and reopen one peer.
pub struct PeerSpec {
    /// Name on the command line (`--peers`).
    pub id: &'static str,
    /// Row label in the table.
    pub label: &'static str,
    /// What survives a power loss, as configured.
    pub durability: &'static str,
    /// What the verify phase runs.
    pub verify: &'static str,
    /// What the delete-and-reclaim phase runs.
    pub reclaim: &'static str,
    /// Creates an empty store in `<dir>/store`.
    pub create: fn(&Path) -> Res<Box<dyn Peer>>,
    /// Opens the store a previous `create` + `close` left in `dir`.
    pub open: fn(&Path) -> Res<Box<dyn Peer>>,
}

/// The store directory of a peer living in `dir`.
pub fn store_dir(dir: &Path) -> PathBuf {
    dir.join("store")
}

/// Every peer, in table order. rask-store first: ratios are against it.
pub const ALL: &[PeerSpec] = &[
    rask::KEYED,
    rask::OBJECTS,
    rawfs::SPEC,
    rawpack::SPEC,
    raskpack::SPEC,
    sqlite::SPEC,
    redb_peer::SPEC,
    cacache_peer::SPEC,
    git::SPEC,
];

/// The peer called `id`.
pub fn find(id: &str) -> Option<&'static PeerSpec> {
    ALL.iter().find(|p| p.id == id)
}
