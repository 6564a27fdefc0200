//! The health-record app's core (`medchain-ehr`): the `ehr` chaincode (roles, grants, cases,
//! document anchors, share links, audit, erasure), the off-chain vault (documents encrypted in
//! chunks under a random per-document key, stored by the hash of their ciphertext, keys
//! wrapped for each reader; free text sealed for its readers; the chain anchors the plaintext's SHA-256 and the blob address,
//! never the contents) and the names of vault records. No async runtime, no HTTP: the node
//! side and the CLI (`medchain-ehr-node`) build on it.

pub mod vault;

pub mod chaincode;
pub mod direct;
pub mod keywrap;
pub mod note;
pub mod records;

pub use keywrap::{unwrap_key, wrap_key, WrappedKey};
pub use note::SealedNote;
pub use vault::{decrypt_chunks, encrypt, DocKey, Stored, Vault, VaultError, CHUNK};

pub use chaincode::{Ehr, EhrOp, EhrQuery, Verdict};
