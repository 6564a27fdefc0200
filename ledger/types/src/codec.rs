//! The canonical binary encoding: one version byte ([`ENCODING_VERSION`]) followed by the value in
//! `postcard` form. Every type that is hashed, signed or stored goes through [`encode`] and
//! [`decode`].
//!
//! Why this is canonical: postcard writes a value field by field in declaration order with no
//! padding, no field names and no optional layout, so one value has one encoding as long as the
//! types hold no `HashMap` (they use `Vec` or `BTreeMap`, whose order is determined by the value).
//! Identities are computed from values (`hash(encode(value))`), never from the bytes a peer sent,
//! so a peer cannot change an identity by re-encoding. [`decode`] rejects an unknown version,
//! truncated input and trailing bytes.
//!
//! Encoded types must not use serde features that need a self-describing format
//! (`#[serde(tag = ...)]`, `untagged`, `flatten`): postcard cannot decode them.

use serde::{de::DeserializeOwned, Serialize};

/// The version byte that opens every encoding. Bump it, and keep a decoder for the old one, when
/// a hashed or stored type changes shape.
pub const ENCODING_VERSION: u8 = 1;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes.
    #[error("empty input")]
    Empty,
    /// The version byte is not one this build understands.
    #[error("unsupported encoding version {0} (this build reads version {ENCODING_VERSION})")]
    UnsupportedVersion(u8),
    /// The bytes end early or do not describe a value of the expected type.
    #[error("malformed or truncated {what}: {reason}")]
    Malformed {
        /// The type that was being decoded.
        what: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// A complete value was read but bytes were left over.
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes {
        /// The type that was decoded.
        what: &'static str,
        /// How many bytes were left.
        count: usize,
    },
}

/// Encodes `value` canonically (version byte + postcard).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(ENCODING_VERSION);
    encode_into(value, out)
}

/// A buffer holding the version byte, with room for `capacity` bytes in all (for
/// [`encode_into`] when the caller knows about how long the encoding is).
pub fn version_prefix(capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity.max(1));
    out.push(ENCODING_VERSION);
    out
}

/// Encodes `value` canonically, appending to `out` (which should already hold the version byte
/// or whatever prefix the caller wants).
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: Vec<u8>) -> Vec<u8> {
    // Serialising our own types into a Vec cannot fail: every type here is supported by postcard
    // and memory is the only resource. A failure is a bug, so it is an invariant, not an error.
    postcard::to_extend(value, out).expect("postcard serialisation of a medchain type failed")
}

/// Decodes a value produced by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let what = short_type_name::<T>();
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != ENCODING_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| DecodeError::Malformed {
            what,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            what,
            count: rest.len(),
        });
    }
    Ok(value)
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        a: u64,
        b: Vec<u8>,
        c: String,
    }

    #[test]
    fn rejects_bad_input() {
        let s = Sample {
            a: 7,
            b: vec![1, 2, 3],
            c: "x".into(),
        };
        let bytes = encode(&s);
        assert_eq!(bytes[0], ENCODING_VERSION);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), s);
        assert_eq!(decode::<Sample>(&[]), Err(DecodeError::Empty));
        assert_eq!(
            decode::<Sample>(&[9, 0]),
            Err(DecodeError::UnsupportedVersion(9))
        );
        assert!(matches!(
            decode::<Sample>(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Malformed { what: "Sample", .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode::<Sample>(&longer),
            Err(DecodeError::TrailingBytes {
                what: "Sample",
                count: 1
            })
        );
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A length prefix claiming ~4 GiB with nothing behind it must fail fast, not allocate.
        let bytes = [ENCODING_VERSION, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode::<Sample>(&bytes).is_err());
        let bytes = [ENCODING_VERSION, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode::<Vec<u64>>(&bytes).is_err());
    }
}
