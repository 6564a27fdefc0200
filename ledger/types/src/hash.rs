//! SHA-256 hashes. `sha2` picks the SHA-NI code path at run time when the CPU has it.

use sha2::{Digest, Sha256};

crate::bytes::fixed_bytes!(
    /// A SHA-256 digest.
    Hash,
    32
);

impl Hash {
    /// All zeroes: the parent of the genesis block and the state root before any block.
    pub const ZERO: Hash = Hash([0; 32]);
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    Hash(Sha256::digest(data).into())
}

/// Incremental SHA-256, also usable as an `std::io::Write` sink for streaming large files.
#[derive(Clone, Default)]
pub struct Sha256Writer(Sha256);

impl std::fmt::Debug for Sha256Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256Writer")
    }
}

impl Sha256Writer {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) -> &mut Self {
        self.0.update(data);
        self
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Hash {
        Hash(self.0.finalize().into())
    }
}

impl std::io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // FIPS 180-2 "abc" and the empty string.
        assert_eq!(
            sha256(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut w = Sha256Writer::new();
        w.update(b"a").update(b"bc");
        assert_eq!(w.finish(), sha256(b"abc"));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = sha256(b"x");
        assert_eq!(h.to_string().parse::<Hash>().unwrap(), h);
        assert!("abc".parse::<Hash>().unwrap_err().contains("expected 64"));
        assert!("zz"
            .repeat(32)
            .parse::<Hash>()
            .unwrap_err()
            .contains("invalid hex"));
    }
}
