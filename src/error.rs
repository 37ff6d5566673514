//! The one error type of the library.
//!
//! Every variant is something a caller can branch on. A compiler treats
//! [`Error::is_cache_miss`] errors as "not cached" and rebuilds; everything
//! else is a real failure to report. Every I/O error carries the action that
//! was being attempted and the path it was attempted on.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::id::ObjectId;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in rask-store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object is not in the store.
    #[error("object {id} not found (no file at {path})")]
    NotFound {
        /// The id that was asked for.
        id: ObjectId,
        /// Where the object would live.
        path: PathBuf,
    },

    /// Bytes on disk failed validation: wrong hash, bad header, truncated.
    ///
    /// The store never returns the bytes of a corrupt object. Putting the
    /// same content again replaces the damaged copy.
    #[error("corrupt {what} at {path}: {reason}")]
    Corrupt {
        /// What was being read ("object 3fa4…", "format stamp", …).
        what: String,
        /// The damaged file.
        path: PathBuf,
        /// What exactly is wrong with it.
        reason: String,
    },

    /// The directory exists but holds no rask-store.
    #[error(
        "no rask-store at {path} ({reason}); create one with `rask-store --store {path} init`, \
         or point --store / RASK_STORE at an existing store"
    )]
    NotAStore {
        /// The directory that was opened.
        path: PathBuf,
        /// Why it is not a store.
        reason: String,
    },

    /// The store (or one of its files) was written by a format this build
    /// does not understand.
    #[error(
        "{path} has format {found}, but this rask-store reads format {supported}; \
         use a rask-store release that reads format {found}, or delete the cache directory \
         (its contents are reconstructible) and run `rask-store init`"
    )]
    UnsupportedFormat {
        /// The file whose format was refused.
        path: PathBuf,
        /// The format that was found.
        found: String,
        /// The format this build reads.
        supported: String,
    },

    /// A user-supplied object id or id prefix is malformed.
    #[error("invalid object id {input:?}: {reason}")]
    InvalidId {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// A namespace or package name breaks the naming rules.
    #[error("invalid {what} {name:?}: {rule}")]
    InvalidName {
        /// "namespace" or "package name".
        what: &'static str,
        /// The name given.
        name: String,
        /// Which rule it breaks.
        rule: String,
    },

    /// A store configuration key or value is not acceptable.
    #[error("invalid configuration {key:?}: {reason}")]
    InvalidConfig {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// An id prefix matches more than one object.
    #[error(
        "object id prefix {prefix:?} is ambiguous: it matches {count} objects; give more hex digits"
    )]
    AmbiguousId {
        /// The prefix given.
        prefix: String,
        /// How many objects it matched (at least two).
        count: usize,
    },

    /// No object id starts with the given prefix.
    #[error("no object id starts with {prefix:?} (looked in {dir})")]
    PrefixNotFound {
        /// The prefix given.
        prefix: String,
        /// The fanout directory searched.
        dir: PathBuf,
    },

    /// A compiler drove the semantic hasher inconsistently: unbalanced
    /// nodes or scopes, or a use of a local that was never bound. This is a
    /// bug in the compiler's AST walk, not a cache problem.
    #[error("semantic hasher misused: {reason}")]
    HasherMisuse {
        /// What was wrong, naming the item number where it happened.
        reason: String,
    },

    /// A call graph handed to the Merkle hasher is inconsistent (duplicate
    /// function ids, a callee that is not in the package, an external
    /// callee given two different hashes).
    #[error("invalid call graph: {reason}")]
    InvalidCallGraph {
        /// What was wrong.
        reason: String,
    },

    /// In-memory bytes (package metadata, a serialized artifact) failed to
    /// decode or are not in canonical form. A compiler reading a cached
    /// artifact treats this like [`Error::Corrupt`]: rebuild it.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded ("package metadata", "CBOR artifact").
        what: &'static str,
        /// What exactly is wrong.
        reason: String,
    },

    /// A value could not be serialized.
    #[error("could not encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },

    /// A composite key (or one of its command-line components) is malformed.
    #[error("invalid key {input:?}: {reason}")]
    InvalidKey {
        /// The key, or the component, given.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// A keyed entry cannot be made as asked (bad part names, a part object
    /// that does not exist).
    #[error("invalid entry: {reason}")]
    InvalidEntry {
        /// What is wrong.
        reason: String,
    },

    /// An operating-system call failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done, as a verb phrase ("read object", "create directory").
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A ref compare-and-swap lost: the ref did not hold the expected value.
    ///
    /// Nothing was changed. Re-read the ref and decide again.
    #[error("ref {reference} was not updated: expected {expected}, but it is {current}")]
    Conflict {
        /// The ref, as `<namespace>/<package>`.
        reference: String,
        /// What the caller expected ("absent", an id, …).
        expected: String,
        /// What the ref holds now: an id, or "absent".
        current: String,
    },

    /// A lock is held by another live process and did not come free in time.
    #[error("{path} is locked ({holder}); try again later")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as far as is known ("pid 4711", "another process").
        holder: String,
    },

    /// A request that can never succeed as given, e.g. the same ref twice in
    /// one transaction.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// True for errors a cache client should treat as a miss: the object is
    /// absent, its bytes failed validation, or a cached artifact failed to
    /// decode.
    pub fn is_cache_miss(&self) -> bool {
        matches!(
            self,
            Error::NotFound { .. } | Error::Corrupt { .. } | Error::Malformed { .. }
        )
    }

    /// True when the error comes from bad user input rather than the store.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::InvalidId { .. }
                | Error::AmbiguousId { .. }
                | Error::InvalidName { .. }
                | Error::InvalidConfig { .. }
                | Error::InvalidKey { .. }
                | Error::InvalidEntry { .. }
                | Error::InvalidRequest { .. }
        )
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        what: impl fmt::Display,
        path: &Path,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corrupt {
            what: what.to_string(),
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Attaches an action and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| Error::io(action, path, source))
    }
}
