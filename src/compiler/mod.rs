//! The compiler layer: what a compiler needs to turn its own ASTs into
//! cache keys, without converting them into any rask-store type.
//!
//! The hashing half ([`hasher`], [`callgraph`], [`metadata`], [`cbor`])
//! never touches the store; it owns three byte encodings, documented in
//! `docs/FORMAT.md`:
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
//! The caching half runs a build over the store:
//!
//! - [`keys`]: a [`CompilerId`] (name, version, output-changing settings)
//!   selects the namespace; [`KeyBuilder`] makes the composite key of each
//!   tier (parse, function, instance, comptime), the tier name first.
//! - [`session`]: a [`BuildSession`] looks keys up and puts artifacts per
//!   tier (counting hits and misses per tier into the store's statistics,
//!   pinning every object it returns or writes), writes one build root per
//!   package ([`root`]) linking everything the package's build used,
//!   answers the quick path ([`BuildSession::quick_check`]) from a package's
//!   ref, root and metadata alone, and publishes every changed package ref
//!   in one transaction.
//! - [`explain`]: which key component differs from the closest key the
//!   previous build used for the same function.
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
//!
//! # A build, end to end
//!
//! ```
//! use rask_store::compiler::{
//!     BuildSession, CompilerId, ContentHash, FunctionNode, PackageMetadata, SemanticHasher,
//!     hash_call_graph,
//! };
//! use rask_store::{Index, Lookup, PackageName, Store, StoreOptions};
//!
//! # fn main() -> Result<(), rask_store::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::create(dir.path().join(".rask-cache"), StoreOptions::default())?;
//! let index = Index::open(&store)?;
//! let compiler = CompilerId::new("rask", "0.9.0").with_setting("target", "x86_64-linux");
//! let app = PackageName::new("app")?;
//!
//! // The compiler's own walk over its desugared AST: `func main() { helper(<n>) }`
//! // and `func helper(x) { x }`.
//! let hash_bodies = |n: i128| -> Result<Vec<FunctionNode>, rask_store::Error> {
//!     let mut h = SemanticHasher::new();
//!     h.begin_node("func");
//!     h.begin_node("call");
//!     h.callee("app", "helper");
//!     h.literal_int(n);
//!     h.end_node();
//!     h.end_node();
//!     let main = h.finish()?;
//!     let mut h = SemanticHasher::new();
//!     h.begin_node("func");
//!     h.bind_local("x");
//!     h.use_local("x");
//!     h.end_node();
//!     let helper = h.finish()?;
//!     Ok(vec![
//!         FunctionNode { id: "main".into(), body_hash: main, callees: vec!["helper".into()], external_callees: vec![] },
//!         FunctionNode { id: "helper".into(), body_hash: helper, callees: vec![], external_callees: vec![] },
//!     ])
//! };
//! let source = b"func main() { helper(1) } func helper(x) { x }";
//!
//! // One build: look every function up, compile the misses, publish.
//! let build = |source: &[u8], n: i128| -> Result<Vec<String>, rask_store::Error> {
//!     let files = [ContentHash::of(source)];
//!     let mut session = BuildSession::open(&store, &index, &compiler)?;
//!     if session.quick_check(&app, &files, &[])?.is_some() {
//!         session.publish("nothing changed")?;
//!         return Ok(vec!["skipped".into()]);
//!     }
//!     let hashes = hash_call_graph(&hash_bodies(n)?)?;
//!     let mut log = Vec::new();
//!     for function in hashes.functions() {
//!         let key = session.keys().function("app", &function.id, &function.hash)?;
//!         match session.get(&app, &key, "ast")? {
//!             Lookup::Hit(_checked_ast) => log.push(format!("hit {}", function.id)),
//!             Lookup::Miss(_) => {
//!                 let why = session.explain(&app, &key)?;
//!                 log.push(format!("miss {}: {why}", function.id));
//!                 let checked_ast = format!("checked {}", function.id); // the compiler's work
//!                 session.put(&app, &key, &[("ast", checked_ast.as_bytes())])?;
//!             }
//!         }
//!     }
//!     let metadata = PackageMetadata::new("app", "rask 0.9.0");
//!     session.finish_package(&app, &metadata, &files, &[])?;
//!     session.publish("build app")?;
//!     Ok(log)
//! };
//!
//! let first = build(source, 1)?;
//! assert!(first.iter().all(|line| line.starts_with("miss")));
//!
//! // Nothing changed: the quick path skips the package from its ref alone.
//! assert_eq!(build(source, 1)?, ["skipped"]);
//!
//! // `main`'s body changes: `main` misses and says why; `helper` hits.
//! let edited = build(b"func main() { helper(2) } func helper(x) { x }", 2)?;
//! assert!(edited.contains(&"hit helper".to_string()));
//! assert!(edited.contains(
//!     &"miss main: function key for `main`: closest previous key differs: semantic_hash changed"
//!         .to_string()
//! ));
//!
//! let stats = store.stats()?;
//! let function_tier = stats.tiers[&(compiler.namespace()?.to_string(), "function".to_string())];
//! assert_eq!((function_tier.hits, function_tier.misses()), (1, 3));
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
