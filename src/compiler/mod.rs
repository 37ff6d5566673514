//! The compiler layer: what a compiler needs to turn its own ASTs into
//! cache keys, without converting them into any rask-store type.
//!
//! This part of the layer never touches the store. It owns no files; it
//! owns three byte encodings, documented in `docs/FORMAT.md`:
//!
//! - [`hasher`]: the *semantic hash* of one function body. The compiler
//!   walks its desugared AST and calls [`SemanticHasher`] node by node
//!   (node kinds, literals, callee identities, type annotations, parameter
//!   modes, field names, patterns, attributes) and reports local bindings by
//!   name; names are replaced by positional scope indices, so renaming a
//!   local never changes the hash. Comments, whitespace, spans and compiler
//!   node ids are never fed.
//! - [`callgraph`]: *Merkle hashes* over one package's call graph. Given each
//!   function's body hash and its callees (in this package, and in upstream
//!   packages with the hashes their metadata exports), [`hash_call_graph`]
//!   gives every function a final hash that changes when anything it
//!   reaches changes; mutually recursive groups share one hash computed in
//!   a canonical order.
//! - [`metadata`]: the *package metadata* a compiled package exports
//!   ([`PackageMetadata`]), with a canonical binary encoding (byte-identical
//!   if and only if equal) and a [`diff`] that names what
//!   changed and which downstream users that invalidates.
//! - [`cbor`]: [`to_cbor`] and [`from_cbor`] serialize a compiler's own artifacts (ASTs, instances)
//!   into the opaque bytes the store keeps.
//!
//! # How a compiler uses it
//!
//! ```
//! use rask_store::compiler::{
//!     FunctionNode, PackageMetadata, PublicFunction, SemanticHasher, diff, hash_call_graph,
//! };
//!
//! # fn main() -> Result<(), rask_store::Error> {
//! // 1. Hash each body while walking the desugared AST.
//! //    func swap(a, b) { compare(a, b) }
//! let mut h = SemanticHasher::new();
//! h.begin_node("func");
//! h.bind_local("a");
//! h.bind_local("b");
//! h.begin_node("call");
//! h.callee("collections", "compare");
//! h.use_local("a");
//! h.use_local("b");
//! h.end_node();
//! h.end_node();
//! let swap_body = h.finish()?;
//!
//! let mut h = SemanticHasher::new();
//! h.begin_node("func");
//! h.bind_local("x");
//! h.bind_local("y");
//! h.begin_node("lt");
//! h.use_local("x");
//! h.use_local("y");
//! h.end_node();
//! h.end_node();
//! let compare_body = h.finish()?;
//!
//! // 2. Fold callee hashes in over the package's call graph.
//! let hashes = hash_call_graph(&[
//!     FunctionNode {
//!         id: "swap".into(),
//!         body_hash: swap_body,
//!         callees: vec!["compare".into()],
//!         external_callees: vec![],
//!     },
//!     FunctionNode {
//!         id: "compare".into(),
//!         body_hash: compare_body,
//!         callees: vec![],
//!         external_callees: vec![],
//!     },
//! ])?;
//!
//! // 3. Export the public hashes for downstream packages.
//! let mut meta = PackageMetadata::new("collections", "rask 0.9.0");
//! meta.public_functions.insert(
//!     "swap".into(),
//!     PublicFunction {
//!         signature_hash: swap_body, // a real compiler hashes the signature separately
//!         body_hash: hashes.get("swap").unwrap(),
//!         is_generic: false,
//!         type_params: vec![],
//!     },
//! );
//! let bytes = meta.encode()?;
//!
//! // 4. Downstream: a call into `collections.swap` folds in the exported
//! //    hash, and a new build of `collections` is compared with the old one.
//! let upstream = PackageMetadata::decode(&bytes)?;
//! let callee = upstream.external_callee("swap").unwrap();
//! assert_eq!(callee.package, "collections");
//! assert!(diff(&upstream, &meta).is_empty()); // identical: skip the downstream package
//! # Ok(()) }
//! ```

pub mod callgraph;
pub mod cbor;
pub mod explain;
pub mod hasher;
pub mod keys;
pub mod metadata;
pub mod root;
pub mod session;

pub use callgraph::{
    CallGraphHashes, ExternalCallee, FunctionNode, HashedFunction, hash_call_graph,
};
pub use cbor::{from_cbor, to_cbor};
pub use explain::{Change, Difference, Explanation, Finding};
pub use hasher::{SemanticHash, SemanticHasher, Tag};
pub use keys::{CacheKey, CompilerId, ContentHash, KeyBuilder, Tier};
pub use metadata::{
    FunctionChange, Impact, Invalidation, InvalidationReason, MetadataDiff, PackageMetadata,
    PublicFunction, UpstreamUse, diff,
};
pub use root::BuildRoot;
pub use session::{BuildSession, FinishedPackage, PreviousBuild, PublishReport};
