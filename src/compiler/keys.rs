//! Compiler identity and the typed cache keys of every tier.
//!
//! This module owns no files. It owns two encodings, documented in
//! `docs/FORMAT.md` ("Compiler namespaces and tier keys"):
//!
//! - [`CompilerId::namespace`]: a compiler identity (name, version, every
//!   setting that changes output) becomes the [`Namespace`] all its keys and
//!   refs live in, so a compiler upgrade misses completely while two
//!   identities used alternately never evict each other.
//! - [`KeyBuilder`]: one constructor per tier, each a composite [`Key`] whose
//!   first component is the tier's name, so keys of different tiers never
//!   collide.
//!
//! # Invariants
//! - Two identities that differ in any byte of name, version or settings
//!   (as a sorted multiset) get different namespaces: the namespace ends
//!   with 16 hex digits of a BLAKE3 hash of the exact identity.
//! - The namespace is a pure function of the identity: the same identity
//!   gives the same namespace in every process and run.
//! - A [`CacheKey`] always has the component list of its [`Tier`];
//!   [`CacheKey::from_key`] refuses any other shape.

use std::fmt;

use crate::compiler::hasher::SemanticHash;
use crate::error::{Error, Result};
use crate::key::{Component, Key, KeyEncoder};
use crate::name::Namespace;

/// BLAKE3 context of the compiler identity hash.
pub const IDENTITY_CONTEXT: &str = "rask-store 2026-11-21 compiler identity v1";
/// BLAKE3 context of [`ContentHash::of`].
pub const CONTENT_CONTEXT: &str = "rask-store 2026-11-21 file content v1";
/// Longest sanitized compiler name kept in a namespace, in bytes.
pub const NAMESPACE_NAME_LEN: usize = 40;
/// Longest sanitized compiler version kept in a namespace, in bytes.
pub const NAMESPACE_VERSION_LEN: usize = 60;
/// Bytes of the identity hash shown (as hex) at the end of a namespace.
pub const NAMESPACE_HASH_BYTES: usize = 8;

/// What identifies a compiler's output: its name, its version, and every
/// setting that changes what it produces (target, language edition, feature
/// flags …; not the optimization level if the cached tiers do not depend on it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CompilerId {
    /// The compiler's name (`rask`).
    pub name: String,
    /// Its version, any text (`0.9.0-beta+build 7`).
    pub version: String,
    /// Settings that change output, as (name, value); order does not matter.
    pub settings: Vec<(String, String)>,
}

impl CompilerId {
    /// An identity with no settings.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> CompilerId {
        CompilerId {
            name: name.into(),
            version: version.into(),
            settings: Vec::new(),
        }
    }

    /// Adds a setting that changes output.
    pub fn with_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// The BLAKE3 hash of the exact identity:
    /// `derive_key(IDENTITY_CONTEXT, str(name) ‖ str(version) ‖ u64 S ‖ S ×
    /// (str(setting) ‖ str(value)))`, settings sorted by (name, value), where
    /// `str(s) = u64 len ‖ UTF-8 bytes`, integers little-endian.
    pub fn identity_hash(&self) -> [u8; 32] {
        let mut settings: Vec<&(String, String)> = self.settings.iter().collect();
        settings.sort();
        let mut h = blake3::Hasher::new_derive_key(IDENTITY_CONTEXT);
        let mut text = |s: &str| {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        text(&self.name);
        text(&self.version);
        h.update(&(settings.len() as u64).to_le_bytes());
        for (name, value) in settings {
            for s in [name, value] {
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        }
        *h.finalize().as_bytes()
    }

    /// The namespace of this identity:
    /// `<name>-<version>-<16 hex digits>`, where name and version are
    /// sanitized (every byte outside `A-Z a-z 0-9 . _ - + @ =` becomes `_`, a
    /// leading `.` becomes `_`, cut to 40 and 60 bytes) and the hex digits are
    /// the first 8 bytes of [`CompilerId::identity_hash`]. Sanitizing may
    /// make two identities look alike; the hash keeps them apart.
    ///
    /// # Errors
    /// None in practice: the result has only allowed characters, does not
    /// start with `.` and is at most 118 bytes long.
    pub fn namespace(&self) -> Result<Namespace> {
        let name = sanitize(&self.name, NAMESPACE_NAME_LEN);
        let version = sanitize(&self.version, NAMESPACE_VERSION_LEN);
        let hash = self.identity_hash();
        Namespace::new(format!(
            "{name}-{version}-{}",
            hex::encode(&hash[..NAMESPACE_HASH_BYTES])
        ))
    }
}

fn sanitize(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+@=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    out
}

/// A file's content hash, the parse-tier key: BLAKE3 of the file's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// `derive_key(CONTENT_CONTEXT, bytes)`.
    pub fn of(bytes: &[u8]) -> ContentHash {
        let mut h = blake3::Hasher::new_derive_key(CONTENT_CONTEXT);
        h.update(bytes);
        ContentHash(*h.finalize().as_bytes())
    }

    /// Wraps a hash the compiler computed itself.
    pub const fn from_bytes(bytes: [u8; 32]) -> ContentHash {
        ContentHash(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

/// The cache tiers, each with its own key shape and statistics counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// Parsed and resolved AST per file, keyed by file content.
    Parse,
    /// A non-generic function's checked AST.
    Function,
    /// A generic function's monomorphized, checked instance.
    Instance,
    /// A comptime evaluation result.
    Comptime,
    /// Package metadata and the quick path (statistics only; no keys).
    Meta,
}

impl Tier {
    /// The four keyed tiers.
    pub const KEYED: [Tier; 4] = [Tier::Parse, Tier::Function, Tier::Instance, Tier::Comptime];

    /// The tier's name: the first key component and the statistics tier.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Parse => "parse",
            Tier::Function => "function",
            Tier::Instance => "instance",
            Tier::Comptime => "comptime",
            Tier::Meta => "meta",
        }
    }

    /// The tier called `name`.
    pub fn from_name(name: &str) -> Option<Tier> {
        [
            Tier::Parse,
            Tier::Function,
            Tier::Instance,
            Tier::Comptime,
            Tier::Meta,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }

    /// The names of a key's components, in order (the first is `tier`).
    pub fn component_names(self) -> &'static [&'static str] {
        match self {
            Tier::Parse => &["tier", "file_content_hash"],
            Tier::Function => &["tier", "package_id", "function_id", "semantic_hash"],
            Tier::Instance => &[
                "tier",
                "source_package_id",
                "function_id",
                "type_arguments",
                "body_semantic_hash",
                "type_definition_hashes",
            ],
            Tier::Comptime => &[
                "tier",
                "function_id",
                "arguments_hash",
                "body_semantic_hash",
            ],
            Tier::Meta => &["tier"],
        }
    }

    /// Position of `function_id` in this tier's keys.
    fn function_position(self) -> Option<usize> {
        match self {
            Tier::Function | Tier::Instance => Some(2),
            Tier::Comptime => Some(1),
            Tier::Parse | Tier::Meta => None,
        }
    }

    /// The object kind this tier's parts are stored as.
    pub fn object_kind(self) -> crate::object::Kind {
        use crate::object::Kind;
        match self {
            Tier::Parse => Kind::Ast,
            Tier::Function | Tier::Instance => Kind::Instance,
            Tier::Comptime => Kind::Memo,
            Tier::Meta => Kind::Meta,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A composite key of one tier (see [`KeyBuilder`] for the component lists).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    tier: Tier,
    key: Key,
}

impl CacheKey {
    /// Reads a stored key back as a tier key.
    ///
    /// # Errors
    /// A reason when the components do not have the shape of any tier.
    pub fn from_key(key: Key) -> std::result::Result<CacheKey, String> {
        let components = key.components();
        let Some(Component::Str(first)) = components.first() else {
            return Err("the first component is not a tier name".into());
        };
        let tier = Tier::from_name(first)
            .filter(|t| *t != Tier::Meta)
            .ok_or_else(|| format!("unknown tier {first:?}"))?;
        let names = tier.component_names();
        if components.len() != names.len() {
            return Err(format!(
                "a {tier} key has {} components, not {}",
                names.len(),
                components.len()
            ));
        }
        let ok = components
            .iter()
            .zip(names)
            .skip(1)
            .all(|(c, name)| match *name {
                "package_id" | "source_package_id" | "function_id" => {
                    matches!(c, Component::Str(_))
                }
                "type_arguments" => {
                    matches!(c, Component::List(l) if l.iter().all(|x| matches!(x, Component::Str(_))))
                }
                "type_definition_hashes" => {
                    matches!(c, Component::List(l) if l.iter().all(|x| matches!(x, Component::Hash(_))))
                }
                _ => matches!(c, Component::Hash(_)),
            });
        if !ok {
            return Err(format!("a component of a {tier} key has the wrong type"));
        }
        Ok(CacheKey { tier, key })
    }

    /// The tier.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// The composite key the index stores.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The function id (function, instance and comptime tiers).
    pub fn function_id(&self) -> Option<&str> {
        match self.key.components().get(self.tier.function_position()?) {
            Some(Component::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The components with their names, in order.
    pub fn named_components(&self) -> impl Iterator<Item = (&'static str, &Component)> + '_ {
        self.tier
            .component_names()
            .iter()
            .copied()
            .zip(self.key.components())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key.fmt(f)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.key)
    }
}

/// Builds the keys of every tier in one namespace.
///
/// | tier | components |
/// |---|---|
/// | parse | `"parse"`, hash file_content_hash |
/// | function | `"function"`, str package_id, str function_id, hash semantic_hash |
/// | instance | `"instance"`, str source_package_id, str function_id, list of str type_arguments, hash body_semantic_hash, list of hash type_definition_hashes |
/// | comptime | `"comptime"`, str function_id, hash arguments_hash, hash body_semantic_hash |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyBuilder {
    namespace: Namespace,
}

impl KeyBuilder {
    /// Keys in `namespace` (usually [`CompilerId::namespace`]).
    pub fn new(namespace: Namespace) -> KeyBuilder {
        KeyBuilder { namespace }
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The key of `tier`: its name, then what `rest` writes, straight into
    /// the encoding (see [`Key::build`]).
    fn build(&self, tier: Tier, rest: impl FnOnce(&mut KeyEncoder<'_>)) -> Result<CacheKey> {
        let mut key = Key::build(&self.namespace);
        key.str(tier.name());
        rest(&mut key);
        Ok(CacheKey {
            tier,
            key: key.finish()?,
        })
    }

    /// The parse-tier key of a file: its content hash.
    ///
    /// # Errors
    /// None in practice (the key is short); [`Error::InvalidKey`] is the type.
    pub fn parse(&self, file: ContentHash) -> Result<CacheKey> {
        self.build(Tier::Parse, |k| {
            k.hash(file.as_bytes());
        })
    }

    /// The key of a non-generic function: `(package_id, function_id, semantic_hash)`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the key would exceed the key size limit.
    pub fn function(
        &self,
        package_id: &str,
        function_id: &str,
        semantic_hash: &SemanticHash,
    ) -> Result<CacheKey> {
        self.build(Tier::Function, |k| {
            k.str(package_id)
                .str(function_id)
                .hash(semantic_hash.as_bytes());
        })
    }

    /// The key of a generic instance: `(source_package_id, function_id,
    /// [type_arguments], body_semantic_hash, [type_definition_hashes])`.
    /// Type arguments are the compiler's canonical spelling of each type;
    /// the definition hashes are those of every type the instance depends on,
    /// in an order the compiler keeps stable.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the key would exceed the key size limit.
    pub fn instance<S: AsRef<str>>(
        &self,
        source_package_id: &str,
        function_id: &str,
        type_arguments: &[S],
        body_semantic_hash: &SemanticHash,
        type_definition_hashes: &[SemanticHash],
    ) -> Result<CacheKey> {
        self.build(Tier::Instance, |k| {
            k.str(source_package_id)
                .str(function_id)
                .list(|args| {
                    for t in type_arguments {
                        args.str(t.as_ref());
                    }
                })
                .hash(body_semantic_hash.as_bytes())
                .list(|defs| {
                    for h in type_definition_hashes {
                        defs.hash(h.as_bytes());
                    }
                });
        })
    }

    /// The key of a comptime result: `(function_id, arguments_hash, body_semantic_hash)`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the key would exceed the key size limit.
    pub fn comptime(
        &self,
        function_id: &str,
        arguments_hash: &SemanticHash,
        body_semantic_hash: &SemanticHash,
    ) -> Result<CacheKey> {
        self.build(Tier::Comptime, |k| {
            k.str(function_id)
                .hash(arguments_hash.as_bytes())
                .hash(body_semantic_hash.as_bytes());
        })
    }
}

/// Refuses a key built for another namespace.
pub(crate) fn check_namespace(key: &CacheKey, namespace: &Namespace) -> Result<()> {
    if key.key().namespace() == namespace {
        Ok(())
    } else {
        Err(Error::InvalidRequest {
            reason: format!(
                "key {key} belongs to namespace {}, not this session's {namespace}",
                key.key().namespace()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::MAX_NAME_LEN;

    #[test]
    fn sanitizing_keeps_allowed_characters_and_replaces_the_rest() {
        assert_eq!(sanitize("0.9.0-beta+b7", 60), "0.9.0-beta+b7");
        assert_eq!(sanitize("1.0 (nightly)/x", 60), "1.0__nightly__x");
        assert_eq!(sanitize(".hidden", 60), "_hidden");
        assert_eq!(sanitize("", 60), "_");
        assert_eq!(sanitize("é", 60), "_");
        assert_eq!(sanitize(&"v".repeat(100), 60).len(), 60);
    }

    #[test]
    fn every_identity_gives_a_valid_namespace() {
        let long = "ü/".repeat(200);
        for id in [
            CompilerId::new("", ""),
            CompilerId::new(".", ".."),
            CompilerId::new(&long, &long).with_setting(&long, &long),
            CompilerId::new("rask", "0.9.0 (abc 2026-11-01)"),
        ] {
            let ns = id.namespace().unwrap();
            assert!(ns.as_str().len() <= MAX_NAME_LEN, "{ns}");
        }
    }
}
