//! Serializing a compiler's own artifacts (parsed ASTs, monomorphized
//! instances, comptime values) into the opaque payload bytes the store
//! keeps, with serde and CBOR (RFC 8949, via `ciborium`).
//!
//! The store never interprets these bytes; this module owns no on-disk
//! format beyond "one CBOR data item, nothing after it". Failures are
//! [`Error::Encode`] and [`Error::Malformed`]; nothing here panics on bad
//! input, and nesting deeper than ciborium's recursion limit is refused
//! rather than overflowing the stack.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

const WHAT: &str = "CBOR artifact";

/// Serializes `value` to CBOR.
///
/// # Errors
/// [`Error::Encode`] when `value`'s `Serialize` implementation fails.
pub fn to_cbor<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| Error::Encode {
        what: WHAT,
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Deserializes one CBOR data item that makes up all of `bytes`.
///
/// # Errors
/// [`Error::Malformed`] when the bytes are not valid CBOR, do not match
/// `T`, or continue after the data item. A compiler treats this as a cache
/// miss and rebuilds the artifact.
pub fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut rest = bytes;
    let value = ciborium::from_reader(&mut rest).map_err(|e| Error::Malformed {
        what: WHAT,
        reason: describe(e),
    })?;
    if !rest.is_empty() {
        return Err(Error::Malformed {
            what: WHAT,
            reason: format!("{} trailing bytes after the data item", rest.len()),
        });
    }
    Ok(value)
}

fn describe(e: ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error as De;
    match e {
        De::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the bytes end in the middle of a data item (truncated, or a length that runs past \
             the end)"
                .into()
        }
        De::Io(e) => format!("read failed: {e}"),
        De::Syntax(offset) => format!("invalid CBOR at byte offset {offset}"),
        De::Semantic(Some(offset), msg) => format!("at byte offset {offset}: {msg}"),
        De::Semantic(None, msg) => msg,
        De::RecursionLimitExceeded => "nested too deeply".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Expr {
        Int(i64),
        Call { callee: String, args: Vec<Expr> },
    }

    #[test]
    fn round_trip_and_refusals() {
        let ast = Expr::Call {
            callee: "swap".into(),
            args: vec![Expr::Int(1), Expr::Int(2)],
        };
        let bytes = to_cbor(&ast).unwrap();
        assert_eq!(from_cbor::<Expr>(&bytes).unwrap(), ast);

        let mut extended = bytes.clone();
        extended.push(0);
        let err = from_cbor::<Expr>(&extended).unwrap_err();
        assert!(err.to_string().contains("1 trailing bytes"), "{err}");
        for len in 0..bytes.len() {
            assert!(from_cbor::<Expr>(&bytes[..len]).is_err(), "len {len}");
        }
        assert!(matches!(
            from_cbor::<Expr>(&[0xff, 0xff]),
            Err(Error::Malformed { .. })
        ));
        // Deeply nested arrays are refused, not a stack overflow.
        let deep = vec![0x81u8; 100_000];
        let err = from_cbor::<ciborium::Value>(&deep).unwrap_err();
        assert!(err.to_string().contains("nested too deeply"), "{err}");
        // Lengths claiming far more than the input holds are refused
        // without allocating them: a byte string, a text string, an array.
        for major in [0x5bu8, 0x7b, 0x9b] {
            let mut claim = vec![major];
            claim.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
            claim.extend_from_slice(b"abc");
            let err = from_cbor::<ciborium::Value>(&claim).unwrap_err();
            assert!(err.to_string().contains("truncated"), "{major:#x}: {err}");
        }
        let err = from_cbor::<Expr>(&to_cbor(&42u8).unwrap()).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
    }
}
