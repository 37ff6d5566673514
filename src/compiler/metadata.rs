//! Package metadata: the public function and type hashes a compiled package
//! exports to the packages that depend on it, in a canonical encoding.
//!
//! # Encoding (version 1)
//!
//! ```text
//! offset  size  field
//! 0       4     magic "RSKM"
//! 4       1     metadata format version (1)
//! 5       3     reserved, must be zero
//! 8       …     package_id        str
//!         …     compiler_version  str
//!         4     function count F, u32 LE
//!         …     F functions, strictly increasing by id (byte order):
//!                 id str ‖ signature_hash 32 ‖ body_hash 32 ‖ flags u8
//!                 ‖ type-param count u32 LE ‖ that many str (in declared order)
//!         4     type count T, u32 LE
//!         …     T types, strictly increasing by id (byte order):
//!                 id str ‖ definition_hash 32
//! end-32  32    checksum: BLAKE3 of every preceding byte
//! ```
//!
//! `str` is a u32 LE byte length followed by that many bytes of UTF-8.
//! `flags` bit 0 is `is_generic`; the other bits must be zero.
//!
//! # Invariants
//!
//! - Two values are equal if and only if their encodings are byte-identical:
//!   there is exactly one encoding of each value (maps are sorted, no
//!   padding, no optional fields), and [`PackageMetadata::decode`] refuses
//!   every byte string that is not the encoding of some value (bad magic or
//!   version, nonzero reserved bits, lengths past the end, invalid UTF-8,
//!   unsorted or duplicate ids, trailing bytes, a wrong checksum) with
//!   [`Error::Malformed`]. Decoding never panics and never allocates more
//!   than the input can describe.
//! - So a downstream package may compare upstream metadata byte for byte
//!   (or by object id): identical bytes mean nothing it depends on changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compiler::callgraph::ExternalCallee;
use crate::compiler::hasher::{SEMANTIC_HASH_LEN, SemanticHash};
use crate::error::{Error, Result};

/// First four bytes of encoded package metadata.
pub const MAGIC: [u8; 4] = *b"RSKM";
/// The metadata format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes before the first variable-length field.
pub const HEADER_LEN: usize = 8;
/// Length of the trailing checksum.
pub const CHECKSUM_LEN: usize = 32;
/// BLAKE3 key-derivation context for [`PublicFunction::callee_hash`].
pub const CALLEE_CONTEXT: &str = "rask-store 2026-11-21 exported callee v1";

const OFF_VERSION: usize = 4;
const OFF_RESERVED: usize = 5;
const FLAG_GENERIC: u8 = 0x01;
/// Smallest encoded function entry: empty id, two hashes, flags, no type params.
const MIN_FUNCTION_LEN: usize = 4 + 2 * SEMANTIC_HASH_LEN + 1 + 4;
/// Smallest encoded type entry: empty id and a hash.
const MIN_TYPE_LEN: usize = 4 + SEMANTIC_HASH_LEN;
const WHAT: &str = "package metadata";

/// What a package exports about one public function.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublicFunction {
    /// Hash of the function's signature (parameters, modes, return type,
    /// default values, bounds).
    pub signature_hash: SemanticHash,
    /// The function's final (Merkle) body hash; changes when anything it
    /// calls changes.
    pub body_hash: SemanticHash,
    /// Whether the function is generic (monomorphized at call sites).
    pub is_generic: bool,
    /// The type parameters, in declared order.
    pub type_params: Vec<String>,
}

impl PublicFunction {
    /// The hash a downstream caller folds in for this function (as an
    /// [`ExternalCallee`] hash): it covers the signature hash, the body
    /// hash, genericity and the type parameters, so any change to this
    /// entry re-keys every caller.
    ///
    /// `BLAKE3-derive_key(CALLEE_CONTEXT, signature_hash ‖ body_hash ‖ flags
    /// ‖ u64 P ‖ P × (u64 len ‖ type parameter))`, integers little-endian.
    pub fn callee_hash(&self) -> SemanticHash {
        let mut h = blake3::Hasher::new_derive_key(CALLEE_CONTEXT);
        h.update(self.signature_hash.as_bytes());
        h.update(self.body_hash.as_bytes());
        h.update(&[if self.is_generic { FLAG_GENERIC } else { 0 }]);
        h.update(&(self.type_params.len() as u64).to_le_bytes());
        for param in &self.type_params {
            h.update(&(param.len() as u64).to_le_bytes());
            h.update(param.as_bytes());
        }
        SemanticHash::from(h.finalize())
    }
}

/// The metadata one compiled package exports.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackageMetadata {
    /// The package this describes.
    pub package_id: String,
    /// The compiler that produced it.
    pub compiler_version: String,
    /// Public functions by id.
    pub public_functions: BTreeMap<String, PublicFunction>,
    /// Public types by id, each with its definition hash.
    pub public_types: BTreeMap<String, SemanticHash>,
}

impl PackageMetadata {
    /// Metadata with no public functions or types yet.
    pub fn new(package_id: impl Into<String>, compiler_version: impl Into<String>) -> Self {
        PackageMetadata {
            package_id: package_id.into(),
            compiler_version: compiler_version.into(),
            public_functions: BTreeMap::new(),
            public_types: BTreeMap::new(),
        }
    }

    /// The [`ExternalCallee`] a downstream package hands to
    /// [`hash_call_graph`](crate::compiler::hash_call_graph) for a call to
    /// `function`; `None` when the function is not public here.
    pub fn external_callee(&self, function: &str) -> Option<ExternalCallee> {
        self.public_functions.get(function).map(|f| ExternalCallee {
            package: self.package_id.clone(),
            function: function.to_string(),
            hash: f.callee_hash(),
        })
    }

    /// The canonical encoding (see the module docs).
    ///
    /// # Errors
    /// [`Error::Encode`] when a string is longer, or a map or list has more
    /// entries, than a u32 can count.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(
            HEADER_LEN
                + CHECKSUM_LEN
                + self.public_functions.len() * (MIN_FUNCTION_LEN + 16)
                + self.public_types.len() * (MIN_TYPE_LEN + 16),
        );
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&[0, 0, 0]);
        put_str(&mut out, &self.package_id)?;
        put_str(&mut out, &self.compiler_version)?;
        put_count(&mut out, self.public_functions.len(), "public functions")?;
        for (id, f) in &self.public_functions {
            put_str(&mut out, id)?;
            out.extend_from_slice(f.signature_hash.as_bytes());
            out.extend_from_slice(f.body_hash.as_bytes());
            out.push(if f.is_generic { FLAG_GENERIC } else { 0 });
            put_count(&mut out, f.type_params.len(), "type parameters")?;
            for param in &f.type_params {
                put_str(&mut out, param)?;
            }
        }
        put_count(&mut out, self.public_types.len(), "public types")?;
        for (id, hash) in &self.public_types {
            put_str(&mut out, id)?;
            out.extend_from_slice(hash.as_bytes());
        }
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        Ok(out)
    }

    /// Decodes canonical bytes.
    ///
    /// # Errors
    /// [`Error::Malformed`] naming the first problem when `bytes` is not
    /// exactly the encoding of some metadata value.
    pub fn decode(bytes: &[u8]) -> Result<PackageMetadata> {
        if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
            return Err(malformed(format!(
                "{} bytes is shorter than the {}-byte minimum",
                bytes.len(),
                HEADER_LEN + CHECKSUM_LEN
            )));
        }
        if bytes[..OFF_VERSION] != MAGIC {
            return Err(malformed(format!(
                "bad magic {:02x?}, expected \"RSKM\"",
                &bytes[..OFF_VERSION]
            )));
        }
        if bytes[OFF_VERSION] != FORMAT_VERSION {
            return Err(malformed(format!(
                "format version {} is not the supported version {FORMAT_VERSION}",
                bytes[OFF_VERSION]
            )));
        }
        if bytes[OFF_RESERVED..HEADER_LEN] != [0, 0, 0] {
            return Err(malformed("reserved header bytes are not zero".into()));
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if blake3::hash(body).as_bytes()[..] != checksum[..] {
            return Err(malformed(
                "checksum does not match the contents (damaged, truncated or extended)".into(),
            ));
        }

        let mut r = Reader {
            bytes: body,
            pos: HEADER_LEN,
        };
        let package_id = r.str("package_id")?;
        let compiler_version = r.str("compiler_version")?;

        let count = r.count("public function", MIN_FUNCTION_LEN)?;
        let mut public_functions = BTreeMap::new();
        let mut previous: Option<String> = None;
        for _ in 0..count {
            let id = r.str("function id")?;
            check_order("function", previous.as_deref(), &id)?;
            let signature_hash = r.hash("signature hash")?;
            let body_hash = r.hash("body hash")?;
            let flags = r.byte("flags")?;
            if flags & !FLAG_GENERIC != 0 {
                return Err(malformed(format!(
                    "function {id:?} has unknown flag bits {flags:#04x}"
                )));
            }
            let params = r.count("type parameter", 4)?;
            let mut type_params = Vec::with_capacity(params);
            for _ in 0..params {
                type_params.push(r.str("type parameter")?);
            }
            public_functions.insert(
                id.clone(),
                PublicFunction {
                    signature_hash,
                    body_hash,
                    is_generic: flags & FLAG_GENERIC != 0,
                    type_params,
                },
            );
            previous = Some(id);
        }

        let count = r.count("public type", MIN_TYPE_LEN)?;
        let mut public_types = BTreeMap::new();
        let mut previous: Option<String> = None;
        for _ in 0..count {
            let id = r.str("type id")?;
            check_order("type", previous.as_deref(), &id)?;
            let hash = r.hash("definition hash")?;
            public_types.insert(id.clone(), hash);
            previous = Some(id);
        }

        if r.pos != body.len() {
            return Err(malformed(format!(
                "{} trailing bytes after the last type entry",
                body.len() - r.pos
            )));
        }
        Ok(PackageMetadata {
            package_id,
            compiler_version,
            public_functions,
            public_types,
        })
    }
}

fn malformed(reason: String) -> Error {
    Error::Malformed { what: WHAT, reason }
}

fn put_count(out: &mut Vec<u8>, count: usize, what: &str) -> Result<()> {
    let count = u32::try_from(count).map_err(|_| Error::Encode {
        what: WHAT,
        reason: format!("{count} {what} is more than a u32 length can hold"),
    })?;
    out.extend_from_slice(&count.to_le_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<()> {
    put_count(out, s.len(), "bytes in a string")?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn check_order(what: &str, previous: Option<&str>, id: &str) -> Result<()> {
    match previous {
        Some(prev) if prev == id => Err(malformed(format!("{what} id {id:?} appears twice"))),
        Some(prev) if prev > id => Err(malformed(format!(
            "{what} ids are not sorted: {id:?} follows {prev:?}"
        ))),
        _ => Ok(()),
    }
}

/// A cursor over bytes whose every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: usize, what: &str) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(malformed(format!(
                "{what} at offset {} needs {len} bytes but only {} remain",
                self.pos,
                self.bytes.len() - self.pos
            )));
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let mut le = [0u8; 4];
        le.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(le))
    }

    /// A u32 count of entries that are each at least `min_len` bytes long,
    /// refused if the remaining bytes cannot hold that many.
    fn count(&mut self, what: &str, min_len: usize) -> Result<usize> {
        let at = self.pos;
        let count = self.u32(what)? as usize;
        let remaining = self.bytes.len() - self.pos;
        if count.saturating_mul(min_len) > remaining {
            return Err(malformed(format!(
                "{what} count {count} at offset {at} cannot fit in the {remaining} bytes that remain"
            )));
        }
        Ok(count)
    }

    fn str(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let len = self.u32(what)? as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| malformed(format!("{what} at offset {at} is not valid UTF-8")))
    }

    fn hash(&mut self, what: &str) -> Result<SemanticHash> {
        let mut bytes = [0u8; SEMANTIC_HASH_LEN];
        bytes.copy_from_slice(self.take(SEMANTIC_HASH_LEN, what)?);
        Ok(SemanticHash::from_bytes(bytes))
    }
}

// ----- diff -------------------------------------------------------------------

/// How one public function differs between two metadata versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionChange {
    /// The function's id.
    pub id: String,
    /// The signature hash, genericity or type parameters changed.
    pub signature_changed: bool,
    /// The (Merkle) body hash changed.
    pub body_changed: bool,
    /// The old entry.
    pub old: PublicFunction,
    /// The new entry.
    pub new: PublicFunction,
}

/// What a downstream package must do after an upstream package's metadata
/// changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impact {
    /// The metadata is identical: every downstream cache entry is still
    /// valid; skip the downstream package.
    Unchanged,
    /// Only function bodies, type definitions or additions/removals changed:
    /// recompile only the users [`MetadataDiff::invalidated`] names.
    Partial,
    /// The compiler, the package id or a public signature changed: the
    /// downstream package must be type-checked again as a whole.
    Full,
}

/// Why a downstream user must be rebuilt.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum InvalidationReason {
    /// The upstream package was built by a different compiler.
    CompilerVersionChanged,
    /// The metadata describes a different package.
    PackageIdChanged,
    /// A used function's signature changed.
    FunctionSignatureChanged(String),
    /// A used function's body hash changed.
    FunctionBodyChanged(String),
    /// A used function is no longer public.
    FunctionRemoved(String),
    /// A used type's definition changed.
    TypeChanged(String),
    /// A used type is no longer public.
    TypeRemoved(String),
}

/// What one downstream user (a function, or a generic instance) takes from
/// the upstream package.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UpstreamUse {
    /// The user's name in the downstream package (a function id, or an
    /// instance such as `"sort<Point>"`).
    pub user: String,
    /// Upstream function ids it calls or instantiates.
    pub functions: Vec<String>,
    /// Upstream type ids it uses (in type arguments, fields, signatures).
    pub types: Vec<String>,
}

/// One downstream user that must be rebuilt, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalidation {
    /// The user, as given in [`UpstreamUse::user`].
    pub user: String,
    /// Every reason that applies, sorted.
    pub reasons: Vec<InvalidationReason>,
}

/// The difference between two versions of one package's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MetadataDiff {
    /// `(old, new)` when the package id differs.
    pub package_id_changed: Option<(String, String)>,
    /// `(old, new)` when the compiler version differs.
    pub compiler_version_changed: Option<(String, String)>,
    /// Functions only in the new version, sorted.
    pub added_functions: Vec<String>,
    /// Functions only in the old version, sorted.
    pub removed_functions: Vec<String>,
    /// Functions in both whose entries differ, sorted by id.
    pub changed_functions: Vec<FunctionChange>,
    /// Types only in the new version, sorted.
    pub added_types: Vec<String>,
    /// Types only in the old version, sorted.
    pub removed_types: Vec<String>,
    /// Types in both whose definition hash differs, sorted.
    pub changed_types: Vec<String>,
}

/// Compares two versions of a package's metadata.
pub fn diff(old: &PackageMetadata, new: &PackageMetadata) -> MetadataDiff {
    let changed = |a: &String, b: &String| (a != b).then(|| (a.clone(), b.clone()));
    let mut out = MetadataDiff {
        package_id_changed: changed(&old.package_id, &new.package_id),
        compiler_version_changed: changed(&old.compiler_version, &new.compiler_version),
        ..MetadataDiff::default()
    };
    for (id, old_fn) in &old.public_functions {
        match new.public_functions.get(id) {
            None => out.removed_functions.push(id.clone()),
            Some(new_fn) if new_fn != old_fn => {
                out.changed_functions.push(FunctionChange {
                    id: id.clone(),
                    signature_changed: old_fn.signature_hash != new_fn.signature_hash
                        || old_fn.is_generic != new_fn.is_generic
                        || old_fn.type_params != new_fn.type_params,
                    body_changed: old_fn.body_hash != new_fn.body_hash,
                    old: old_fn.clone(),
                    new: new_fn.clone(),
                });
            }
            Some(_) => {}
        }
    }
    out.added_functions = new
        .public_functions
        .keys()
        .filter(|id| !old.public_functions.contains_key(*id))
        .cloned()
        .collect();
    for (id, old_hash) in &old.public_types {
        match new.public_types.get(id) {
            None => out.removed_types.push(id.clone()),
            Some(new_hash) if new_hash != old_hash => out.changed_types.push(id.clone()),
            Some(_) => {}
        }
    }
    out.added_types = new
        .public_types
        .keys()
        .filter(|id| !old.public_types.contains_key(*id))
        .cloned()
        .collect();
    out
}

impl MetadataDiff {
    /// True when the two versions are equal (and so byte-identical).
    pub fn is_empty(&self) -> bool {
        *self == MetadataDiff::default()
    }

    /// What a downstream package must do; see [`Impact`].
    pub fn impact(&self) -> Impact {
        if self.is_empty() {
            Impact::Unchanged
        } else if self.package_id_changed.is_some()
            || self.compiler_version_changed.is_some()
            || self.changed_functions.iter().any(|c| c.signature_changed)
        {
            Impact::Full
        } else {
            Impact::Partial
        }
    }

    /// The downstream users this change invalidates, sorted by user, each
    /// with every reason that applies. Users not listed keep their cache
    /// entries. A compiler or package id change invalidates every user.
    pub fn invalidated(&self, uses: &[UpstreamUse]) -> Vec<Invalidation> {
        let changed_fn = |id: &str| {
            self.changed_functions
                .binary_search_by(|c| c.id.as_str().cmp(id))
                .ok()
                .map(|i| &self.changed_functions[i])
        };
        let contains =
            |list: &[String], id: &str| list.binary_search_by(|x| x.as_str().cmp(id)).is_ok();
        let mut out = Vec::new();
        for u in uses {
            let mut reasons = Vec::new();
            if self.compiler_version_changed.is_some() {
                reasons.push(InvalidationReason::CompilerVersionChanged);
            }
            if self.package_id_changed.is_some() {
                reasons.push(InvalidationReason::PackageIdChanged);
            }
            for f in &u.functions {
                if let Some(change) = changed_fn(f) {
                    if change.signature_changed {
                        reasons.push(InvalidationReason::FunctionSignatureChanged(f.clone()));
                    }
                    if change.body_changed {
                        reasons.push(InvalidationReason::FunctionBodyChanged(f.clone()));
                    }
                }
                if contains(&self.removed_functions, f) {
                    reasons.push(InvalidationReason::FunctionRemoved(f.clone()));
                }
            }
            for t in &u.types {
                if contains(&self.changed_types, t) {
                    reasons.push(InvalidationReason::TypeChanged(t.clone()));
                }
                if contains(&self.removed_types, t) {
                    reasons.push(InvalidationReason::TypeRemoved(t.clone()));
                }
            }
            if !reasons.is_empty() {
                reasons.sort();
                reasons.dedup();
                out.push(Invalidation {
                    user: u.user.clone(),
                    reasons,
                });
            }
        }
        out.sort_by(|a, b| a.user.cmp(&b.user));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(text: &str) -> SemanticHash {
        SemanticHash::from(blake3::hash(text.as_bytes()))
    }

    fn sample() -> PackageMetadata {
        let mut m = PackageMetadata::new("collections", "rask 0.9.0");
        m.public_functions.insert(
            "sort".into(),
            PublicFunction {
                signature_hash: h("sig sort"),
                body_hash: h("body sort"),
                is_generic: true,
                type_params: vec!["T".into()],
            },
        );
        m.public_functions.insert(
            "len".into(),
            PublicFunction {
                signature_hash: h("sig len"),
                body_hash: h("body len"),
                is_generic: false,
                type_params: vec![],
            },
        );
        m.public_types.insert("Point".into(), h("struct Point"));
        m
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = m.encode().unwrap();
        assert_eq!(PackageMetadata::decode(&bytes).unwrap(), m);
        let empty = PackageMetadata::new("", "");
        assert_eq!(
            PackageMetadata::decode(&empty.encode().unwrap()).unwrap(),
            empty
        );
    }

    #[test]
    fn every_truncation_and_bit_flip_is_refused() {
        let bytes = sample().encode().unwrap();
        for len in 0..bytes.len() {
            assert!(PackageMetadata::decode(&bytes[..len]).is_err(), "len {len}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(PackageMetadata::decode(&bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn callee_hash_covers_every_field_of_the_entry() {
        let m = sample();
        let base = m.public_functions["sort"].callee_hash();
        let callee = m.external_callee("sort").unwrap();
        assert_eq!(callee.package, "collections");
        assert_eq!(callee.hash, base);
        assert!(m.external_callee("private_helper").is_none());
        let edits: [fn(&mut PublicFunction); 4] = [
            |f| f.signature_hash = h("other sig"),
            |f| f.body_hash = h("other body"),
            |f| f.is_generic = false,
            |f| f.type_params = vec!["U".into()],
        ];
        for (i, edit) in edits.into_iter().enumerate() {
            let mut f = m.public_functions["sort"].clone();
            edit(&mut f);
            assert_ne!(f.callee_hash(), base, "edit {i}");
        }
    }

    #[test]
    fn huge_counts_are_refused_without_allocating() {
        let mut body = Vec::new();
        body.extend_from_slice(&MAGIC);
        body.push(FORMAT_VERSION);
        body.extend_from_slice(&[0, 0, 0]);
        put_str(&mut body, "p").unwrap();
        put_str(&mut body, "c").unwrap();
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        let sum = blake3::hash(&body);
        body.extend_from_slice(sum.as_bytes());
        let err = PackageMetadata::decode(&body).unwrap_err().to_string();
        assert!(err.contains("cannot fit"), "{err}");
    }
}
