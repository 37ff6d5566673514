//! One simulated build of a [`Workspace`]: what a real compiler does, per
//! package in dependency order, through a [`BuildSession`].
//!
//! 1. Quick path: file content hashes and upstream metadata ids against the
//!    package's previous root; unchanged → skip the package. Like a real
//!    compiler's file-stamp cache (mtime and size), [`SourceStamps`] keeps
//!    each file's content hash under a fingerprint of the model fields that
//!    render it, so an unchanged file is neither rendered nor hashed again.
//! 2. Parse tier, per file: hit → reuse the AST; miss → "parse" and store.
//! 3. Semantic hashes: feed every function to a [`SemanticHasher`], then
//!    [`hash_call_graph`] with upstream callees from their metadata.
//! 4. Function tier (non-generic functions), instance tier (every call to a
//!    generic function, by type arguments) and comptime tier: hit → reuse,
//!    its bytes checked against what compiling gives (a wrong hit is
//!    counted, and fails every scenario); miss → "compile" (deterministic
//!    bytes) and store.
//! 5. Metadata and the build root; at the end, all refs in one transaction.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::oracle::InstanceKey;
use super::workspace::{FnRef, TypeRef, Workspace};
use crate::compiler::{
    BuildSession, CacheKey, CompilerId, ContentHash, FunctionNode, PackageMetadata, PublicFunction,
    SemanticHash, SemanticHasher, hash_call_graph,
};
use crate::error::Result;
use crate::id::ObjectId;
use crate::index::{Index, Lookup, NamedParts};
use crate::name::PackageName;
use crate::store::Store;

/// Lookups of one tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierOutcome {
    /// Lookups made.
    pub lookups: u64,
    /// Hits.
    pub hits: u64,
    /// Misses (then compiled and stored).
    pub misses: u64,
}

impl TierOutcome {
    fn count(&mut self, hit: bool) {
        self.lookups += 1;
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }
}

/// What one build did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildOutcome {
    /// Packages skipped by the quick path.
    pub skipped: usize,
    /// Packages built.
    pub built: usize,
    /// Parse tier.
    pub parse: TierOutcome,
    /// Function tier.
    pub function: TierOutcome,
    /// Instance tier.
    pub instance: TierOutcome,
    /// Comptime tier.
    pub comptime: TierOutcome,
    /// Artifacts stored.
    pub puts: u64,
    /// Bytes of artifacts stored.
    pub bytes_written: u64,
    /// Hits whose bytes differ from what compiling gives (must be 0).
    pub wrong_hits: u64,
    /// Non-generic functions whose function-tier key missed.
    pub missed_functions: BTreeSet<FnRef>,
    /// Instance keys that missed.
    pub missed_instances: BTreeSet<InstanceKey>,
    /// Wall time of the build.
    pub wall: Duration,
    /// The part of `wall` spent in the store: session open, quick checks,
    /// lookups, reads, puts, roots and the publish (its flush included);
    /// not rendering, hashing or "compiling".
    pub store: Duration,
    /// The published package metadata, by package index.
    pub metadata: Vec<PackageMetadata>,
}

impl BuildOutcome {
    /// All lookups, every tier.
    pub fn lookups(&self) -> u64 {
        self.parse.lookups + self.function.lookups + self.instance.lookups + self.comptime.lookups
    }

    /// All misses, every tier.
    pub fn misses(&self) -> u64 {
        self.parse.misses + self.function.misses + self.instance.misses + self.comptime.misses
    }
}

/// The definition hash of a type of the model.
pub fn type_hash(ws: &Workspace, t: TypeRef) -> Result<SemanticHash> {
    let mut h = SemanticHasher::new();
    h.begin_node("type");
    h.symbol(&ws.type_name(t));
    if let TypeRef::Defined { package, ty } = t {
        for field in &ws.packages[package].types[ty].fields {
            h.field(field);
        }
    }
    h.end_node();
    h.finish()
}

fn signature_hash(ws: &Workspace, f: FnRef) -> Result<SemanticHash> {
    let function = ws.function(f);
    let mut h = SemanticHasher::new();
    h.begin_node("signature");
    h.literal_uint(function.type_params as u128);
    for p in 0..function.params {
        h.type_annotation(super::workspace::BUILTINS[p % super::workspace::BUILTINS.len()]);
    }
    h.end_node();
    h.finish()
}

/// The content hashes of a workspace's files, kept between builds the way a
/// compiler keeps file stamps: a file whose fingerprint (every model field
/// its text is rendered from) is unchanged keeps its hash without being
/// rendered.
#[derive(Debug, Default)]
pub struct SourceStamps {
    files: HashMap<(usize, usize), (blake3::Hash, ContentHash)>,
}

impl SourceStamps {
    /// No stamps: the first build renders and hashes every file.
    pub fn new() -> SourceStamps {
        SourceStamps::default()
    }

    /// File `file` of package `p`: its content hash, and its text when it
    /// had to be rendered.
    fn hash(&mut self, ws: &Workspace, p: usize, file: usize) -> (ContentHash, Option<String>) {
        let stamp = fingerprint(ws, p, file);
        if let Some((known, hash)) = self.files.get(&(p, file))
            && *known == stamp
        {
            return (*hash, None);
        }
        let text = ws.packages[p].files[file].text(ws, p);
        let hash = ContentHash::of(text.as_bytes());
        self.files.insert((p, file), (stamp, hash));
        (hash, Some(text))
    }
}

/// A hash of everything [`super::workspace::SourceFile::text`] reads.
fn fingerprint(ws: &Workspace, p: usize, file: usize) -> blake3::Hash {
    fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    let package = &ws.packages[p];
    let source = &package.files[file];
    let mut h = blake3::Hasher::new();
    field(&mut h, package.name.as_bytes());
    field(&mut h, &(file as u64).to_le_bytes());
    field(&mut h, &source.cosmetic.to_le_bytes());
    if file == 0 {
        for ty in &package.types {
            field(&mut h, ty.name.as_bytes());
            for f in &ty.fields {
                field(&mut h, f.as_bytes());
            }
        }
    }
    for &f in &source.functions {
        let function = &package.functions[f];
        field(&mut h, function.name.as_bytes());
        for n in [
            function.params as u64,
            function.statements as u64,
            function.body_seed,
            function.names_seed,
            function.calls.len() as u64,
        ] {
            field(&mut h, &n.to_le_bytes());
        }
        for call in &function.calls {
            field(&mut h, ws.packages[call.target.package].name.as_bytes());
            field(&mut h, ws.function(call.target).name.as_bytes());
        }
    }
    h.finalize()
}

/// Whether `found` is a hit; a hit whose bytes are not `expected` (what
/// compiling would give) is counted in `wrong`.
fn checked<B: AsRef<[u8]>>(found: Lookup<B>, expected: &[u8], wrong: &mut u64) -> bool {
    match found {
        Lookup::Hit(bytes) => {
            if bytes.as_ref() != expected {
                *wrong += 1;
            }
            true
        }
        Lookup::Miss(_) => false,
    }
}

/// One tier's keys of one package and the artifact each should hold: looked
/// up together ([`BuildSession::get_many`]), and the misses stored together
/// ([`BuildSession::put_many`]), as a compiler that knows a package's keys
/// before it compiles would ask.
#[derive(Default)]
struct Batch {
    keys: Vec<CacheKey>,
    artifacts: Vec<Vec<u8>>,
    missed: Vec<usize>,
}

impl Batch {
    fn push(&mut self, key: CacheKey, artifact: Vec<u8>) {
        self.keys.push(key);
        self.artifacts.push(artifact);
    }

    /// Whether each key hit (a hit with the wrong bytes counted in
    /// `out.wrong_hits`), in order; the misses are kept for `put_misses`.
    fn get(
        &mut self,
        session: &mut BuildSession<'_>,
        package: &PackageName,
        part: &str,
        out: &mut BuildOutcome,
        in_store: &mut Duration,
    ) -> Result<Vec<(usize, bool)>> {
        let mut hits = vec![false; self.keys.len()];
        let artifacts = &self.artifacts;
        let wrong = &mut out.wrong_hits;
        timed(in_store, || {
            session.get_many(package, &self.keys, part, |i, found| {
                hits[i] = checked(found, &artifacts[i], wrong);
                Ok(())
            })
        })?;
        self.missed = (0..hits.len()).filter(|&i| !hits[i]).collect();
        Ok(hits.into_iter().enumerate().collect())
    }

    /// Stores the artifact of every key `get` missed, as part `part`.
    fn put_misses(
        &self,
        session: &mut BuildSession<'_>,
        package: &PackageName,
        part: &str,
        out: &mut BuildOutcome,
        in_store: &mut Duration,
    ) -> Result<()> {
        if self.missed.is_empty() {
            return Ok(());
        }
        let parts: Vec<[(&str, &[u8]); 1]> = self
            .missed
            .iter()
            .map(|&i| [(part, &self.artifacts[i][..])])
            .collect();
        let entries: Vec<(&CacheKey, NamedParts<'_>)> = self
            .missed
            .iter()
            .zip(&parts)
            .map(|(&i, parts)| (&self.keys[i], &parts[..]))
            .collect();
        timed(in_store, || session.put_many(package, &entries))?;
        out.puts += self.missed.len() as u64;
        out.bytes_written += parts.iter().map(|[(_, b)]| b.len() as u64).sum::<u64>();
        Ok(())
    }
}

/// Runs `f`, adding its time to `total`.
fn timed<T>(total: &mut Duration, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    *total += started.elapsed();
    out
}

/// Deterministic stand-in for compiled output: `len` bytes drawn from `seed`.
fn artifact(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = *blake3::hash(seed).as_bytes();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = *blake3::hash(&block).as_bytes();
    }
    out.truncate(len);
    out
}

/// Builds workspaces on one store, build after build, keeping the file
/// stamps between builds.
pub struct Builder<'a> {
    store: &'a Store,
    index: &'a Index,
    stamps: SourceStamps,
    progress: &'a dyn Fn(usize, usize),
}

impl std::fmt::Debug for Builder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("store", &self.store.root())
            .field("stamps", &self.stamps.files.len())
            .finish()
    }
}

impl<'a> Builder<'a> {
    /// A builder on `store` and `index`; `progress(done, total)` is told
    /// each package as the build reaches it.
    pub fn new(store: &'a Store, index: &'a Index, progress: &'a dyn Fn(usize, usize)) -> Self {
        Builder {
            store,
            index,
            stamps: SourceStamps::new(),
            progress,
        }
    }

    /// Builds the whole workspace once with `compiler`, publishing its refs.
    ///
    /// # Errors
    /// Store, index and hasher errors; [`crate::Error::Conflict`] if another
    /// build moved this namespace's refs meanwhile.
    pub fn build(&mut self, ws: &Workspace, compiler: &CompilerId) -> Result<BuildOutcome> {
        build(
            ws,
            self.store,
            self.index,
            compiler,
            &mut self.stamps,
            self.progress,
        )
    }
}

fn build(
    ws: &Workspace,
    store: &Store,
    index: &Index,
    compiler: &CompilerId,
    stamps: &mut SourceStamps,
    progress: &dyn Fn(usize, usize),
) -> Result<BuildOutcome> {
    let started = Instant::now();
    let mut out = BuildOutcome::default();
    let mut in_store = Duration::ZERO;
    let mut session = timed(&mut in_store, || BuildSession::open(store, index, compiler))?;
    let keys = session.keys().clone();
    let mut metadata_ids: Vec<ObjectId> = Vec::with_capacity(ws.packages.len());
    for (p, package) in ws.packages.iter().enumerate() {
        progress(p, ws.packages.len());
        let name = PackageName::new(package.name.as_str())?;
        let (file_hashes, texts): (Vec<ContentHash>, Vec<Option<String>>) =
            (0..package.files.len())
                .map(|f| stamps.hash(ws, p, f))
                .unzip();
        let upstream: Vec<ObjectId> = package.deps.iter().map(|&d| metadata_ids[d]).collect();
        let quick = timed(&mut in_store, || {
            session.quick_check(&name, &file_hashes, &upstream)
        })?;
        if let Some(previous) = quick {
            metadata_ids.push(previous.metadata_id);
            out.metadata.push(previous.metadata);
            out.skipped += 1;
            continue;
        }
        out.built += 1;

        // Parse tier: every file, looked up in one batch.
        let mut batch = Batch::default();
        for (f, (hash, text)) in file_hashes.iter().zip(texts).enumerate() {
            let key = keys.parse(*hash)?;
            let text = text.unwrap_or_else(|| package.files[f].text(ws, p));
            batch.push(key, text.into_bytes());
        }
        for (_, hit) in batch.get(&mut session, &name, "ast", &mut out, &mut in_store)? {
            out.parse.count(hit);
        }
        batch.put_misses(&mut session, &name, "ast", &mut out, &mut in_store)?;

        // Semantic hashes, callees first.
        let mut nodes = Vec::with_capacity(package.functions.len());
        for function in &package.functions {
            let mut h = SemanticHasher::new();
            function.feed(ws, &mut h);
            let mut callees = Vec::new();
            let mut external = Vec::new();
            for call in &function.calls {
                let target = ws.function(call.target);
                if call.target.package == p {
                    callees.push(target.name.clone());
                } else if let Some(ext) =
                    out.metadata[call.target.package].external_callee(&target.name)
                {
                    external.push(ext);
                }
            }
            nodes.push(FunctionNode {
                id: function.name.clone(),
                body_hash: h.finish()?,
                callees,
                external_callees: external,
            });
        }
        let hashes = hash_call_graph(&nodes)?;
        let final_hash = |name: &str| hashes.get(name);

        // Function tier: every non-generic function, looked up in one batch.
        let mut batch = Batch::default();
        let mut batch_fns = Vec::new();
        for (f, function) in package.functions.iter().enumerate() {
            if function.type_params > 0 {
                continue;
            }
            let Some(hash) = final_hash(&function.name) else {
                continue;
            };
            let key = keys.function(&package.name, &function.name, &hash)?;
            let code = artifact(key.key().encoding(), 40 * function.statements);
            batch.push(key, code);
            batch_fns.push(FnRef {
                package: p,
                function: f,
            });
        }
        for (i, hit) in batch.get(&mut session, &name, "code", &mut out, &mut in_store)? {
            out.function.count(hit);
            if !hit {
                out.missed_functions.insert(batch_fns[i]);
            }
        }
        batch.put_misses(&mut session, &name, "code", &mut out, &mut in_store)?;

        // Instance tier: every distinct call to a generic function, looked
        // up in one batch.
        let mut seen: BTreeSet<InstanceKey> = BTreeSet::new();
        let mut batch = Batch::default();
        let mut batch_instances = Vec::new();
        for function in &package.functions {
            for call in &function.calls {
                let callee = ws.function(call.target);
                if callee.type_params == 0 || !seen.insert((call.target, call.type_args.clone())) {
                    continue;
                }
                let source = &ws.packages[call.target.package];
                // The generic's own final body hash, whichever package asks, so
                // that one instance has one key everywhere.
                let body = if call.target.package == p {
                    final_hash(&callee.name)
                } else {
                    out.metadata[call.target.package]
                        .public_functions
                        .get(&callee.name)
                        .map(|f| f.body_hash)
                };
                let Some(body) = body else { continue };
                let args: Vec<String> = call.type_args.iter().map(|t| ws.type_name(*t)).collect();
                let defs = call
                    .type_args
                    .iter()
                    .map(|t| type_hash(ws, *t))
                    .collect::<Result<Vec<_>>>()?;
                let key = keys.instance(&source.name, &callee.name, &args, &body, &defs)?;
                let ast = artifact(key.key().encoding(), 40 * callee.statements);
                batch.push(key, ast);
                batch_instances.push((call.target, call.type_args.clone()));
            }
        }
        for (i, hit) in batch.get(&mut session, &name, "ast", &mut out, &mut in_store)? {
            out.instance.count(hit);
            if !hit {
                out.missed_instances.insert(batch_instances[i].clone());
            }
        }
        batch.put_misses(&mut session, &name, "ast", &mut out, &mut in_store)?;

        // Comptime tier, looked up in one batch.
        let mut batch = Batch::default();
        for function in &package.functions {
            let (Some(args), Some(body)) = (function.comptime, final_hash(&function.name)) else {
                continue;
            };
            let args_hash = SemanticHash::from(blake3::hash(&args.to_le_bytes()));
            let key = keys.comptime(&function.name, &args_hash, &body)?;
            let value = artifact(key.key().encoding(), 8 + (args % 248) as usize);
            batch.push(key, value);
        }
        for (_, hit) in batch.get(&mut session, &name, "value", &mut out, &mut in_store)? {
            out.comptime.count(hit);
        }
        batch.put_misses(&mut session, &name, "value", &mut out, &mut in_store)?;

        // Metadata, then the package's root.
        let mut meta = PackageMetadata::new(package.name.as_str(), compiler_version(compiler));
        for (f, function) in package.functions.iter().enumerate() {
            if !function.public {
                continue;
            }
            let Some(body) = final_hash(&function.name) else {
                continue;
            };
            meta.public_functions.insert(
                function.name.clone(),
                PublicFunction {
                    signature_hash: signature_hash(
                        ws,
                        FnRef {
                            package: p,
                            function: f,
                        },
                    )?,
                    body_hash: body,
                    is_generic: function.type_params > 0,
                    type_params: (0..function.type_params).map(|t| format!("T{t}")).collect(),
                },
            );
        }
        for t in 0..package.types.len() {
            let r = TypeRef::Defined { package: p, ty: t };
            meta.public_types
                .insert(package.types[t].name.clone(), type_hash(ws, r)?);
        }
        let finished = timed(&mut in_store, || {
            session.finish_package(&name, &meta, &file_hashes, &upstream)
        })?;
        metadata_ids.push(finished.metadata_id);
        out.metadata.push(meta);
    }
    timed(&mut in_store, || session.publish("simulate"))?;
    out.wall = started.elapsed();
    out.store = in_store;
    Ok(out)
}

fn compiler_version(compiler: &CompilerId) -> String {
    compiler
        .namespace()
        .map_or_else(|_| "unknown".into(), |ns| ns.to_string())
}
