//! Object ids: 32-byte BLAKE3 digests, printed as 64 lowercase hex digits.
//!
//! An [`ObjectId`] is only ever produced by hashing (see [`crate::object`])
//! or by parsing user input; nothing else constructs one from loose bytes
//! except the decoders of on-disk formats, which validate what they read.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::str::FromStr;

use crate::error::{Error, Result};

/// Number of bytes in an object id.
pub const ID_LEN: usize = 32;
/// Number of hex digits in a printed object id.
pub const ID_HEX_LEN: usize = 64;
/// Shortest id prefix the CLI accepts.
pub const MIN_PREFIX_LEN: usize = 8;

/// The name of an object: BLAKE3 over its canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; ID_LEN]);

impl ObjectId {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> ObjectId {
        ObjectId(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The id as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 hex digits (either case).
    ///
    /// # Errors
    /// [`Error::InvalidId`] naming what is wrong with `input`.
    pub fn from_hex(input: &str) -> Result<ObjectId> {
        if input.len() != ID_HEX_LEN {
            return Err(invalid(
                input,
                format!(
                    "expected {ID_HEX_LEN} hex digits, got {} characters",
                    input.len()
                ),
            ));
        }
        let mut bytes = [0u8; ID_LEN];
        hex::decode_to_slice(input, &mut bytes)
            .map_err(|_| invalid(input, "contains a character that is not a hex digit"))?;
        Ok(ObjectId(bytes))
    }
}

/// A [`Hasher`] for sets and maps keyed by digests (object ids, key
/// hashes), which are already uniformly distributed: the first eight bytes
/// written are the hash, with no keyed mixing. Verify and gc hold every id
/// of a store in such sets, where SipHash over 32 bytes cost more than the
/// lookups themselves. Only for digests: an attacker who can name files in
/// a store could make ids collide in it, but one who can write the store can
/// already do worse.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A digest arrives as a length prefix, then its bytes.
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
    }
}

/// Builds [`DigestHasher`]s.
pub(crate) type DigestState = BuildHasherDefault<DigestHasher>;
/// A set of object ids, hashed by [`DigestHasher`].
pub(crate) type IdSet = HashSet<ObjectId, DigestState>;
/// A map from object ids, hashed by [`DigestHasher`].
pub(crate) type IdMap<V> = HashMap<ObjectId, V, DigestState>;

/// A user's way of naming an object: a full id or a unique prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdSpec {
    /// All 64 hex digits.
    Full(ObjectId),
    /// 8 to 63 lowercase hex digits, to be resolved against the store.
    Prefix(String),
}

impl FromStr for IdSpec {
    type Err = Error;

    fn from_str(input: &str) -> Result<IdSpec> {
        if input.len() == ID_HEX_LEN {
            return ObjectId::from_hex(input).map(IdSpec::Full);
        }
        if input.len() < MIN_PREFIX_LEN || input.len() > ID_HEX_LEN {
            return Err(invalid(
                input,
                format!(
                    "expected {ID_HEX_LEN} hex digits, or a unique prefix of at least \
                     {MIN_PREFIX_LEN}; got {} characters",
                    input.len()
                ),
            ));
        }
        if !input.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                input,
                "contains a character that is not a hex digit",
            ));
        }
        Ok(IdSpec::Prefix(input.to_ascii_lowercase()))
    }
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidId {
        input: input.to_string(),
        reason: reason.into(),
    }
}

impl FromStr for ObjectId {
    type Err = Error;

    fn from_str(input: &str) -> Result<ObjectId> {
        ObjectId::from_hex(input)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ID_HEX_LEN];
        // Cannot fail: the buffer is exactly twice the input length.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids that share the eight bytes the hasher looks at are still
    /// distinct members: verify and gc must never take two objects for one.
    #[test]
    fn id_sets_keep_ids_that_collide_in_the_hash_apart() {
        let mut set = IdSet::default();
        let mut map: IdMap<usize> = IdMap::default();
        for i in 0..1000u16 {
            let mut bytes = [7u8; ID_LEN];
            bytes[30..].copy_from_slice(&i.to_le_bytes());
            let id = ObjectId::from_bytes(bytes);
            assert!(set.insert(id), "id {i} taken for an earlier one");
            map.insert(id, usize::from(i));
        }
        assert_eq!(set.len(), 1000);
        let mut probe = [7u8; ID_LEN];
        probe[30..].copy_from_slice(&999u16.to_le_bytes());
        assert_eq!(map.get(&ObjectId::from_bytes(probe)), Some(&999));
        probe[30..].copy_from_slice(&1000u16.to_le_bytes());
        assert!(!set.contains(&ObjectId::from_bytes(probe)));
    }

    #[test]
    fn hex_round_trip_is_lowercase() {
        let id = ObjectId::from_bytes([0xAB; ID_LEN]);
        let text = id.to_string();
        assert_eq!(text, "ab".repeat(32));
        assert_eq!(ObjectId::from_hex(&text.to_uppercase()).unwrap(), id);
    }

    #[test]
    fn malformed_ids_are_refused_with_a_reason() {
        let err = ObjectId::from_hex("xyz").unwrap_err();
        assert!(err.to_string().contains("expected 64 hex digits"), "{err}");
        let err = ObjectId::from_hex(&"g".repeat(64)).unwrap_err();
        assert!(err.to_string().contains("not a hex digit"), "{err}");
        assert!("abcdef1".parse::<IdSpec>().is_err());
        assert_eq!(
            "ABCDEF12".parse::<IdSpec>().unwrap(),
            IdSpec::Prefix("abcdef12".into())
        );
    }
}
