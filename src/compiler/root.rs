//! The build root of one package: a [`Kind::Root`](crate::Kind::Root)
//! object that links everything that package's build used, and records
//! what the quick path and `explain` need.
//!
//! # Format (root payload version 1)
//!
//! ```text
//! 0   4  magic "RSKR"
//! 4   1  version = 1
//! 5   …  str package            str(s) = u32 len ‖ UTF-8 bytes
//!        str namespace
//!        32  metadata object id
//!        u32 F ‖ F × 32   file content hashes, strictly increasing
//!        u32 U ‖ U × 32   upstream metadata ids, strictly increasing
//!        u32 K ‖ K × (u32 len ‖ key encoding)   tier keys, strictly increasing by bytes
//! ```
//!
//! Integers are little-endian. The object's links are the metadata id first,
//! then every other object the build used (parse-tier ASTs, function,
//! instance and comptime parts), distinct and sorted. The object id covers
//! payload and links, so the payload carries no checksum of its own.
//!
//! # Invariants
//! - Encoding is canonical: the same build inputs give the same bytes, so an
//!   unchanged rebuild makes the same root id.
//! - Decoding never panics and refuses anything but the canonical form: bad
//!   magic, unknown version, truncation, trailing bytes, unsorted or repeated
//!   items, keys of another namespace or of no tier, a first link that is not
//!   the metadata id.

use std::collections::BTreeSet;

use crate::compiler::keys::{CacheKey, ContentHash};
use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::key::Key;
use crate::name::{Namespace, PackageName};

/// Magic at the start of a root payload.
pub const ROOT_MAGIC: [u8; 4] = *b"RSKR";
/// Root payload version.
pub const ROOT_VERSION: u8 = 1;
const WHAT: &str = "build root";

/// What a root object records about one package's build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildRoot {
    /// The package.
    pub package: PackageName,
    /// The namespace it was built in.
    pub namespace: Namespace,
    /// The package's metadata object.
    pub metadata_id: ObjectId,
    /// The content hashes of its source files, sorted and distinct.
    pub file_hashes: Vec<ContentHash>,
    /// The metadata ids of the upstream packages it was built against, sorted and distinct.
    pub upstream_metadata_ids: Vec<ObjectId>,
    /// Every tier key the build used, sorted by encoding and distinct.
    pub keys: Vec<CacheKey>,
}

/// Sorts and deduplicates quick-path inputs.
pub(crate) fn normalized<T: Ord + Copy>(items: &[T]) -> Vec<T> {
    items
        .iter()
        .copied()
        .collect::<BTreeSet<T>>()
        .into_iter()
        .collect()
}

impl BuildRoot {
    /// The canonical payload (inputs are sorted and deduplicated here).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&ROOT_MAGIC);
        out.push(ROOT_VERSION);
        put_str(&mut out, self.package.as_str());
        put_str(&mut out, self.namespace.as_str());
        out.extend_from_slice(self.metadata_id.as_bytes());
        let files = normalized(&self.file_hashes);
        out.extend_from_slice(&(files.len() as u32).to_le_bytes());
        for f in &files {
            out.extend_from_slice(f.as_bytes());
        }
        let upstream = normalized(&self.upstream_metadata_ids);
        out.extend_from_slice(&(upstream.len() as u32).to_le_bytes());
        for id in &upstream {
            out.extend_from_slice(id.as_bytes());
        }
        let keys: BTreeSet<&[u8]> = self.keys.iter().map(|k| k.key().encoding()).collect();
        out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
        for k in keys {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
        }
        out
    }

    /// Decodes a root object's payload and checks its links.
    ///
    /// # Errors
    /// [`Error::Malformed`] for anything but the canonical form, or when
    /// `links` does not start with the metadata id.
    pub fn decode(payload: &[u8], links: &[ObjectId]) -> Result<BuildRoot> {
        let (inputs, keys) = parse(payload, links, true)?;
        Ok(BuildRoot {
            package: inputs.package,
            namespace: inputs.namespace,
            metadata_id: inputs.metadata_id,
            file_hashes: inputs.file_hashes,
            upstream_metadata_ids: inputs.upstream_metadata_ids,
            keys,
        })
    }

    /// Decodes only what the quick path compares: everything but the key
    /// list, whose framing and order are still checked but whose keys are
    /// not decoded (a build of a few hundred keys costs a walk, not a
    /// decode of each).
    ///
    /// # Errors
    /// As [`BuildRoot::decode`], except that a key that is not a valid key
    /// of the namespace is not noticed.
    pub fn decode_inputs(payload: &[u8], links: &[ObjectId]) -> Result<RootInputs> {
        parse(payload, links, false).map(|(inputs, _)| inputs)
    }
}

/// The part of a root the quick path compares (see [`BuildRoot::decode_inputs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootInputs {
    /// The package.
    pub package: PackageName,
    /// The namespace it was built in.
    pub namespace: Namespace,
    /// The package's metadata object.
    pub metadata_id: ObjectId,
    /// The content hashes of its source files, sorted and distinct.
    pub file_hashes: Vec<ContentHash>,
    /// The metadata ids of the upstream packages it was built against, sorted and distinct.
    pub upstream_metadata_ids: Vec<ObjectId>,
}

/// Parses a root payload; the keys are decoded only when `decode_keys`.
fn parse(
    payload: &[u8],
    links: &[ObjectId],
    decode_keys: bool,
) -> Result<(RootInputs, Vec<CacheKey>)> {
    let bad = |reason: String| Error::Malformed { what: WHAT, reason };
    let mut r = Reader {
        bytes: payload,
        pos: 0,
    };
    if r.take(4).map_err(&bad)? != ROOT_MAGIC {
        return Err(bad("not a build root (bad magic)".into()));
    }
    let version = r.u8().map_err(&bad)?;
    if version != ROOT_VERSION {
        return Err(bad(format!(
            "root version {version} is not the supported version {ROOT_VERSION}; \
             rebuild the package"
        )));
    }
    let package = PackageName::new(r.str().map_err(&bad)?).map_err(|e| bad(e.to_string()))?;
    let namespace = Namespace::new(r.str().map_err(&bad)?).map_err(|e| bad(e.to_string()))?;
    let metadata_id = ObjectId::from_bytes(r.hash().map_err(&bad)?);
    let files = r.hashes().map_err(&bad)?;
    let upstream = r.hashes().map_err(&bad)?;
    let count = r.u32().map_err(&bad)?;
    let mut keys = Vec::new();
    let mut previous: Option<&[u8]> = None;
    for i in 0..count {
        let len = r.u32().map_err(&bad)? as usize;
        let encoding = r.take(len).map_err(&bad)?;
        if previous.is_some_and(|p| p >= encoding) {
            return Err(bad(format!("key {i} is out of order or repeated")));
        }
        previous = Some(encoding);
        if !decode_keys {
            continue;
        }
        let key = Key::decode(encoding).map_err(|e| bad(format!("key {i}: {e}")))?;
        if key.namespace() != &namespace {
            return Err(bad(format!("key {i} is in another namespace")));
        }
        keys.push(CacheKey::from_key(key).map_err(|e| bad(format!("key {i}: {e}")))?);
    }
    if r.pos != payload.len() {
        return Err(bad(format!(
            "{} trailing bytes after the root",
            payload.len() - r.pos
        )));
    }
    if links.first() != Some(&metadata_id) {
        return Err(bad("the first link is not the metadata object".into()));
    }
    let inputs = RootInputs {
        package,
        namespace,
        metadata_id,
        file_hashes: files.into_iter().map(ContentHash::from_bytes).collect(),
        upstream_metadata_ids: upstream.into_iter().map(ObjectId::from_bytes).collect(),
    };
    Ok((inputs, keys))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type Step<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end.and_then(|end| self.bytes.get(self.pos..end).map(|s| (s, end))) {
            Some((slice, end)) => {
                self.pos = end;
                Ok(slice)
            }
            None => Err(format!(
                "truncated: wanted {n} bytes at offset {} of {}",
                self.pos,
                self.bytes.len()
            )),
        }
    }

    fn u8(&mut self) -> Step<u8> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    fn u32(&mut self) -> Step<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn hash(&mut self) -> Step<[u8; 32]> {
        let mut b = [0u8; 32];
        b.copy_from_slice(self.take(32)?);
        Ok(b)
    }

    fn str(&mut self) -> Step<&'a str> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| "a name is not UTF-8".to_string())
    }

    /// `u32 N ‖ N × 32`, strictly increasing.
    fn hashes(&mut self) -> Step<Vec<[u8; 32]>> {
        let count = self.u32()?;
        let mut out: Vec<[u8; 32]> = Vec::new();
        for i in 0..count {
            let h = self.hash()?;
            if out.last().is_some_and(|last| *last >= h) {
                return Err(format!("hash {i} of a list is out of order or repeated"));
            }
            out.push(h);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::hasher::SemanticHash;
    use crate::compiler::keys::KeyBuilder;

    fn sample() -> (BuildRoot, Vec<ObjectId>) {
        let ns = Namespace::new("rask-1-00").unwrap();
        let keys = KeyBuilder::new(ns.clone());
        let meta = ObjectId::from_bytes([7; 32]);
        let root = BuildRoot {
            package: PackageName::new("app").unwrap(),
            namespace: ns,
            metadata_id: meta,
            file_hashes: vec![
                ContentHash::from_bytes([2; 32]),
                ContentHash::from_bytes([1; 32]),
            ],
            upstream_metadata_ids: vec![ObjectId::from_bytes([9; 32])],
            keys: vec![
                keys.function("app", "main", &SemanticHash::from_bytes([3; 32]))
                    .unwrap(),
                keys.parse(ContentHash::from_bytes([1; 32])).unwrap(),
            ],
        };
        (root, vec![meta])
    }

    #[test]
    fn roots_round_trip_in_canonical_order() {
        let (root, links) = sample();
        let bytes = root.encode();
        let back = BuildRoot::decode(&bytes, &links).unwrap();
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.file_hashes[0], ContentHash::from_bytes([1; 32]));
        assert_eq!(back.keys.len(), 2);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error_or_a_valid_root() {
        let (root, links) = sample();
        let bytes = root.encode();
        for len in 0..bytes.len() {
            assert!(
                BuildRoot::decode(&bytes[..len], &links).is_err(),
                "len {len}"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x41;
            if let Ok(r) = BuildRoot::decode(&b, &links) {
                assert_eq!(r.encode(), b, "byte {i}: decoded a non-canonical root");
            }
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(BuildRoot::decode(&trailing, &links).is_err());
        assert!(BuildRoot::decode(&bytes, &[]).is_err());
    }

    #[test]
    fn the_quick_path_decode_gives_the_same_inputs_and_refuses_the_same_framing() {
        let (root, links) = sample();
        let bytes = root.encode();
        let full = BuildRoot::decode(&bytes, &links).unwrap();
        let inputs = BuildRoot::decode_inputs(&bytes, &links).unwrap();
        assert_eq!(inputs.package, full.package);
        assert_eq!(inputs.namespace, full.namespace);
        assert_eq!(inputs.metadata_id, full.metadata_id);
        assert_eq!(inputs.file_hashes, full.file_hashes);
        assert_eq!(inputs.upstream_metadata_ids, full.upstream_metadata_ids);
        for len in 0..bytes.len() {
            assert!(
                BuildRoot::decode_inputs(&bytes[..len], &links).is_err(),
                "len {len}"
            );
        }
        assert!(BuildRoot::decode_inputs(&bytes, &[]).is_err());
    }
}
