//! Built-in chaincodes used by tests and benchmarks: `noop` (BlockBench's DoNothing: measures
//! consensus and ledger cost alone) and `kv` (YCSB-style put / get / delete).

use crate::{Chaincode, ChaincodeError, StateView, Stub};
use medchain_types::codec;
use serde::{Deserialize, Serialize};

/// Does nothing and succeeds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Noop;

impl Chaincode for Noop {
    fn name(&self) -> &str {
        "noop"
    }

    fn execute(&self, _stub: &mut dyn Stub, _payload: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        Ok(Vec::new())
    }

    fn query(&self, _view: &dyn StateView, _request: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        Ok(Vec::new())
    }
}

/// A `kv` transaction payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// Store `value` at `key`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key`; fails if it is absent.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// A `kv` query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    /// The value at `key`; the response is an encoded `Option<Vec<u8>>`.
    Get {
        /// The key.
        key: Vec<u8>,
    },
}

/// A key-value store with put, get and delete.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kv;

impl Kv {
    /// Encodes a transaction payload.
    pub fn payload(op: &KvOp) -> Vec<u8> {
        codec::encode(op)
    }

    /// Encodes a query.
    pub fn request(q: &KvQuery) -> Vec<u8> {
        codec::encode(q)
    }

    /// Decodes a `Get` response.
    pub fn decode_get(response: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError> {
        codec::decode(response).map_err(|e| ChaincodeError::BadRequest(e.to_string()))
    }
}

impl Chaincode for Kv {
    fn name(&self) -> &str {
        "kv"
    }

    fn execute(&self, stub: &mut dyn Stub, payload: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        let op: KvOp =
            codec::decode(payload).map_err(|e| ChaincodeError::BadRequest(e.to_string()))?;
        match op {
            KvOp::Put { key, value } => {
                stub.put(&key, &value)?;
                stub.emit("put", &key)?;
            }
            KvOp::Delete { key } => {
                if stub.get(&key)?.is_none() {
                    return Err(ChaincodeError::NotFound(format!(
                        "key {} is not set",
                        String::from_utf8_lossy(&key)
                    )));
                }
                stub.delete(&key)?;
                stub.emit("delete", &key)?;
            }
        }
        Ok(Vec::new())
    }

    fn query(&self, view: &dyn StateView, request: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        let q: KvQuery =
            codec::decode(request).map_err(|e| ChaincodeError::BadRequest(e.to_string()))?;
        match q {
            KvQuery::Get { key } => Ok(codec::encode(&view.get(&key)?)),
        }
    }
}

/// `staking`: the record of proof-of-stake operations (stake, unstake, equivocation evidence).
///
/// The proof-of-stake engine keeps the authoritative stake table: it applies the operations of
/// final blocks with [`StakeTable::apply`](medchain_types::staking::StakeTable::apply) at epoch
/// boundaries. This chaincode refuses malformed operations and keeps each one in state under
/// `op/<height>/<tx hash>`, so that operations can be audited with their receipts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Staking;

impl Chaincode for Staking {
    fn name(&self) -> &str {
        medchain_types::staking::STAKING_CHAINCODE
    }

    fn execute(&self, stub: &mut dyn Stub, payload: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        let op: medchain_types::staking::StakeOp =
            codec::decode(payload).map_err(|e| ChaincodeError::BadRequest(e.to_string()))?;
        let kind = match &op {
            medchain_types::staking::StakeOp::Stake { .. } => "stake",
            medchain_types::staking::StakeOp::Unstake { .. } => "unstake",
            medchain_types::staking::StakeOp::Evidence(_) => "evidence",
        };
        let key = format!("op/{:020}/{}", stub.height(), stub.tx_hash());
        stub.put(key.as_bytes(), payload)?;
        let caller = *stub.caller();
        stub.emit(kind, caller.as_bytes())?;
        Ok(Vec::new())
    }

    fn query(&self, _view: &dyn StateView, _request: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        Err(ChaincodeError::BadRequest(
            "staking has no queries; read the engine status (stakes) instead".into(),
        ))
    }
}
