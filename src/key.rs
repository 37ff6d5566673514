//! Composite keys: a namespace plus an ordered list of typed components,
//! their one canonical byte encoding, and the key hash the index stores.
//!
//! # Encoding (key encoding version 1)
//!
//! ```text
//! size   field
//! 1      key encoding version (1)
//! 1      namespace length n (1..=128)
//! n      namespace bytes (ASCII, see crate::name)
//! 4      component count c, u32 little-endian
//! …      c components, each a tag byte followed by its body:
//!          0x01 string   u32 LE byte length, then UTF-8 bytes
//!          0x02 hash     32 raw bytes
//!          0x03 u64      8 bytes, little-endian
//!          0x04 list     u32 LE item count, then that many components
//!          0x05 bytes    u32 LE byte length, then raw bytes
//! ```
//!
//! The encoding is a pure function of the key, so equal keys encode to
//! identical bytes in every process and on every machine. Because every
//! component carries its tag and every variable-length body its length,
//! different keys never share an encoding: component order, component type
//! and list nesting all change the bytes.
//!
//! The key hash is `BLAKE3-derive_key(KEY_CONTEXT, encoding)`; its context
//! string differs from [`crate::object::ID_CONTEXT`], so a key hash can never
//! equal an object id computed from the same bytes.
//!
//! # Invariants
//! - An encoded key is at most [`MAX_KEY_LEN`] bytes and nests lists at most
//!   [`MAX_DEPTH`] deep; [`Key::new`] and [`KeyEncoder::finish`] refuse
//!   anything larger, so decoding bytes from disk is bounded.
//! - A [`Key`] always holds its encoding and hash, computed once.
//!
//! # Building keys
//!
//! [`Key::new`] takes a tree of [`Component`]s. On hot paths,
//! [`Key::build`] writes the components straight into the encoding (a
//! [`KeyEncoder`]): one allocation, no component tree, the same bytes and
//! hash. A key keeps its namespace, encoding and hash; its components are
//! decoded from the encoding only when [`Key::components`] is asked.

use std::cell::Cell;
use std::fmt;
use std::sync::{LazyLock, OnceLock};

use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::name::Namespace;

/// The key encoding version written first in every encoded key.
pub const KEY_ENCODING_VERSION: u8 = 1;
/// BLAKE3 key-derivation context for key hashes.
pub const KEY_CONTEXT: &str = "rask-store 2026-11-21 index key v1";
/// Longest encoded key, in bytes.
pub const MAX_KEY_LEN: usize = 64 << 10;
/// Deepest list nesting a key may have (a top-level list is depth 1).
pub const MAX_DEPTH: usize = 16;
/// Number of bytes in a key hash.
pub const KEY_HASH_LEN: usize = 32;

const TAG_STR: u8 = 0x01;
const TAG_HASH: u8 = 0x02;
const TAG_U64: u8 = 0x03;
const TAG_LIST: u8 = 0x04;
const TAG_BYTES: u8 = 0x05;

static KEY_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key(KEY_CONTEXT));

/// One typed component of a composite key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Component {
    /// A UTF-8 string: a package or function name, a type argument.
    Str(String),
    /// A 32-byte hash: a body hash, a type definition hash, an object id.
    Hash([u8; 32]),
    /// An unsigned integer.
    U64(u64),
    /// A nested, ordered list of components (type arguments, type definition hashes).
    List(Vec<Component>),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl Component {
    /// A string component.
    pub fn str(s: impl Into<String>) -> Component {
        Component::Str(s.into())
    }
}

impl From<ObjectId> for Component {
    fn from(id: ObjectId) -> Component {
        Component::Hash(*id.as_bytes())
    }
}

impl From<u64> for Component {
    fn from(n: u64) -> Component {
        Component::U64(n)
    }
}

impl From<&str> for Component {
    fn from(s: &str) -> Component {
        Component::Str(s.to_string())
    }
}

impl From<String> for Component {
    fn from(s: String) -> Component {
        Component::Str(s)
    }
}

impl fmt::Display for Component {
    /// The command-line spelling (see [`Component::parse_arg`]); lists are
    /// written `[ a b ]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Str(s) => {
                if needs_escape(s) {
                    write!(f, "s:{s}")
                } else {
                    f.write_str(s)
                }
            }
            Component::Hash(h) => write!(f, "b3:{}", hex::encode(h)),
            Component::U64(n) => write!(f, "u:{n}"),
            Component::Bytes(b) => write!(f, "x:{}", hex::encode(b)),
            Component::List(items) => {
                f.write_str("[")?;
                for item in items {
                    write!(f, " {item}")?;
                }
                f.write_str(" ]")
            }
        }
    }
}

fn needs_escape(s: &str) -> bool {
    ["b3:", "u:", "x:", "s:"].iter().any(|p| s.starts_with(p)) || s == "[" || s == "]"
}

impl Component {
    /// Parses command-line arguments into components.
    ///
    /// Spelling: `b3:<64 hex>` is a hash, `u:<decimal>` an unsigned
    /// integer, `x:<hex>` raw bytes, `s:<text>` the literal string `<text>`
    /// (the escape for strings that start with one of these prefixes or are
    /// `[` or `]`), a lone `[` opens a list and a lone `]` closes it;
    /// anything else is a string as written.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] naming the argument and what is wrong with it.
    pub fn parse_args<S: AsRef<str>>(args: &[S]) -> Result<Vec<Component>> {
        let mut stack: Vec<Vec<Component>> = vec![Vec::new()];
        for arg in args {
            let arg = arg.as_ref();
            match arg {
                "[" => {
                    if stack.len() > MAX_DEPTH {
                        return Err(invalid_key(
                            arg,
                            format!("lists nest deeper than {MAX_DEPTH}"),
                        ));
                    }
                    stack.push(Vec::new());
                }
                "]" => {
                    if stack.len() < 2 {
                        return Err(invalid_key(arg, "`]` without a matching `[`"));
                    }
                    let items = stack.pop().unwrap_or_default();
                    if let Some(top) = stack.last_mut() {
                        top.push(Component::List(items));
                    }
                }
                _ => {
                    let component = Component::parse_arg(arg)?;
                    if let Some(top) = stack.last_mut() {
                        top.push(component);
                    }
                }
            }
        }
        if stack.len() != 1 {
            return Err(invalid_key("[", "a `[` is never closed with `]`"));
        }
        Ok(stack.pop().unwrap_or_default())
    }

    /// Parses one non-list command-line argument (see [`Component::parse_args`]).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for a malformed `b3:`, `u:` or `x:` argument.
    pub fn parse_arg(arg: &str) -> Result<Component> {
        if let Some(hex_digits) = arg.strip_prefix("b3:") {
            let mut bytes = [0u8; 32];
            if hex_digits.len() != 64 {
                return Err(invalid_key(
                    arg,
                    format!(
                        "a b3: hash needs 64 hex digits, got {}; write s:{arg} for a string",
                        hex_digits.len()
                    ),
                ));
            }
            hex::decode_to_slice(hex_digits, &mut bytes).map_err(|_| {
                invalid_key(
                    arg,
                    format!("not a hex digit in the hash; write s:{arg} for a string"),
                )
            })?;
            return Ok(Component::Hash(bytes));
        }
        if let Some(digits) = arg.strip_prefix("u:") {
            let ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            return match digits.parse::<u64>() {
                Ok(n) if ok => Ok(Component::U64(n)),
                _ => Err(invalid_key(
                    arg,
                    format!(
                        "u: needs a decimal integer from 0 to {}; write s:{arg} for a string",
                        u64::MAX
                    ),
                )),
            };
        }
        if let Some(hex_digits) = arg.strip_prefix("x:") {
            return hex::decode(hex_digits).map(Component::Bytes).map_err(|_| {
                invalid_key(
                    arg,
                    format!("x: needs an even number of hex digits; write s:{arg} for a string"),
                )
            });
        }
        if let Some(text) = arg.strip_prefix("s:") {
            return Ok(Component::Str(text.to_string()));
        }
        Ok(Component::Str(arg.to_string()))
    }
}

fn invalid_key(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidKey {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// The 256-bit hash of a key's canonical encoding: what the index sorts and
/// searches by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash([u8; KEY_HASH_LEN]);

impl KeyHash {
    /// Wraps raw hash bytes (as read from an index file).
    pub const fn from_bytes(bytes: [u8; KEY_HASH_LEN]) -> KeyHash {
        KeyHash(bytes)
    }

    /// The raw hash bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_HASH_LEN] {
        &self.0
    }

    /// Hashes an encoded key.
    pub fn of_encoding(encoding: &[u8]) -> KeyHash {
        let mut hasher = KEY_HASHER.clone();
        hasher.update(encoding);
        KeyHash(*hasher.finalize().as_bytes())
    }

    /// The hash as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({self})")
    }
}

/// A composite key: a namespace and ordered typed components, with its
/// canonical encoding and hash.
///
/// Two keys are equal when their encodings are (the encoding is canonical,
/// so that is when namespace and components are).
#[derive(Clone)]
pub struct Key {
    namespace: Namespace,
    encoding: Vec<u8>,
    hash: KeyHash,
    /// The component tree, kept from [`Key::new`] or decoded from the
    /// encoding on the first [`Key::components`] call: a key built with a
    /// [`KeyEncoder`] never builds it unless asked.
    components: OnceLock<Vec<Component>>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash && self.encoding == other.encoding
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.hash.hash(state);
    }
}

impl Key {
    /// Builds a key and computes its encoding and hash.
    ///
    /// [`Key::build`] makes the same key (the same encoding and hash)
    /// without first building the component tree, which is faster.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the encoding would exceed [`MAX_KEY_LEN`]
    /// bytes or lists nest deeper than [`MAX_DEPTH`].
    pub fn new(namespace: Namespace, components: Vec<Component>) -> Result<Key> {
        let (encoding, hash) = {
            let mut encoder = KeyEncoder::new(&namespace);
            for c in &components {
                encoder.component(c);
            }
            encoder.encode()?
        };
        Ok(Key {
            namespace,
            encoding,
            hash,
            components: OnceLock::from(components),
        })
    }

    /// Starts a key in `namespace` whose components are written straight
    /// into its canonical encoding, without building [`Component`]s:
    ///
    /// ```
    /// # use rask_store::{Component, Key, Namespace};
    /// let ns = Namespace::new("rask-0.4").unwrap();
    /// let mut k = Key::build(&ns);
    /// k.str("std").list(|args| {
    ///     args.str("i32");
    /// }).hash(&[7; 32]);
    /// let key = k.finish().unwrap();
    /// let same = Key::new(ns, vec![
    ///     Component::str("std"),
    ///     Component::List(vec![Component::str("i32")]),
    ///     Component::Hash([7; 32]),
    /// ]).unwrap();
    /// assert_eq!(key.encoding(), same.encoding());
    /// assert_eq!(key.hash(), same.hash());
    /// ```
    pub fn build(namespace: &Namespace) -> KeyEncoder<'_> {
        KeyEncoder::new(namespace)
    }

    /// Decodes a canonical encoding (as stored in an index record).
    ///
    /// # Errors
    /// A description of what is wrong, for the caller to wrap in
    /// [`Error::Corrupt`] with the file it came from.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Key, String> {
        let (namespace, components) = decode_parts(bytes)?;
        Ok(Key {
            namespace,
            encoding: bytes.to_vec(),
            hash: KeyHash::of_encoding(bytes),
            components: OnceLock::from(components),
        })
    }

    /// The namespace (compiler identity) the key lives in.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The components, in order (decoded from the encoding on the first
    /// call for a key made with [`Key::build`]).
    pub fn components(&self) -> &[Component] {
        self.components
            .get_or_init(|| decode_components(&self.encoding))
    }

    /// The canonical encoding.
    pub fn encoding(&self) -> &[u8] {
        &self.encoding
    }

    /// The hash of the canonical encoding.
    pub fn hash(&self) -> KeyHash {
        self.hash
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl fmt::Display for Key {
    /// `namespace: component component …`, components in command-line spelling.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.namespace)?;
        for c in self.components() {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

thread_local! {
    /// The buffer encoders write into, kept per thread between keys: a
    /// key's own encoding is then one exact-size allocation, copied out of
    /// it, and the buffer never grows again once it fits the keys built.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A scratch buffer larger than this is freed rather than kept (it only
/// grew for a key [`KeyEncoder::finish`] refuses).
const SCRATCH_KEEP: usize = MAX_KEY_LEN;

fn too_deep(namespace: &Namespace) -> Error {
    invalid_key(
        namespace.as_str(),
        format!("lists nest deeper than {MAX_DEPTH}"),
    )
}

/// Writes a key's components straight into its canonical encoding; made by
/// [`Key::build`], turned into a [`Key`] by [`KeyEncoder::finish`].
///
/// Each method appends one component at the current level (the key's top
/// level, or the list [`KeyEncoder::list`] is filling). The limits are
/// those of [`Key::new`], checked by `finish`, which refuses what
/// [`Key::new`] refuses with the same error.
#[derive(Debug)]
pub struct KeyEncoder<'n> {
    namespace: &'n Namespace,
    out: Vec<u8>,
    /// Components written so far at the current level.
    count: u32,
    /// Lists open around the current level.
    depth: usize,
    /// A list was opened deeper than [`MAX_DEPTH`].
    too_deep: bool,
}

impl<'n> KeyEncoder<'n> {
    pub(crate) fn new(namespace: &'n Namespace) -> KeyEncoder<'n> {
        let ns = namespace.as_str().as_bytes();
        let mut out = SCRATCH.take();
        out.clear();
        out.push(KEY_ENCODING_VERSION);
        out.push(ns.len() as u8);
        out.extend_from_slice(ns);
        out.extend_from_slice(&0u32.to_le_bytes());
        KeyEncoder {
            namespace,
            out,
            count: 0,
            depth: 0,
            too_deep: false,
        }
    }

    /// Appends a string component.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.tagged(TAG_STR, s.as_bytes())
    }

    /// Appends a raw-bytes component.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.tagged(TAG_BYTES, b)
    }

    /// Appends a 32-byte hash component.
    pub fn hash(&mut self, h: &[u8; 32]) -> &mut Self {
        self.count = self.count.wrapping_add(1);
        self.out.push(TAG_HASH);
        self.out.extend_from_slice(h);
        self
    }

    /// Appends an unsigned integer component.
    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.count = self.count.wrapping_add(1);
        self.out.push(TAG_U64);
        self.out.extend_from_slice(&n.to_le_bytes());
        self
    }

    /// Appends a list component whose items `items` appends (none makes
    /// an empty list).
    pub fn list(&mut self, items: impl FnOnce(&mut Self)) -> &mut Self {
        if self.depth >= MAX_DEPTH {
            // `finish` refuses the key; its items are not worth encoding.
            self.too_deep = true;
            return self;
        }
        self.out.push(TAG_LIST);
        let count_at = self.out.len();
        self.out.extend_from_slice(&0u32.to_le_bytes());
        let outer = std::mem::replace(&mut self.count, 0);
        self.depth += 1;
        items(self);
        self.depth -= 1;
        let inner = std::mem::replace(&mut self.count, outer.wrapping_add(1));
        self.out[count_at..count_at + 4].copy_from_slice(&inner.to_le_bytes());
        self
    }

    /// Appends a component (and, for a list, its items).
    pub fn component(&mut self, c: &Component) -> &mut Self {
        match c {
            Component::Str(s) => self.str(s),
            Component::Hash(h) => self.hash(h),
            Component::U64(n) => self.u64(*n),
            Component::Bytes(b) => self.bytes(b),
            Component::List(items) => self.list(|l| {
                for item in items {
                    l.component(item);
                }
            }),
        }
    }

    fn tagged(&mut self, tag: u8, body: &[u8]) -> &mut Self {
        self.count = self.count.wrapping_add(1);
        self.out.push(tag);
        self.out
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.out.extend_from_slice(body);
        self
    }

    /// The encoding (an exact-size copy of the scratch buffer) and its
    /// hash, once the limits are checked.
    fn encode(&mut self) -> Result<(Vec<u8>, KeyHash)> {
        let (encoding, hash) = self.encoded()?;
        Ok((encoding.to_vec(), hash))
    }

    /// The encoding, borrowed from the scratch buffer, and its hash, once
    /// the limits are checked: what a lookup needs, without allocating.
    pub(crate) fn encoded(&mut self) -> Result<(&[u8], KeyHash)> {
        if self.too_deep {
            return Err(too_deep(self.namespace));
        }
        if self.out.len() > MAX_KEY_LEN {
            return Err(invalid_key(
                self.namespace.as_str(),
                format!(
                    "the key encodes to {} bytes; the limit is {MAX_KEY_LEN}",
                    self.out.len()
                ),
            ));
        }
        let at = COUNT_AT + self.namespace.as_str().len();
        self.out[at..at + 4].copy_from_slice(&self.count.to_le_bytes());
        Ok((&self.out, KeyHash::of_encoding(&self.out)))
    }

    /// The key: its encoding is byte for byte the one [`Key::new`] makes
    /// of the same components, and so is its hash.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the encoding exceeds [`MAX_KEY_LEN`]
    /// bytes or lists nest deeper than [`MAX_DEPTH`].
    pub fn finish(mut self) -> Result<Key> {
        let (encoding, hash) = self.encode()?;
        Ok(Key {
            namespace: self.namespace.clone(),
            encoding,
            hash,
            components: OnceLock::new(),
        })
    }
}

impl Drop for KeyEncoder<'_> {
    /// Hands the buffer back for the next key built on this thread.
    fn drop(&mut self) {
        if self.out.capacity() <= SCRATCH_KEEP {
            SCRATCH.set(std::mem::take(&mut self.out));
        }
    }
}

/// Offset of the component count after the namespace bytes.
const COUNT_AT: usize = 2;

/// The components of an encoding made by this module (so it decodes).
fn decode_components(encoding: &[u8]) -> Vec<Component> {
    // Every `Key` holds an encoding it made or decoded, so this never
    // fails; should it, no components is the answer that cannot panic.
    decode_parts(encoding)
        .map(|(_, components)| components)
        .unwrap_or_default()
}

fn decode_parts(bytes: &[u8]) -> std::result::Result<(Namespace, Vec<Component>), String> {
    if bytes.len() > MAX_KEY_LEN {
        return Err(format!("key is {} bytes, over the limit", bytes.len()));
    }
    let mut r = Reader { bytes, pos: 0 };
    let version = r.u8()?;
    if version != KEY_ENCODING_VERSION {
        return Err(format!(
            "key encoding version {version} is not the supported version {KEY_ENCODING_VERSION}"
        ));
    }
    let ns_len = usize::from(r.u8()?);
    let ns =
        std::str::from_utf8(r.take(ns_len)?).map_err(|_| "namespace is not UTF-8".to_string())?;
    let namespace = Namespace::new(ns).map_err(|e| e.to_string())?;
    let count = r.u32()?;
    let mut components = Vec::new();
    for _ in 0..count {
        components.push(r.component(0)?);
    }
    if r.pos != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the key",
            bytes.len() - r.pos
        ));
    }
    Ok((namespace, components))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let out = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(format!(
                "key ends early: wanted {n} bytes at offset {} of {}",
                self.pos,
                self.bytes.len()
            )),
        }
    }

    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn component(&mut self, depth: usize) -> std::result::Result<Component, String> {
        let tag = self.u8()?;
        match tag {
            TAG_STR => {
                let len = self.u32()? as usize;
                let text = std::str::from_utf8(self.take(len)?)
                    .map_err(|_| "string component is not UTF-8".to_string())?;
                Ok(Component::Str(text.to_string()))
            }
            TAG_HASH => {
                let mut h = [0u8; 32];
                h.copy_from_slice(self.take(32)?);
                Ok(Component::Hash(h))
            }
            TAG_U64 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(self.take(8)?);
                Ok(Component::U64(u64::from_le_bytes(n)))
            }
            TAG_LIST => {
                if depth >= MAX_DEPTH {
                    return Err(format!("lists nest deeper than {MAX_DEPTH}"));
                }
                let count = self.u32()?;
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(self.component(depth + 1)?);
                }
                Ok(Component::List(items))
            }
            TAG_BYTES => {
                let len = self.u32()? as usize;
                Ok(Component::Bytes(self.take(len)?.to_vec()))
            }
            other => Err(format!("unknown component tag 0x{other:02x}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Namespace {
        Namespace::new("rask-0.4").unwrap()
    }

    #[test]
    fn decode_round_trips_and_refuses_damage() {
        let key = Key::new(
            ns(),
            vec![
                "std".into(),
                Component::List(vec![Component::U64(7), Component::Bytes(vec![1, 2])]),
                Component::Hash([9; 32]),
            ],
        )
        .unwrap();
        let back = Key::decode(key.encoding()).unwrap();
        assert_eq!(back, key);
        let mut bad = key.encoding().to_vec();
        bad.push(0);
        assert!(Key::decode(&bad).unwrap_err().contains("trailing"));
        assert!(
            Key::decode(&key.encoding()[..10])
                .unwrap_err()
                .contains("ends early")
        );
        let mut bad = key.encoding().to_vec();
        bad[0] = 2;
        assert!(Key::decode(&bad).unwrap_err().contains("version 2"));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut c = Component::U64(1);
        for _ in 0..=MAX_DEPTH {
            c = Component::List(vec![c]);
        }
        assert!(Key::new(ns(), vec![c]).is_err());
    }

    #[test]
    fn command_line_spelling_round_trips() {
        assert!(
            Component::parse_args(&["pkg", "b3:"]).is_err(),
            "b3: with no digits"
        );
        let h = "ab".repeat(32);
        let hash_arg = format!("b3:{h}");
        let args = [
            "pkg",
            "[",
            "s:u:1",
            "u:42",
            "]",
            hash_arg.as_str(),
            "x:00ff",
            "s:[",
        ];
        let parsed = Component::parse_args(&args).unwrap();
        assert_eq!(
            parsed,
            vec![
                Component::str("pkg"),
                Component::List(vec![Component::str("u:1"), Component::U64(42)]),
                Component::Hash([0xab; 32]),
                Component::Bytes(vec![0, 0xff]),
                Component::str("["),
            ]
        );
        let shown: Vec<String> = parsed.iter().map(|c| c.to_string()).collect();
        assert_eq!(shown[1], "[ s:u:1 u:42 ]");
        assert!(Component::parse_args(&["[", "a"]).is_err());
        assert!(Component::parse_args(&["]"]).is_err());
        assert!(Component::parse_arg("u:-1").is_err());
        assert!(Component::parse_arg("u:+1").is_err());
    }
}
