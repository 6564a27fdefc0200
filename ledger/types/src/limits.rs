//! Hard bounds on what the core types accept. Every input from a peer or a client is checked
//! against these before it is kept.

/// Longest chain id, in bytes.
pub const CHAIN_ID_LEN_MAX: usize = 64;
/// Longest chaincode name, in bytes.
pub const CHAINCODE_NAME_LEN_MAX: usize = 64;
/// Largest transaction payload, in bytes. Documents never travel in transactions (only their
/// hashes do), so 1 MiB is generous.
pub const TX_PAYLOAD_MAX: usize = 1 << 20;
/// Most transactions in one block.
pub const BLOCK_TXS_MAX: usize = 50_000;
/// Largest encoded block, in bytes (the network frame limit is the same by default).
pub const BLOCK_BYTES_MAX: usize = 16 << 20;
/// Largest engine seal in a header, in bytes.
pub const SEAL_LEN_MAX: usize = 4096;
/// Largest certificate, in bytes (a quorum of signatures for a few hundred validators).
pub const CERTIFICATE_LEN_MAX: usize = 64 << 10;
