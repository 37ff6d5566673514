//! The structural semantic hasher a compiler drives while walking its own
//! desugared AST.
//!
//! # Encoding (version 1)
//!
//! A [`SemanticHash`] is `BLAKE3-derive_key(HASH_CONTEXT, items ‖ trailer)`.
//! Each call on [`SemanticHasher`] appends exactly one *item*: one tag byte
//! naming what the item is, followed by a payload whose length is fixed by
//! the tag or stated by a `u64` little-endian length prefix. Every item is
//! therefore self-delimiting, so two different call sequences always produce
//! two different byte strings (no collision by concatenation). The full
//! table is in `docs/FORMAT.md`, section "Semantic hash encoding".
//!
//! Nothing else is ever fed: comments, whitespace, spans and compiler node
//! ids have no method here. Local names are never fed either; a binding is
//! encoded as its index in its scope and a use as `(scope distance, index)`.
//!
//! # Invariants
//!
//! - Renaming locals consistently never changes the hash; referring to a
//!   different binding, or shadowing differently, always does.
//! - Nodes, patterns and scopes must nest properly; the first violation (or
//!   use of an unbound local) is remembered and reported by
//!   [`SemanticHasher::finish`] as [`Error::HasherMisuse`]. No call panics.
//! - The context string differs from [`crate::object::ID_CONTEXT`], so a
//!   semantic hash can never equal an object id computed over the same bytes.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};

/// BLAKE3 key-derivation context for semantic hashes of function bodies.
pub const HASH_CONTEXT: &str = "rask-store 2026-11-21 semantic hash v1";

/// Number of bytes in a [`SemanticHash`].
pub const SEMANTIC_HASH_LEN: usize = 32;

/// Item tags: the first byte of every item in the hashed stream.
pub(crate) mod tag {
    pub const BEGIN_NODE: u8 = 0x01;
    pub const END_NODE: u8 = 0x02;
    pub const BEGIN_PATTERN: u8 = 0x03;
    pub const END_PATTERN: u8 = 0x04;
    pub const ENTER_SCOPE: u8 = 0x05;
    pub const LEAVE_SCOPE: u8 = 0x06;
    pub const BIND_LOCAL: u8 = 0x10;
    pub const USE_LOCAL: u8 = 0x11;
    pub const INT: u8 = 0x20;
    pub const UINT: u8 = 0x21;
    pub const FLOAT: u8 = 0x22;
    pub const STRING: u8 = 0x23;
    pub const BOOL: u8 = 0x24;
    pub const BYTES: u8 = 0x25;
    pub const CHAR: u8 = 0x26;
    pub const CALLEE: u8 = 0x30;
    pub const CALLEE_HASH: u8 = 0x31;
    pub const GLOBAL: u8 = 0x32;
    pub const TYPE_ANNOTATION: u8 = 0x40;
    pub const PARAM_MODE: u8 = 0x41;
    pub const FIELD: u8 = 0x42;
    pub const ATTRIBUTE: u8 = 0x43;
    pub const SYMBOL: u8 = 0x44;
    pub const EMBEDDED_HASH: u8 = 0x45;
    pub const END_OF_STREAM: u8 = 0xFF;

    /// Second byte of a compiler-chosen tag: numeric form.
    pub const FORM_CODE: u8 = 0x00;
    /// Second byte of a compiler-chosen tag: textual form.
    pub const FORM_NAME: u8 = 0x01;
}

/// A 256-bit semantic hash. Prints as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SemanticHash([u8; SEMANTIC_HASH_LEN]);

impl SemanticHash {
    /// Wraps raw digest bytes (for decoders of stored hashes).
    pub const fn from_bytes(bytes: [u8; SEMANTIC_HASH_LEN]) -> SemanticHash {
        SemanticHash(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; SEMANTIC_HASH_LEN] {
        &self.0
    }

    /// The hash as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 hex digits (either case).
    ///
    /// # Errors
    /// [`Error::InvalidId`] when `input` is not 64 hex digits.
    pub fn from_hex(input: &str) -> Result<SemanticHash> {
        let mut bytes = [0u8; SEMANTIC_HASH_LEN];
        if input.len() != 2 * SEMANTIC_HASH_LEN {
            return Err(Error::InvalidId {
                input: input.to_string(),
                reason: format!(
                    "a semantic hash has {} hex digits, got {} characters",
                    2 * SEMANTIC_HASH_LEN,
                    input.len()
                ),
            });
        }
        hex::decode_to_slice(input, &mut bytes).map_err(|_| Error::InvalidId {
            input: input.to_string(),
            reason: "contains a character that is not a hex digit".into(),
        })?;
        Ok(SemanticHash(bytes))
    }
}

impl From<blake3::Hash> for SemanticHash {
    fn from(hash: blake3::Hash) -> SemanticHash {
        SemanticHash(*hash.as_bytes())
    }
}

impl fmt::Display for SemanticHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SemanticHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SemanticHash({self})")
    }
}

impl FromStr for SemanticHash {
    type Err = Error;

    fn from_str(input: &str) -> Result<SemanticHash> {
        SemanticHash::from_hex(input)
    }
}

impl Serialize for SemanticHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SemanticHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct HashVisitor;

        impl<'de> Visitor<'de> for HashVisitor {
            type Value = SemanticHash;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{SEMANTIC_HASH_LEN} bytes")
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<SemanticHash, E> {
                let bytes: [u8; SEMANTIC_HASH_LEN] = v
                    .try_into()
                    .map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(SemanticHash(bytes))
            }

            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<SemanticHash, A::Error> {
                let mut bytes = [0u8; SEMANTIC_HASH_LEN];
                for (i, slot) in bytes.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<u8>()?.is_some() {
                    return Err(de::Error::invalid_length(SEMANTIC_HASH_LEN + 1, &self));
                }
                Ok(SemanticHash(bytes))
            }
        }

        deserializer.deserialize_bytes(HashVisitor)
    }
}

/// A compiler-chosen tag: the compiler's own discriminant number or name for
/// a node kind, pattern kind or parameter mode.
///
/// Numeric and textual tags never collide with each other (`Tag::Code(1)`
/// differs from `Tag::Name("1")`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tag<'a> {
    /// A numeric discriminant, e.g. `MyAstNode::Call as u32`.
    Code(u32),
    /// A textual name, e.g. `"call"`.
    Name(&'a str),
}

impl From<u32> for Tag<'static> {
    fn from(code: u32) -> Tag<'static> {
        Tag::Code(code)
    }
}

impl<'a> From<&'a str> for Tag<'a> {
    fn from(name: &'a str) -> Tag<'a> {
        Tag::Name(name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameKind {
    Node,
    Pattern,
    Scope,
}

impl FrameKind {
    fn describe(self) -> &'static str {
        match self {
            FrameKind::Node => "node",
            FrameKind::Pattern => "pattern",
            FrameKind::Scope => "scope",
        }
    }
}

#[derive(Debug)]
struct Frame {
    kind: FrameKind,
    /// Item number of the call that opened the frame (1-based).
    opened_at: u64,
    /// Frames opened directly inside this one.
    children: u64,
}

#[derive(Debug, Default)]
struct Scope {
    /// Each name's most recent binding in this scope.
    names: HashMap<String, u64>,
    /// Bindings introduced so far; the next binding gets this index.
    count: u64,
}

/// Flush the staging buffer into BLAKE3 once it holds this many bytes.
const FLUSH_AT: usize = 16 * 1024;

/// Builds a [`SemanticHash`] from the items a compiler feeds while walking
/// one function's desugared AST.
///
/// The compiler calls `begin_node` / `end_node` around every node it
/// considers semantically meaningful, feeds the node's literals, callee
/// identities, type annotations, parameter modes, field names and
/// attributes in between, and reports local bindings by name; the hasher
/// replaces names by positions. There is an implicit outermost scope, so
/// function parameters may be bound without calling `enter_scope` first.
///
/// ```
/// use rask_store::compiler::SemanticHasher;
///
/// # fn main() -> Result<(), rask_store::Error> {
/// fn hash_identity(param: &str) -> Result<rask_store::compiler::SemanticHash, rask_store::Error> {
///     let mut h = SemanticHasher::new();
///     h.begin_node("func");
///     h.bind_local(param);
///     h.type_annotation("i32");
///     h.begin_node("return");
///     h.use_local(param);
///     h.end_node();
///     h.end_node();
///     h.finish()
/// }
/// assert_eq!(hash_identity("x")?, hash_identity("value")?);
/// # Ok(()) }
/// ```
pub struct SemanticHasher {
    blake: blake3::Hasher,
    buf: Vec<u8>,
    frames: Vec<Frame>,
    /// `scopes[0]` is the implicit outermost scope; every other entry
    /// belongs to a `Scope` frame.
    scopes: Vec<Scope>,
    /// Frames opened at the top level.
    top_level: u64,
    items: u64,
    error: Option<String>,
}

impl Default for SemanticHasher {
    fn default() -> SemanticHasher {
        SemanticHasher::new()
    }
}

impl fmt::Debug for SemanticHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemanticHasher")
            .field("items", &self.items)
            .field("open_frames", &self.frames.len())
            .field("scope_depth", &(self.scopes.len() - 1))
            .field("error", &self.error)
            .finish()
    }
}

impl SemanticHasher {
    /// A hasher with nothing fed yet.
    pub fn new() -> SemanticHasher {
        SemanticHasher {
            blake: blake3::Hasher::new_derive_key(HASH_CONTEXT),
            buf: Vec::with_capacity(1024),
            frames: Vec::new(),
            scopes: vec![Scope::default()],
            top_level: 0,
            items: 0,
            error: None,
        }
    }

    // ----- structure -------------------------------------------------------

    /// Opens an AST node of the given compiler-chosen kind.
    pub fn begin_node<'a>(&mut self, kind: impl Into<Tag<'a>>) {
        self.open(FrameKind::Node, tag::BEGIN_NODE, kind.into());
    }

    /// Closes the innermost open node. Encodes how many nodes, patterns and
    /// scopes were opened directly inside it.
    pub fn end_node(&mut self) {
        self.close(FrameKind::Node, tag::END_NODE);
    }

    /// Opens a pattern (`Some(..)`, `Point { .. }`, a wildcard, …) of the
    /// given compiler-chosen kind. Bindings a pattern introduces are fed with
    /// [`bind_local`](Self::bind_local) inside it.
    pub fn begin_pattern<'a>(&mut self, kind: impl Into<Tag<'a>>) {
        self.open(FrameKind::Pattern, tag::BEGIN_PATTERN, kind.into());
    }

    /// Closes the innermost open pattern.
    pub fn end_pattern(&mut self) {
        self.close(FrameKind::Pattern, tag::END_PATTERN);
    }

    /// Opens a lexical scope: bindings made until the matching
    /// [`leave_scope`](Self::leave_scope) are numbered from 0 and are
    /// invisible afterwards.
    pub fn enter_scope(&mut self) {
        if !self.start_item() {
            return;
        }
        self.count_child();
        self.frames.push(Frame {
            kind: FrameKind::Scope,
            opened_at: self.items,
            children: 0,
        });
        self.scopes.push(Scope::default());
        self.buf.push(tag::ENTER_SCOPE);
        self.maybe_flush();
    }

    /// Closes the innermost open scope. Encodes how many bindings it made.
    pub fn leave_scope(&mut self) {
        if !self.start_item() {
            return;
        }
        if !self.pop_frame(FrameKind::Scope) {
            return;
        }
        let count = self.scopes.pop().map_or(0, |scope| scope.count);
        self.buf.push(tag::LEAVE_SCOPE);
        self.put_u64(count);
        self.maybe_flush();
    }

    // ----- locals ----------------------------------------------------------

    /// Introduces a local binding named `name` in the innermost scope. It
    /// shadows any earlier binding of the same name, in this scope or an
    /// enclosing one. Only its position is hashed, never the name.
    pub fn bind_local(&mut self, name: &str) {
        if !self.start_item() {
            return;
        }
        let Some(scope) = self.scopes.last_mut() else {
            return;
        };
        let index = scope.count;
        scope.count += 1;
        match scope.names.get_mut(name) {
            Some(slot) => *slot = index,
            None => {
                scope.names.insert(name.to_string(), index);
            }
        }
        self.buf.push(tag::BIND_LOCAL);
        self.put_u64(index);
        self.maybe_flush();
    }

    /// References the innermost visible binding named `name`. Encoded as
    /// (how many scopes out the binding is, its index in that scope).
    ///
    /// A name with no visible binding is an error reported by
    /// [`finish`](Self::finish); references to globals and functions go
    /// through [`global`](Self::global) and [`callee`](Self::callee).
    pub fn use_local(&mut self, name: &str) {
        if !self.start_item() {
            return;
        }
        let found = self
            .scopes
            .iter()
            .rev()
            .enumerate()
            .find_map(|(distance, scope)| {
                scope.names.get(name).map(|&index| (distance as u64, index))
            });
        let Some((distance, index)) = found else {
            self.fail(format!(
                "item {}: use of local `{name}`, which is not bound in any enclosing scope",
                self.items
            ));
            return;
        };
        self.buf.push(tag::USE_LOCAL);
        self.put_u64(distance);
        self.put_u64(index);
        self.maybe_flush();
    }

    // ----- literals --------------------------------------------------------

    /// A signed integer literal.
    pub fn literal_int(&mut self, value: i128) {
        self.fixed(tag::INT, &value.to_le_bytes());
    }

    /// An unsigned integer literal (use this for values above `i128::MAX`,
    /// or when the compiler keeps signed and unsigned literals apart).
    pub fn literal_uint(&mut self, value: u128) {
        self.fixed(tag::UINT, &value.to_le_bytes());
    }

    /// A floating-point literal, hashed by its exact bit pattern (so `0.0`
    /// and `-0.0` differ, and NaN payloads are kept). Feed `f32` literals
    /// widened with `f64::from`, which is exact.
    pub fn literal_float(&mut self, value: f64) {
        self.fixed(tag::FLOAT, &value.to_bits().to_le_bytes());
    }

    /// A string literal.
    pub fn literal_str(&mut self, value: &str) {
        self.sized(tag::STRING, &[value.as_bytes()]);
    }

    /// A boolean literal.
    pub fn literal_bool(&mut self, value: bool) {
        self.fixed(tag::BOOL, &[u8::from(value)]);
    }

    /// A byte-string literal.
    pub fn literal_bytes(&mut self, value: &[u8]) {
        self.sized(tag::BYTES, &[value]);
    }

    /// A character literal.
    pub fn literal_char(&mut self, value: char) {
        self.fixed(tag::CHAR, &u32::from(value).to_le_bytes());
    }

    // ----- names that mean something ----------------------------------------

    /// The resolved identity of a called function: its package and its name
    /// within the package (`"std.io"`, `"print"`).
    pub fn callee(&mut self, package: &str, function: &str) {
        self.sized(tag::CALLEE, &[package.as_bytes(), function.as_bytes()]);
    }

    /// A callee's own semantic hash, for a compiler that hashes callees
    /// before callers itself. (The [`crate::compiler::callgraph`] module
    /// folds callee hashes in for you instead.)
    pub fn callee_hash(&mut self, hash: &SemanticHash) {
        self.fixed(tag::CALLEE_HASH, hash.as_bytes());
    }

    /// A reference to a non-local item that is not called: a constant, a
    /// static, a function used as a value.
    pub fn global(&mut self, package: &str, name: &str) {
        self.sized(tag::GLOBAL, &[package.as_bytes(), name.as_bytes()]);
    }

    /// An explicit type annotation as written, in the compiler's canonical
    /// rendering (`"i32"`, `"Vec<i32>"`, `"-> string"`).
    pub fn type_annotation(&mut self, ty: &str) {
        self.sized(tag::TYPE_ANNOTATION, &[ty.as_bytes()]);
    }

    /// A parameter's passing mode (borrow, take, …), compiler-chosen.
    pub fn param_mode<'a>(&mut self, mode: impl Into<Tag<'a>>) {
        if !self.start_item() {
            return;
        }
        self.buf.push(tag::PARAM_MODE);
        self.put_tag(mode.into());
        self.maybe_flush();
    }

    /// A field name (`.health`, a struct-literal field, a field pattern).
    pub fn field(&mut self, name: &str) {
        self.sized(tag::FIELD, &[name.as_bytes()]);
    }

    /// An attribute's identity (`"inline"`, `"unsafe"`). Feed its arguments
    /// as literals right after it, inside a node if they are structured.
    pub fn attribute(&mut self, name: &str) {
        self.sized(tag::ATTRIBUTE, &[name.as_bytes()]);
    }

    /// Any other name that carries meaning before type checking: a method
    /// name in a desugared call (`add` in `a.add(b)`), an enum variant, a
    /// loop label.
    pub fn symbol(&mut self, name: &str) {
        self.sized(tag::SYMBOL, &[name.as_bytes()]);
    }

    /// Another hash that the body depends on: a comptime result's hash, a
    /// type definition hash, a nested closure's hash.
    pub fn embed_hash(&mut self, hash: &SemanticHash) {
        self.fixed(tag::EMBEDDED_HASH, hash.as_bytes());
    }

    // ----- result ----------------------------------------------------------

    /// Finishes the hash.
    ///
    /// # Errors
    /// [`Error::HasherMisuse`] when a node, pattern or scope is still open,
    /// one was closed that was not open, or a local was used unbound. The
    /// message names the first such item.
    pub fn finish(mut self) -> Result<SemanticHash> {
        if let Some(reason) = self.error.take() {
            return Err(Error::HasherMisuse { reason });
        }
        if let Some(frame) = self.frames.last() {
            return Err(Error::HasherMisuse {
                reason: format!(
                    "{} opened at item {} is still open at finish ({} frames open)",
                    frame.kind.describe(),
                    frame.opened_at,
                    self.frames.len()
                ),
            });
        }
        self.buf.push(tag::END_OF_STREAM);
        self.put_u64(self.top_level);
        self.put_u64(self.scopes.first().map_or(0, |scope| scope.count));
        self.blake.update(&self.buf);
        Ok(SemanticHash::from(self.blake.finalize()))
    }

    // ----- internals -------------------------------------------------------

    /// Counts the item; false when an earlier misuse poisoned the hasher.
    fn start_item(&mut self) -> bool {
        self.items += 1;
        self.error.is_none()
    }

    fn fail(&mut self, reason: String) {
        if self.error.is_none() {
            self.error = Some(reason);
        }
    }

    fn count_child(&mut self) {
        match self.frames.last_mut() {
            Some(parent) => parent.children += 1,
            None => self.top_level += 1,
        }
    }

    fn open(&mut self, kind: FrameKind, item_tag: u8, node_tag: Tag<'_>) {
        if !self.start_item() {
            return;
        }
        self.count_child();
        self.frames.push(Frame {
            kind,
            opened_at: self.items,
            children: 0,
        });
        self.buf.push(item_tag);
        self.put_tag(node_tag);
        self.maybe_flush();
    }

    fn close(&mut self, kind: FrameKind, item_tag: u8) {
        if !self.start_item() {
            return;
        }
        let children = self.frames.last().map_or(0, |frame| frame.children);
        if !self.pop_frame(kind) {
            return;
        }
        self.buf.push(item_tag);
        self.put_u64(children);
        self.maybe_flush();
    }

    /// Pops the innermost frame if it is of `kind`; records a misuse if not.
    fn pop_frame(&mut self, kind: FrameKind) -> bool {
        let action = match kind {
            FrameKind::Node => "end_node",
            FrameKind::Pattern => "end_pattern",
            FrameKind::Scope => "leave_scope",
        };
        match self.frames.last() {
            Some(frame) if frame.kind == kind => {
                self.frames.pop();
                true
            }
            Some(frame) => {
                let reason = format!(
                    "item {}: {action} while the innermost open frame is the {} opened at item {}",
                    self.items,
                    frame.kind.describe(),
                    frame.opened_at
                );
                self.fail(reason);
                false
            }
            None => {
                let reason = format!(
                    "item {}: {action} with no open {}",
                    self.items,
                    kind.describe()
                );
                self.fail(reason);
                false
            }
        }
    }

    fn fixed(&mut self, item_tag: u8, payload: &[u8]) {
        if !self.start_item() {
            return;
        }
        self.buf.push(item_tag);
        self.buf.extend_from_slice(payload);
        self.maybe_flush();
    }

    /// One item whose payload is one or more length-prefixed byte strings.
    fn sized(&mut self, item_tag: u8, parts: &[&[u8]]) {
        if !self.start_item() {
            return;
        }
        self.buf.push(item_tag);
        for part in parts {
            self.put_u64(part.len() as u64);
            self.buf.extend_from_slice(part);
        }
        self.maybe_flush();
    }

    fn put_tag(&mut self, node_tag: Tag<'_>) {
        match node_tag {
            Tag::Code(code) => {
                self.buf.push(tag::FORM_CODE);
                self.buf.extend_from_slice(&code.to_le_bytes());
            }
            Tag::Name(name) => {
                self.buf.push(tag::FORM_NAME);
                self.put_u64(name.len() as u64);
                self.buf.extend_from_slice(name.as_bytes());
            }
        }
    }

    fn put_u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    fn maybe_flush(&mut self) {
        if self.buf.len() >= FLUSH_AT {
            self.blake.update(&self.buf);
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(feed: impl FnOnce(&mut SemanticHasher)) -> SemanticHash {
        let mut h = SemanticHasher::new();
        feed(&mut h);
        h.finish().unwrap()
    }

    fn misuse(feed: impl FnOnce(&mut SemanticHasher)) -> String {
        let mut h = SemanticHasher::new();
        feed(&mut h);
        match h.finish() {
            Err(Error::HasherMisuse { reason }) => reason,
            other => panic!("expected HasherMisuse, got {other:?}"),
        }
    }

    #[test]
    fn empty_feed_has_a_stable_hash_in_its_own_domain() {
        let empty = hash(|_| {});
        let mut expected = blake3::Hasher::new_derive_key(HASH_CONTEXT);
        expected.update(&[tag::END_OF_STREAM]);
        expected.update(&0u64.to_le_bytes());
        expected.update(&0u64.to_le_bytes());
        assert_eq!(empty, SemanticHash::from(expected.finalize()));
        assert_ne!(HASH_CONTEXT, crate::object::ID_CONTEXT);
    }

    #[test]
    fn exact_bytes_of_a_small_feed() {
        let got = hash(|h| {
            h.begin_node(7u32);
            h.bind_local("x");
            h.use_local("x");
            h.end_node();
        });
        let mut bytes = vec![tag::BEGIN_NODE, tag::FORM_CODE, 7, 0, 0, 0];
        bytes.push(tag::BIND_LOCAL);
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.push(tag::USE_LOCAL);
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.push(tag::END_NODE);
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.push(tag::END_OF_STREAM);
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        let expected = blake3::Hasher::new_derive_key(HASH_CONTEXT)
            .update(&bytes)
            .finalize();
        assert_eq!(got, SemanticHash::from(expected));
    }

    #[test]
    fn length_prefixes_prevent_concatenation_collisions() {
        let a = hash(|h| {
            h.literal_str("ab");
            h.literal_str("c");
        });
        let b = hash(|h| {
            h.literal_str("a");
            h.literal_str("bc");
        });
        assert_ne!(a, b);
        let a = hash(|h| h.callee("std.io", "print"));
        let b = hash(|h| h.callee("std", "io.print"));
        assert_ne!(a, b);
        assert_ne!(hash(|h| h.field("x")), hash(|h| h.symbol("x")));
        assert_ne!(
            hash(|h| h.literal_str("x")),
            hash(|h| h.literal_bytes(b"x"))
        );
        let code = hash(|h| {
            h.begin_node(1u32);
            h.end_node();
        });
        let name = hash(|h| {
            h.begin_node("1");
            h.end_node();
        });
        assert_ne!(code, name);
    }

    #[test]
    fn nesting_is_part_of_the_hash() {
        // A(B, C) versus A(B(C)).
        let flat = hash(|h| {
            h.begin_node("a");
            h.begin_node("b");
            h.end_node();
            h.begin_node("c");
            h.end_node();
            h.end_node();
        });
        let nested = hash(|h| {
            h.begin_node("a");
            h.begin_node("b");
            h.begin_node("c");
            h.end_node();
            h.end_node();
            h.end_node();
        });
        assert_ne!(flat, nested);
    }

    #[test]
    fn misuse_is_an_error_naming_the_item() {
        let reason = misuse(|h| h.begin_node("a"));
        assert!(
            reason.contains("node opened at item 1 is still open"),
            "{reason}"
        );
        let reason = misuse(|h| h.end_node());
        assert!(
            reason.contains("item 1: end_node with no open node"),
            "{reason}"
        );
        let reason = misuse(|h| h.leave_scope());
        assert!(
            reason.contains("leave_scope with no open scope"),
            "{reason}"
        );
        let reason = misuse(|h| {
            h.begin_node("a");
            h.enter_scope();
            h.end_node();
        });
        assert!(
            reason.contains(
                "item 3: end_node while the innermost open frame is the scope opened at item 2"
            ),
            "{reason}"
        );
        let reason = misuse(|h| {
            h.begin_pattern("some");
            h.end_node();
        });
        assert!(reason.contains("pattern opened at item 1"), "{reason}");
        let reason = misuse(|h| {
            h.enter_scope();
            h.bind_local("x");
            h.leave_scope();
            h.use_local("x");
        });
        assert!(
            reason.contains("item 4: use of local `x`, which is not bound"),
            "{reason}"
        );
    }

    #[test]
    fn semantic_hash_hex_and_serde_round_trip() {
        let h = hash(|h| h.literal_int(42));
        assert_eq!(h.to_string().len(), 64);
        assert_eq!(h.to_string().parse::<SemanticHash>().unwrap(), h);
        assert!(SemanticHash::from_hex("abc").is_err());
        assert!(SemanticHash::from_hex(&"z".repeat(64)).is_err());
        let mut cbor = Vec::new();
        ciborium::into_writer(&h, &mut cbor).unwrap();
        assert_eq!(cbor.len(), 2 + 32, "a hash is stored as a 32-byte string");
        let back: SemanticHash = ciborium::from_reader(&cbor[..]).unwrap();
        assert_eq!(back, h);
        let short: Result<SemanticHash, _> = ciborium::from_reader(&[0x41, 0x00][..]);
        assert!(short.is_err());
    }
}
