//! rask-store: a content-addressed object store built to be the on-disk
//! build cache of a compiler.
//!
//! Every artifact (a parsed AST, a monomorphized instance, package metadata,
//! a comptime result) is an immutable [`Object`] named by the BLAKE3 hash of
//! its kind, its links to other objects and its payload ([`ObjectId`]).
//! Objects live in a git-style fanout directory; every read re-checks the
//! hash, so a damaged file is reported as [`Error::Corrupt`] — a cache miss —
//! and never returned as wrong bytes.
//!
//! ```
//! use rask_store::{Kind, Store, StoreOptions};
//!
//! # fn main() -> Result<(), rask_store::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::create(dir.path().join(".rask-cache"), StoreOptions::default())?;
//! let callee = store.put_object(Kind::Ast, &[], b"fn swap(..) { .. }")?;
//! let caller = store.put_object(Kind::Ast, &[callee], b"fn sort(..) { swap(..) }")?;
//!
//! let object = store.get_object(&caller)?;
//! assert_eq!(object.payload(), b"fn sort(..) { swap(..) }");
//! assert_eq!(object.links(), &[callee]);
//!
//! // A compiler treats absent and corrupt objects alike: rebuild.
//! let missing = rask_store::object::compute_id(Kind::Ast, &[], b"never stored");
//! assert!(store.get_object(&missing).unwrap_err().is_cache_miss());
//! # Ok(()) }
//! ```
//!
//! The library never prints, exits, or reads the environment or the working
//! directory; the `rask-store` binary does those.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod clean;
pub mod compiler;
pub mod config;
pub mod dirfd;
pub mod error;
#[doc(hidden)]
pub mod fault;
pub mod gc;
pub(crate) mod helpers;
pub mod id;
pub mod index;
pub mod key;
pub mod layout;
pub mod lock;
pub mod name;
pub mod object;
pub mod pack;
pub(crate) mod packs;
pub mod publish;
pub mod refs;
pub mod simulate;
pub mod stamp;
pub mod stats;
pub mod store;
pub mod verify;
pub mod walk;

pub use error::{Error, Result};
pub use id::{IdSpec, ObjectId};
pub use index::{Entry, Index, IndexOptions, Lookup, Miss, MissCause, PartRef, PutOutcome};
pub use key::{Component, Key, KeyHash};
pub use lock::{PinFile, PinGuard, PinState, Wait};
pub use name::{Namespace, PackageName};
pub use object::{Kind, Object, ObjectBuf, ObjectRef};
pub use publish::Durability;
pub use refs::{Expect, RefUpdate, Reflog, ReflogEntry};
pub use store::{ObjectInfo, Store, StoreOptions};
