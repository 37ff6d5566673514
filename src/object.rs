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
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use blake3::hazmat::{ContextKey, HasherExt, hash_derive_key_context};

use crate::error::{Error, IoContext, Result};
use crate::id::{ID_LEN, ObjectId};

pub(crate) mod hash;

pub use hash::{PARALLEL_MIN, payload_hash, payload_range_hash};

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

/// The length of the encoding of an object with `links` links and a
/// `payload_len`-byte payload: what its loose file or pack record holds.
pub fn encoded_len(links: usize, payload_len: usize) -> u64 {
    (HEADER_LEN + links * ID_LEN) as u64 + payload_len as u64
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

/// The bytes of an object file read first: the header, the links and the
/// start of the payload of most objects (all of a small one) in one `read`.
///
/// It is std's default read size, the most a bounded `read_to_end` asks
/// for in its first `read`; only these bytes, less the header and links,
/// are ever moved in memory.
pub const FIRST_READ: u64 = 8 << 10;

/// A verified object held in memory.
///
/// The payload sits at the start of its own allocation, so
/// [`Object::into_payload`] hands it over without a copy. Payloads of
/// [`PARALLEL_MIN`] bytes or more are hashed on two threads
/// ([`payload_hash`]), with the same result.
#[derive(Clone, PartialEq, Eq)]
pub struct Object {
    id: ObjectId,
    kind: Kind,
    links: Vec<ObjectId>,
    /// The payload; shared only with the hashing worker, which reads it.
    payload: Arc<Vec<u8>>,
}

impl Object {
    /// Reads the object file `file`, `file_len` bytes long (its length when
    /// opened), and checks it against `id`.
    ///
    /// The first [`FIRST_READ`] bytes are read into the payload's own
    /// allocation (sized for the whole file, not zero-filled); the header
    /// and links are decoded from them and the rest of that block is moved
    /// to the front; the remainder of the file, zero-filled first, is read
    /// straight after it with one `read`. So a file takes one `read`, or two
    /// when it is longer than the first block, and no byte of the payload
    /// past the first block is copied in memory.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming `path` and what failed (bad header, a file
    /// shorter or longer than its header describes, a hash that is not
    /// `id`); [`Error::Io`] when reading fails.
    pub fn read(id: ObjectId, path: &Path, file: &mut impl Read, file_len: u64) -> Result<Object> {
        let what = format_args!("object {id}");
        let mut bytes = Vec::with_capacity(file_len as usize);
        read_appending(file, &mut bytes, file_len.min(FIRST_READ), path)?;
        let header = check_header(&bytes, file_len, &id, path)?;
        let start = header.payload_offset() as usize;
        if bytes.len() < start {
            // More links than fit in the first block.
            let more = (start - bytes.len()) as u64;
            read_appending(file, &mut bytes, more, path)?;
        }
        let links = bytes
            .get(HEADER_LEN..start)
            .map(decode_links)
            .ok_or_else(|| Error::corrupt(what, path, "file shrank while it was read"))?;
        bytes.drain(..start);
        // The rest in one `read`, into zero-filled bytes: `read_appending`
        // would take it in reads of 8 KiB, 16 KiB, 32 KiB … (five for a
        // 256 KiB file), and a `read` costs more than zeroing what it reads.
        let have = bytes.len();
        let len = usize::try_from(header.payload_len)
            .map_err(|_| Error::corrupt(what, path, "payload is larger than memory"))?;
        bytes.resize(len, 0);
        let got = fill(file, &mut bytes[have..]).at("read object", path)?;
        if have + got != len {
            return Err(Error::corrupt(what, path, "file shrank while it was read"));
        }
        let payload = Arc::new(bytes);
        let digest = payload_hash(&payload, 0);
        check_id(&id, header.kind, &links, header.payload_len, &digest, path)?;
        Ok(Object {
            id,
            kind: header.kind,
            links,
            payload,
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
        &self.payload
    }

    /// Takes the payload out of the object; no copy unless the object was
    /// cloned (or the hashing worker is still letting go of it).
    pub fn into_payload(self) -> Vec<u8> {
        Arc::try_unwrap(self.payload).unwrap_or_else(|shared| shared.to_vec())
    }
}

/// A read buffer that [`Store::get_object_into`](crate::Store::get_object_into)
/// reuses from one get to the next: what a compiler loading many cached
/// artifacts in a row keeps, instead of one allocation per object.
///
/// It keeps the length of the longest object file it has held (memory is
/// given back only when the buffer is dropped), so its bytes are
/// zero-filled only when it grows, and every file is read with one `read`
/// into it: the header, the links and the payload together, none of them
/// moved in memory afterwards.
#[derive(Default)]
pub struct ObjectBuf {
    /// Shared only with the hashing worker, which reads it
    /// ([`payload_range_hash`]).
    bytes: Arc<Vec<u8>>,
    /// The other buffer, while the worker may still be finishing a piece
    /// of the last payload read into it: the next read takes whichever of
    /// the two the worker has let go of, so neither is given up (and
    /// zero-filled again) because the worker was slow to let go.
    spare: Option<Arc<Vec<u8>>>,
    /// The object the last successful [`ObjectBuf::read`] verified, for
    /// [`ObjectBuf::last_read`]; `None` after a failed one.
    last: Option<LastRead>,
}

/// Where the last verified object lies in [`ObjectBuf::bytes`].
#[derive(Debug)]
struct LastRead {
    id: ObjectId,
    kind: Kind,
    /// The encoded links (decoded again by [`ObjectBuf::last_read`], so a
    /// read that is not handed on copies none).
    links: Range<usize>,
    payload: Range<usize>,
}

impl ObjectBuf {
    /// An empty buffer; it grows to the largest object read through it.
    pub fn new() -> ObjectBuf {
        ObjectBuf::default()
    }

    /// The bytes it holds now (the longest file it has read, at least).
    pub fn capacity(&self) -> usize {
        let spare = self.spare.as_ref().map_or(0, |spare| spare.len());
        self.bytes.len().max(spare)
    }

    /// The buffer to read into, one nothing else holds.
    fn unshared(&mut self) -> &mut Vec<u8> {
        if Arc::get_mut(&mut self.bytes).is_none() {
            // The hashing worker still holds the last payload for a moment.
            let spare = match self.spare.take() {
                Some(spare) if Arc::strong_count(&spare) == 1 => spare,
                _ => Arc::default(),
            };
            self.spare = Some(std::mem::replace(&mut self.bytes, spare));
        }
        // Unshared now (no weak references are ever made), so this never
        // copies.
        Arc::make_mut(&mut self.bytes)
    }

    /// Reads the object file `file`, `file_len` bytes long, into the
    /// buffer and checks it against `id`; the result borrows the payload
    /// from the buffer.
    ///
    /// # Errors
    /// As [`Object::read`].
    pub fn read(
        &mut self,
        id: ObjectId,
        path: &Path,
        file: &mut impl Read,
        file_len: u64,
    ) -> Result<ObjectRef<'_>> {
        let what = format_args!("object {id}");
        self.last = None;
        let len = usize::try_from(file_len)
            .map_err(|_| Error::corrupt(what, path, "file is larger than memory"))?;
        let bytes = self.unshared();
        if bytes.len() < len {
            bytes.resize(len, 0);
        }
        let got = fill(file, &mut bytes[..len]).at("read object", path)?;
        let header = check_header(&bytes[..got], file_len, &id, path)?;
        if got != len {
            return Err(Error::corrupt(what, path, "file shrank while it was read"));
        }
        let start = header.payload_offset() as usize;
        let links = decode_links(&bytes[HEADER_LEN..start]);
        let digest = payload_range_hash(&self.bytes, start..len);
        check_id(&id, header.kind, &links, header.payload_len, &digest, path)?;
        self.last = Some(LastRead {
            id,
            kind: header.kind,
            links: HEADER_LEN..start,
            payload: start..len,
        });
        Ok(ObjectRef {
            id,
            kind: header.kind,
            links,
            payload: &self.bytes[start..len],
        })
    }

    /// The object the last [`ObjectBuf::read`] verified, while nothing has
    /// been read into the buffer since; `None` when that read failed (or
    /// none was made). Lets a buffer filled on one thread be handed, with
    /// its object, to another.
    pub(crate) fn last_read(&self) -> Option<ObjectRef<'_>> {
        let last = self.last.as_ref()?;
        Some(ObjectRef {
            id: last.id,
            kind: last.kind,
            links: decode_links(self.bytes.get(last.links.clone())?),
            payload: self.bytes.get(last.payload.clone())?,
        })
    }
}

impl fmt::Debug for ObjectBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBuf")
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// A verified object whose payload lives in an [`ObjectBuf`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef<'a> {
    id: ObjectId,
    kind: Kind,
    links: Vec<ObjectId>,
    payload: &'a [u8],
}

impl<'a> ObjectRef<'a> {
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

    /// The payload bytes, borrowed from the buffer.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
}

/// Checks a whole object file, read into `scratch` (reused from call to
/// call), against `id`, hashing on the calling thread only; returns its
/// header and links. The cheap check for callers that already keep every
/// core busy (verify) and do not want the payload.
///
/// `scratch` keeps the length of the longest file it has held, so its
/// bytes are zero-filled only when it grows, and every file is read with
/// one `read` (std's `read_to_end` would ask for 8 KiB, then twice as much
/// each time: six `read`s for a 256 KiB file).
///
/// # Errors
/// As [`Object::read`].
pub fn check_file(
    id: &ObjectId,
    path: &Path,
    file: &mut impl Read,
    file_len: u64,
    scratch: &mut Vec<u8>,
) -> Result<(Header, Vec<ObjectId>)> {
    let len = usize::try_from(file_len).unwrap_or(usize::MAX);
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    let buf = &mut scratch[..len];
    let got = fill(file, buf).at("read object", path)?;
    let header = check_header(&buf[..got], file_len, id, path)?;
    if got != len {
        return Err(Error::corrupt(
            format_args!("object {id}"),
            path,
            "file shrank while it was read",
        ));
    }
    check_body(id, path, header, buf)
}

/// As [`check_file`] for a file read whole into `bytes` by one `read` that
/// came back short of its buffer: for a regular file that is the end of the
/// file, so no `fstat` is needed. The bytes are taken as the whole file
/// only when the header describes exactly that length; `None` means the
/// caller must check the file the careful way (a length mismatch is only
/// reported from there).
pub(crate) fn check_read_whole(
    id: &ObjectId,
    bytes: &[u8],
) -> Option<std::result::Result<(Header, Vec<ObjectId>), String>> {
    let header = Header::decode(bytes).ok()?;
    if header.file_len() != Some(bytes.len() as u64) {
        return None;
    }
    let start = header.payload_offset() as usize;
    let links = decode_links(&bytes[HEADER_LEN..start]);
    let digest = blake3::hash(&bytes[start..]);
    Some(
        match id_mismatch(id, header.kind, &links, header.payload_len, &digest) {
            None => Ok((header, links)),
            Some(reason) => Err(reason),
        },
    )
}

/// Hashes a whole object file's bytes, its header already checked against
/// their length.
fn check_body(
    id: &ObjectId,
    path: &Path,
    header: Header,
    buf: &[u8],
) -> Result<(Header, Vec<ObjectId>)> {
    let start = header.payload_offset() as usize;
    let links = decode_links(&buf[HEADER_LEN..start]);
    let digest = blake3::hash(&buf[start..]);
    check_id(id, header.kind, &links, header.payload_len, &digest, path)?;
    Ok((header, links))
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn fill(file: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Decodes the header at the start of `bytes` and checks that it describes
/// a file of `file_len` bytes.
pub(crate) fn check_header(
    bytes: &[u8],
    file_len: u64,
    id: &ObjectId,
    path: &Path,
) -> Result<Header> {
    let what = format_args!("object {id}");
    let header = Header::decode(bytes).map_err(|r| Error::corrupt(what, path, r))?;
    if header.file_len() != Some(file_len) {
        return Err(Error::corrupt(
            what,
            path,
            format!(
                "file is {file_len} bytes but its header describes {} links and a {}-byte \
                 payload (truncated or extended)",
                header.link_count, header.payload_len
            ),
        ));
    }
    Ok(header)
}

/// Checks that the parts of an object hash to `id`.
pub(crate) fn check_id(
    id: &ObjectId,
    kind: Kind,
    links: &[ObjectId],
    payload_len: u64,
    payload_digest: &blake3::Hash,
    path: &Path,
) -> Result<()> {
    match id_mismatch(id, kind, links, payload_len, payload_digest) {
        None => Ok(()),
        Some(reason) => Err(Error::corrupt(format_args!("object {id}"), path, reason)),
    }
}

/// What is wrong when the parts of an object do not hash to `id`.
fn id_mismatch(
    id: &ObjectId,
    kind: Kind,
    links: &[ObjectId],
    payload_len: u64,
    payload_digest: &blake3::Hash,
) -> Option<String> {
    let actual = object_id(kind, links, payload_len, payload_digest);
    (actual != *id).then(|| format!("content hashes to {actual}, not to the id it is stored under"))
}

/// Appends up to `len` bytes of `file` to `bytes`, into its spare capacity
/// (not zero-filled first); fewer only at the end of the file.
///
/// std's bounded `read_to_end` asks for [`FIRST_READ`] bytes first and
/// twice as many each time a `read` fills what it asked for, so a file of
/// up to 8 KiB is one `read` and one of 256 KiB six.
fn read_appending(file: &mut impl Read, bytes: &mut Vec<u8>, len: u64, path: &Path) -> Result<()> {
    file.by_ref()
        .take(len)
        .read_to_end(bytes)
        .map(drop)
        .at("read object", path)
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

    fn object_file(kind: Kind, links: &[ObjectId], payload: &[u8]) -> Vec<u8> {
        let mut file = encode_prefix(kind, links, payload.len() as u64);
        file.extend_from_slice(payload);
        file
    }

    fn read_bytes(id: ObjectId, file: &[u8]) -> Result<Object> {
        Object::read(id, Path::new("obj"), &mut &file[..], file.len() as u64)
    }

    #[test]
    fn read_splits_header_links_and_payload_at_every_block_boundary() {
        let first = FIRST_READ as usize;
        let link = compute_id(Kind::Blob, &[], b"callee");
        // One buffer for every check, as verify reuses it: longer files
        // first and shorter after, with stale bytes past the end.
        let mut scratch = vec![0xee; 3];
        let mut object_buf = ObjectBuf::new();
        // Links that end inside, at and past the first block; payloads that
        // end before, at and after it; one of two hashing pieces.
        for links in [0, 1, 3, (first - HEADER_LEN) / ID_LEN, 300] {
            let links = vec![link; links];
            let prefix = HEADER_LEN + links.len() * ID_LEN;
            for len in [
                0,
                1,
                first.saturating_sub(prefix + 1),
                first.saturating_sub(prefix),
                first - prefix.min(first) + 1,
                3 * first + 5,
                PARALLEL_MIN + 17,
            ] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
                let id = compute_id(Kind::Ast, &links, &payload);
                let file = object_file(Kind::Ast, &links, &payload);
                let object = read_bytes(id, &file).unwrap();
                assert_eq!(
                    object.links(),
                    &links[..],
                    "{} links, {len} bytes",
                    links.len()
                );
                assert_eq!(object.payload(), &payload[..]);
                let (header, checked) = check_file(
                    &id,
                    Path::new("obj"),
                    &mut &file[..],
                    file.len() as u64,
                    &mut scratch,
                )
                .unwrap();
                assert_eq!(header.payload_len, len as u64);
                assert_eq!(checked, links);
                let into = object_buf
                    .read(id, Path::new("obj"), &mut &file[..], file.len() as u64)
                    .unwrap();
                assert_eq!(into.links(), &links[..]);
                assert_eq!(into.payload(), object.payload());
                assert_eq!(object.into_payload(), payload, "the payload is handed over");
            }
        }
    }

    #[test]
    fn read_rejects_every_damaged_or_cut_file() {
        let link = compute_id(Kind::Blob, &[], b"callee");
        let payload: Vec<u8> = (0..20_000).map(|i| (i % 251) as u8).collect();
        let id = compute_id(Kind::Instance, &[link], &payload);
        let good = object_file(Kind::Instance, &[link], &payload);
        let mut damaged = Vec::new();
        for offset in [5, 9, 13, HEADER_LEN + 3, 60, 9000, good.len() - 1] {
            let mut bad = good.clone();
            bad[offset] ^= 0x01;
            damaged.push((format!("byte {offset} flipped"), bad, good.len() as u64));
        }
        damaged.push((
            "truncated".into(),
            good[..good.len() - 1].to_vec(),
            good.len() as u64 - 1,
        ));
        let mut longer = good.clone();
        longer.push(0);
        damaged.push(("extended".into(), longer, good.len() as u64 + 1));
        // A file that shrank after its length was taken.
        damaged.push(("shrank".into(), good[..9000].to_vec(), good.len() as u64));
        damaged.push(("empty".into(), Vec::new(), 0));
        // Holding the good file's bytes from an earlier check.
        let mut scratch = good.clone();
        scratch.extend_from_slice(&good);
        let mut object_buf = ObjectBuf::new();
        for (what, bytes, len) in damaged {
            let err = Object::read(id, Path::new("obj"), &mut &bytes[..], len).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{what}: {err}");
            // With the good file's bytes left in the buffer from a read.
            object_buf
                .read(id, Path::new("obj"), &mut &good[..], good.len() as u64)
                .unwrap();
            let err = object_buf
                .read(id, Path::new("obj"), &mut &bytes[..], len)
                .unwrap_err();
            assert!(
                matches!(err, Error::Corrupt { .. }),
                "{what}: buffer: {err}"
            );
            let err =
                check_file(&id, Path::new("obj"), &mut &bytes[..], len, &mut scratch).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{what}: {err}");
        }
        let other = compute_id(Kind::Blob, &[], b"another object");
        let err = read_bytes(other, &good).unwrap_err();
        assert!(
            err.to_string().contains("not to the id"),
            "wrong name: {err}"
        );
    }

    #[test]
    fn a_buffer_the_hashing_worker_still_holds_is_never_written() {
        let files: Vec<(ObjectId, Vec<u8>)> = [9000usize, 300, 5000]
            .into_iter()
            .map(|len| {
                let payload: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
                let id = compute_id(Kind::Memo, &[], &payload);
                (id, object_file(Kind::Memo, &[], &payload))
            })
            .collect();
        let mut buf = ObjectBuf::new();
        let read = |buf: &mut ObjectBuf, (id, file): &(ObjectId, Vec<u8>)| {
            let got = buf
                .read(*id, Path::new("obj"), &mut &file[..], file.len() as u64)
                .unwrap();
            assert_eq!(got.payload(), &file[HEADER_LEN..]);
        };
        read(&mut buf, &files[0]);
        // As the worker holds a payload while it finishes a piece.
        let held = Arc::clone(&buf.bytes);
        let snapshot = held.to_vec();
        read(&mut buf, &files[1]);
        read(&mut buf, &files[2]);
        assert_eq!(*held, snapshot, "the held buffer was written");
        assert!(buf.capacity() >= files[0].1.len());
        drop(held);
        // Let go of: both buffers serve reads again.
        for file in files.iter().cycle().take(6) {
            read(&mut buf, file);
        }
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
