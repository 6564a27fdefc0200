//! The health-record app (`medchain-ehr`). This first part is the off-chain vault: documents
//! are encrypted in chunks under a random per-document key, stored by the hash of their
//! ciphertext, and their keys are wrapped for each reader; the chain will anchor the
//! plaintext's SHA-256 and the blob address, never the contents.

pub mod vault;

pub use vault::{
    decrypt_verified, unwrap_key, wrap_key, DocKey, Stored, Vault, VaultError, WrappedKey, CHUNK,
};
pub mod chaincode;

pub use chaincode::{Ehr, EhrOp, EhrQuery, Verdict};
