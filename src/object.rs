//! The object file format: what an object is, how its id is computed, and
//! how its bytes are checked.
//!
//! # File format (version 1)
//!
//! ```text
//! offset  size  field
//! 0       4     magic "RSKO"
//! 4       1     object format version (1)
//! 5       1     kind (see [`Kind`])
//! 6       2     reserved, must be zero
//! 8       4     link count n, u32 little-endian
//! 12      8     payload length, u64 little-endian
//! 20      32·n  links: the ids of the objects this one references
//! 20+32n  len   payload
//! ```
//!
//! The id is `BLAKE3-derive_key(ID_CONTEXT, kind ‖ n ‖ links ‖ len ‖ BLAKE3(payload))`
//! with `n` as u32 LE and `len` as u64 LE. The magic, version and reserved
//! bytes are checked for exact values; every other byte is covered by the
//! hash, and the file length must equal `20 + 32·n + len`. So any flipped
//! bit, truncation or trailing garbage is detected.
//!
//! Hashing the payload on its own first means a payload can be streamed
//! while it is hashed (its length need not be known in advance) and the
//! payload's plain BLAKE3 digest is available for content-addressed peers.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use blake3::hazmat::{ContextKey, HasherExt, hash_derive_key_context};

use crate::error::{Error, Result};
use crate::id::{ID_LEN, ObjectId};

mod hash;

pub use hash::{PARALLEL_MIN, payload_hash};

/// First four bytes of every object file.
pub const MAGIC: [u8; 4] = *b"RSKO";
/// The object format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the fixed header that precedes the links.
pub const HEADER_LEN: usize = 20;
/// BLAKE3 key-derivation context for object ids; keeps ids in their own domain.
pub const ID_CONTEXT: &str = "rask-store 2026-11-21 object id v1";

const OFF_VERSION: usize = 4;
const OFF_KIND: usize = 5;
const OFF_RESERVED: usize = 6;
const OFF_LINK_COUNT: usize = 8;
const OFF_PAYLOAD_LEN: usize = 12;

/// What an object holds. Part of the id: equal payloads of different kinds
/// are different objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// Opaque bytes with no stated meaning.
    Blob = 1,
    /// A parsed and resolved syntax tree (parse tier).
    Ast = 2,
    /// Package metadata.
    Meta = 3,
    /// A monomorphized generic instance.
    Instance = 4,
    /// A memoized (comptime) result.
    Memo = 5,
    /// A keyed entry: a composite key and its named parts.
    Entry = 6,
    /// A build root: links everything one build of a package used.
    Root = 7,
}

impl Kind {
    /// Every kind, in byte order.
    pub const ALL: [Kind; 7] = [
        Kind::Blob,
        Kind::Ast,
        Kind::Meta,
        Kind::Instance,
        Kind::Memo,
        Kind::Entry,
        Kind::Root,
    ];

    /// The kind stored as `byte`, if any.
    pub fn from_byte(byte: u8) -> Option<Kind> {
        Kind::ALL.get(usize::from(byte).wrapping_sub(1)).copied()
    }

    /// The lowercase name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Blob => "blob",
            Kind::Ast => "ast",
            Kind::Meta => "meta",
            Kind::Instance => "instance",
            Kind::Memo => "memo",
            Kind::Entry => "entry",
            Kind::Root => "root",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown kind {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// The decoded fixed header of an object file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The object's kind.
    pub kind: Kind,
    /// How many links follow the header.
    pub link_count: u32,
    /// How many payload bytes follow the links.
    pub payload_len: u64,
}

impl Header {
    /// Bytes from the start of the file to the start of the payload.
    pub fn payload_offset(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.link_count) * ID_LEN as u64
    }

    /// The exact length a file with this header must have.
    pub fn file_len(&self) -> Option<u64> {
        self.payload_offset().checked_add(self.payload_len)
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[OFF_VERSION] = FORMAT_VERSION;
        out[OFF_KIND] = self.kind as u8;
        out[OFF_LINK_COUNT..OFF_PAYLOAD_LEN].copy_from_slice(&self.link_count.to_le_bytes());
        out[OFF_PAYLOAD_LEN..HEADER_LEN].copy_from_slice(&self.payload_len.to_le_bytes());
        out
    }

    /// Decodes and checks a header; the error string says what is wrong.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Header, String> {
        if bytes.len() < HEADER_LEN {
            return Err(format!(
                "file is {} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ));
        }
        if bytes[..4] != MAGIC {
            return Err(format!("bad magic {:02x?}, expected \"RSKO\"", &bytes[..4]));
        }
        if bytes[OFF_VERSION] != FORMAT_VERSION {
            return Err(format!(
                "object format version {} is not the supported version {FORMAT_VERSION}",
                bytes[OFF_VERSION]
            ));
        }
        let kind = Kind::from_byte(bytes[OFF_KIND])
            .ok_or_else(|| format!("unknown kind byte {}", bytes[OFF_KIND]))?;
        if bytes[OFF_RESERVED..OFF_LINK_COUNT] != [0, 0] {
            return Err("reserved header bytes are not zero".into());
        }
        let link_count = u32::from_le_bytes(le(&bytes[OFF_LINK_COUNT..OFF_PAYLOAD_LEN]));
        let payload_len = u64::from_le_bytes(le(&bytes[OFF_PAYLOAD_LEN..HEADER_LEN]));
        Ok(Header {
            kind,
            link_count,
            payload_len,
        })
    }
}

fn le<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// Computes an object's id from its parts and its payload's BLAKE3 digest.
pub fn object_id(
    kind: Kind,
    links: &[ObjectId],
    payload_len: u64,
    payload_hash: &blake3::Hash,
) -> ObjectId {
    // The context string is hashed once per process, not once per id.
    static ID_KEY: LazyLock<ContextKey> = LazyLock::new(|| hash_derive_key_context(ID_CONTEXT));
    let mut hasher = blake3::Hasher::new_from_context_key(&ID_KEY);
    hasher.update(&[kind as u8]);
    hasher.update(&(links.len() as u32).to_le_bytes());
    for link in links {
        hasher.update(link.as_bytes());
    }
    hasher.update(&payload_len.to_le_bytes());
    hasher.update(payload_hash.as_bytes());
    ObjectId::from_bytes(*hasher.finalize().as_bytes())
}

/// Computes the id an object with these parts has.
pub fn compute_id(kind: Kind, links: &[ObjectId], payload: &[u8]) -> ObjectId {
    object_id(kind, links, payload.len() as u64, &blake3::hash(payload))
}

/// The header and links of an object, encoded: everything before the payload.
pub fn encode_prefix(kind: Kind, links: &[ObjectId], payload_len: u64) -> Vec<u8> {
    let header = Header {
        kind,
        link_count: links.len() as u32,
        payload_len,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + links.len() * ID_LEN);
    out.extend_from_slice(&header.encode());
    for link in links {
        out.extend_from_slice(link.as_bytes());
    }
    out
}

/// Decodes the links that follow a header.
pub fn decode_links(bytes: &[u8]) -> Vec<ObjectId> {
    bytes
        .chunks_exact(ID_LEN)
        .map(|chunk| ObjectId::from_bytes(le(chunk)))
        .collect()
}

/// A verified object held in memory.
///
/// The payload is a view into the file's bytes, so reading an object costs
/// one allocation and no copy. Payloads of [`PARALLEL_MIN`] bytes or more
/// are hashed on two threads ([`payload_hash`]), with the same result.
#[derive(Clone, PartialEq, Eq)]
pub struct Object {
    id: ObjectId,
    kind: Kind,
    links: Vec<ObjectId>,
    /// The whole file; shared only with the hashing worker, which reads it.
    bytes: Arc<Vec<u8>>,
    payload_start: usize,
}

impl Object {
    /// Decodes a whole object file and checks it against `id`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming `path` and what failed.
    pub fn decode(id: ObjectId, path: &Path, bytes: Vec<u8>) -> Result<Object> {
        let what = format_args!("object {id}");
        let header = Header::decode(&bytes).map_err(|r| Error::corrupt(what, path, r))?;
        let start = header.payload_offset();
        if header.file_len() != Some(bytes.len() as u64) {
            return Err(Error::corrupt(
                what,
                path,
                format!(
                    "file is {} bytes but its header describes {} links and a {}-byte payload \
                     (truncated or extended)",
                    bytes.len(),
                    header.link_count,
                    header.payload_len
                ),
            ));
        }
        let start = start as usize;
        let links = decode_links(&bytes[HEADER_LEN..start]);
        let bytes = Arc::new(bytes);
        let payload_digest = payload_hash(&bytes, start);
        let actual = object_id(header.kind, &links, header.payload_len, &payload_digest);
        if actual != id {
            return Err(Error::corrupt(
                what,
                path,
                format!("content hashes to {actual}, not to the id it is stored under"),
            ));
        }
        Ok(Object {
            id,
            kind: header.kind,
            links,
            bytes,
            payload_start: start,
        })
    }

    /// The object's id.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The object's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The ids this object links to, in stored order.
    pub fn links(&self) -> &[ObjectId] {
        &self.links
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.payload_start..]
    }

    /// Takes the payload out of the object.
    pub fn into_payload(self) -> Vec<u8> {
        match Arc::try_unwrap(self.bytes) {
            Ok(mut bytes) => {
                bytes.drain(..self.payload_start);
                bytes
            }
            // Still shared (with a worker finishing late, or a clone): copy.
            Err(bytes) => bytes[self.payload_start..].to_vec(),
        }
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("links", &self.links)
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let header = Header {
            kind: Kind::Instance,
            link_count: 3,
            payload_len: 1 << 40,
        };
        let bytes = header.encode();
        assert_eq!(Header::decode(&bytes).unwrap(), header);
        for (offset, needle) in [
            (0, "bad magic"),
            (OFF_VERSION, "format version"),
            (OFF_KIND, "unknown kind"),
            (OFF_RESERVED, "reserved"),
        ] {
            let mut bad = bytes;
            bad[offset] ^= 0x80;
            let err = Header::decode(&bad).unwrap_err();
            assert!(err.contains(needle), "offset {offset}: {err}");
        }
        assert!(
            Header::decode(&bytes[..10])
                .unwrap_err()
                .contains("shorter")
        );
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(kind.name().parse::<Kind>().unwrap(), kind);
            assert_eq!(Kind::from_byte(kind as u8), Some(kind));
        }
        assert_eq!(Kind::from_byte(0), None);
        assert_eq!(Kind::from_byte(8), None);
        assert!("tree".parse::<Kind>().unwrap_err().contains("blob, ast"));
    }

    #[test]
    fn id_covers_kind_links_and_payload() {
        let link = compute_id(Kind::Blob, &[], b"callee");
        let base = compute_id(Kind::Ast, &[link], b"body");
        assert_ne!(base, compute_id(Kind::Instance, &[link], b"body"));
        assert_ne!(base, compute_id(Kind::Ast, &[], b"body"));
        assert_ne!(base, compute_id(Kind::Ast, &[link], b"bodY"));
        assert_ne!(base, compute_id(Kind::Ast, &[link, link], b"body"));
    }
}
