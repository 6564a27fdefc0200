//! Core types of medchain, shared by every other crate: SHA-256 [`Hash`]es, ed25519 keys and
//! domain-separated [`Signature`]s, [`Transaction`]s, [`Block`]s with their [`Header`] and
//! [`Certificate`], [`Receipt`]s, RFC 6962 Merkle trees with inclusion proofs, and the one
//! canonical binary encoding ([`codec`]) used for everything that is hashed, signed or stored.
//!
//! This crate does no I/O and reads no clock; everything here is a pure function of its inputs.

mod block;
mod bytes;
pub mod codec;
mod crypto;
mod hash;
pub mod limits;
pub mod merkle;
mod receipt;
pub mod staking;
mod tx;

pub use block::{Block, BlockError, Certificate, Header};
pub use codec::DecodeError;
pub use crypto::{
    batch_holds, batch_verify, verify_each, Domain, PublicKey, SecretKey, Signature, SignatureError,
};
pub use hash::{sha256, Hash, Sha256Writer};
pub use merkle::{merkle_root, MerkleProof};
pub use receipt::{ChainEvent, Receipt, TxStatus};
pub use tx::{is_valid_name, serde_bytes_compat as serde_bytes, Transaction, TxError};
