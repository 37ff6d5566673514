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
        let digits = input.as_bytes();
        decode_hex(&digits[..2], &digits[2..], &HEX_EITHER_CASE)
            .ok_or_else(|| invalid(input, "contains a character that is not a hex digit"))
    }

    /// The id an object file is named by: `fanout` (2 digits) and `rest`
    /// (62), lowercase only, as the store writes them. `None` for anything
    /// else. Runs once per file when verify or gc lists a directory, so it
    /// neither allocates nor goes through `str`.
    pub(crate) fn from_object_name(fanout: &[u8], rest: &[u8]) -> Option<ObjectId> {
        if fanout.len() != 2 || rest.len() != ID_HEX_LEN - 2 {
            return None;
        }
        decode_hex(fanout, rest, &HEX_LOWER)
    }
}

/// Digit values by byte; [`NOT_HEX`] for anything that is not a digit.
type HexTable = [u8; 256];
const NOT_HEX: u8 = 0xff;
static HEX_LOWER: HexTable = hex_table(false);
static HEX_EITHER_CASE: HexTable = hex_table(true);

const fn hex_table(upper_too: bool) -> HexTable {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        if upper_too {
            table[b"0123456789ABCDEF"[i] as usize] = i as u8;
        }
        i += 1;
    }
    table
}

/// Decodes 64 hex digits given as `head` followed by `tail`.
fn decode_hex(head: &[u8], tail: &[u8], table: &HexTable) -> Option<ObjectId> {
    debug_assert_eq!(head.len() + tail.len(), ID_HEX_LEN);
    let mut bytes = [0u8; ID_LEN];
    let mut bad = 0u8;
    let mut pairs = head.chunks_exact(2).chain(tail.chunks_exact(2));
    for byte in &mut bytes {
        let pair = pairs.next()?;
        let (hi, lo) = (table[usize::from(pair[0])], table[usize::from(pair[1])]);
        // Every valid digit is below 16: one test after the loop.
        bad |= hi | lo;
        *byte = (hi << 4) | (lo & 0x0f);
    }
    (bad < 16).then_some(ObjectId(bytes))
}

/// A [`Hasher`] for sets and maps keyed by digests (object ids, key
/// hashes), which are already uniformly distributed: the first eight bytes
/// written, spread by one multiply so that every bit of them reaches the
/// low bits the table indexes by (ids of one fanout directory share their
/// first byte), with no keyed mixing. Verify and gc hold every id
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
        let x = u128::from(self.0.rotate_left(29) ^ u64::from_le_bytes(word))
            * 0x9e37_79b9_7f4a_7c15_u128;
        self.0 = (x as u64) ^ ((x >> 64) as u64);
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

    /// Every byte value decodes back from its digits; any one character
    /// that is not a digit, at any position, is refused.
    #[test]
    fn hex_decoding_takes_every_digit_and_refuses_everything_else() {
        for start in 0..8u8 {
            let bytes: [u8; ID_LEN] = std::array::from_fn(|i| (i as u8).wrapping_mul(8) + start);
            let id = ObjectId::from_bytes(bytes);
            let text = id.to_hex();
            assert_eq!(ObjectId::from_hex(&text).unwrap(), id);
            assert_eq!(ObjectId::from_hex(&text.to_uppercase()).unwrap(), id);
            let digits = text.as_bytes();
            assert_eq!(
                ObjectId::from_object_name(&digits[..2], &digits[2..]),
                Some(id)
            );
        }
        let good = "0123456789abcdef".repeat(4);
        for pos in 0..ID_HEX_LEN {
            for bad in ["g", "G", " ", "/", ":", "@", "`", "\u{ff}"] {
                let text = format!("{}{bad}{}", &good[..pos], &good[pos + 1..]);
                if bad.len() == 1 {
                    assert!(ObjectId::from_hex(&text).is_err(), "{text:?} was taken");
                }
                let digits = text.as_bytes();
                assert_eq!(ObjectId::from_object_name(&digits[..2], &digits[2..]), None);
            }
        }
        // Object files are named in lowercase only.
        let upper = good.to_uppercase();
        assert_eq!(
            ObjectId::from_object_name(&upper.as_bytes()[..2], &upper.as_bytes()[2..]),
            None
        );
        assert_eq!(
            ObjectId::from_object_name(b"01", &good.as_bytes()[3..]),
            None
        );
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
