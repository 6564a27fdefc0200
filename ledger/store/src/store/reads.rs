//! Reads of the ledger: blocks (from the block files or the `blocks` column, checked), headers,
//! certificates, receipts, transactions with their inclusion proofs, the transaction index, and
//! the world state (a chaincode's namespace as a [`NamespaceView`]).

use super::*;
use crate::error::storage_error;

impl Ledger {
    pub(super) fn decode_at<T: serde::de::DeserializeOwned>(
        height: u64,
        what: &str,
        bytes: &[u8],
    ) -> Result<T, LedgerError> {
        codec::decode(bytes).map_err(|e| LedgerError::Corrupt {
            height,
            what: format!("{what}: {e}"),
        })
    }

    /// The block at `height`, if it is final (at or below the tip).
    pub fn block(&self, height: u64) -> Result<Option<Block>, LedgerError> {
        if height >= self.next_height() {
            return Ok(None);
        }
        self.block_at(height)
    }

    /// What the `blocks` column holds at `height`: a final block, or above the tip a candidate.
    pub(super) fn block_at(&self, height: u64) -> Result<Option<Block>, LedgerError> {
        match self.block_bytes(height)? {
            None => Ok(None),
            Some(b) => Ok(Some(Self::decode_at(height, "block", &b)?)),
        }
    }

    /// The encoding of the block the `blocks` column holds at `height`: its value in format 1,
    /// the record its value points at in format 2.
    pub(super) fn block_bytes(&self, height: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        let Some(value) = self.db.get_cf(self.cf(CF_BLOCKS), be_u64(height))? else {
            return Ok(None);
        };
        let Some(files) = &self.block_files else {
            return Ok(Some(value));
        };
        let loc = Self::location(height, &value)?;
        files.read(height, &loc).map(Some)
    }

    pub(super) fn location(height: u64, value: &[u8]) -> Result<Location, LedgerError> {
        Location::decode(value).ok_or_else(|| LedgerError::Corrupt {
            height,
            what: format!(
                "block location: {} bytes that are not a location in the block files",
                value.len()
            ),
        })
    }

    /// The header of the block at `height`.
    pub fn header(&self, height: u64) -> Result<Option<Header>, LedgerError> {
        Ok(self.block(height)?.map(|b| b.header))
    }

    /// The height of the block with this hash.
    pub fn height_of(&self, hash: &Hash) -> Result<Option<u64>, LedgerError> {
        match self.db.get_cf(self.cf(CF_BLOCK_HASHES), hash.as_bytes())? {
            None => Ok(None),
            Some(b) => Ok(Some(u64::from_be_bytes(b.as_slice().try_into().map_err(
                |_| LedgerError::Corrupt {
                    height: 0,
                    what: format!("hash index entry for {hash}"),
                },
            )?))),
        }
    }

    /// The block with this hash.
    pub fn block_by_hash(&self, hash: &Hash) -> Result<Option<Block>, LedgerError> {
        match self.height_of(hash)? {
            None => Ok(None),
            Some(h) => self.block(h),
        }
    }

    /// The last committed block.
    pub fn latest_block(&self) -> Result<Option<Block>, LedgerError> {
        match self.tip() {
            None => Ok(None),
            Some(t) => self.block(t.height),
        }
    }

    /// The finality certificate of the block at `height`.
    pub fn certificate(&self, height: u64) -> Result<Option<Certificate>, LedgerError> {
        match self.db.get_cf(self.cf(CF_CERTS), be_u64(height))? {
            None => Ok(None),
            Some(b) => Ok(Some(Self::decode_at(height, "certificate", &b)?)),
        }
    }

    /// The receipts of the block at `height`, in transaction order.
    pub fn receipts(&self, height: u64) -> Result<Option<Vec<Receipt>>, LedgerError> {
        match self.db.get_cf(self.cf(CF_RECEIPTS), be_u64(height))? {
            None => Ok(None),
            Some(b) => Ok(Some(Self::decode_at(height, "receipts", &b)?)),
        }
    }

    /// The receipt of the transaction at `(height, index)`.
    pub fn receipt_at(&self, height: u64, index: u32) -> Result<Option<Receipt>, LedgerError> {
        Ok(self.receipts(height)?.and_then(|mut r| {
            let i = index as usize;
            (i < r.len()).then(|| r.swap_remove(i))
        }))
    }

    /// Where a transaction was first executed.
    pub fn tx_position(&self, tx_hash: &Hash) -> Result<Option<(u64, u32)>, LedgerError> {
        if let Some(position) = self.tx_index.get(tx_hash) {
            return Ok(Some(position));
        }
        match self.db.get_cf(self.cf(CF_TX_INDEX), tx_hash.as_bytes())? {
            None => Ok(None),
            Some(b) => parse_position(&b)
                .map(Some)
                .ok_or_else(|| LedgerError::Corrupt {
                    height: 0,
                    what: format!("tx index entry for {tx_hash}"),
                }),
        }
    }

    /// Which of `tx_hashes` were executed already, in one batched index read (RocksDB
    /// MultiGet: about one lookup's cost per key less than [`Ledger::tx_position`] one by one).
    pub fn txs_known(&self, tx_hashes: &[Hash]) -> Result<Vec<bool>, LedgerError> {
        let mut known = self.tx_index.known(tx_hashes);
        let (missed, asked): (Vec<usize>, Vec<&[u8]>) = known
            .iter()
            .zip(tx_hashes)
            .enumerate()
            .filter(|(_, (k, _))| !**k)
            .map(|(i, (_, h))| (i, &h.as_bytes()[..]))
            .unzip();
        if asked.is_empty() {
            return Ok(known);
        }
        let found = self
            .db
            .batched_multi_get_cf(self.cf(CF_TX_INDEX), asked, false);
        for (i, r) in missed.into_iter().zip(found) {
            known[i] = r?.is_some();
        }
        Ok(known)
    }

    /// The receipt of a committed transaction (reads the index and that block's receipts only).
    pub fn receipt(&self, tx_hash: &Hash) -> Result<Option<Receipt>, LedgerError> {
        let Some((height, index)) = self.tx_position(tx_hash)? else {
            return Ok(None);
        };
        self.receipt_at(height, index)?
            .map(Some)
            .ok_or_else(|| LedgerError::Corrupt {
                height,
                what: format!("receipt of indexed transaction {tx_hash} is missing"),
            })
    }

    /// A committed transaction with its receipt, header, inclusion proof and certificate.
    pub fn transaction(&self, tx_hash: &Hash) -> Result<Option<TxRecord>, LedgerError> {
        let Some((height, index)) = self.tx_position(tx_hash)? else {
            return Ok(None);
        };
        let corrupt = |what: &str| LedgerError::Corrupt {
            height,
            what: what.to_owned(),
        };
        let block = self
            .block(height)?
            .ok_or_else(|| corrupt("indexed block is missing"))?;
        let hashes = block.tx_hashes();
        let proof = MerkleProof::build(&hashes, index as usize)
            .ok_or_else(|| corrupt("indexed position is past the block's end"))?;
        if hashes[index as usize] != *tx_hash {
            return Err(corrupt("tx index points at another transaction"));
        }
        let receipt = self
            .receipt_at(height, index)?
            .ok_or_else(|| corrupt("receipt is missing"))?;
        let certificate = self.certificate(height)?.unwrap_or_default();
        let Block { header, mut txs } = block;
        Ok(Some(TxRecord {
            tx: txs.swap_remove(index as usize),
            receipt,
            header,
            proof,
            certificate,
        }))
    }

    /// The value of a full state key.
    pub fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.db.get_cf(self.cf(CF_STATE), key)?)
    }

    /// Up to `limit` state entries whose full key starts with `prefix`, after `start_after`.
    pub fn state_scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, LedgerError> {
        let from = start_after.unwrap_or(prefix);
        let iter = self.db.iterator_cf(
            self.cf(CF_STATE),
            IteratorMode::From(from, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            if Some(&*k) == start_after {
                continue;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// As [`Ledger::state_scan`], in descending key order, starting before `start_before`.
    pub fn state_scan_back(
        &self,
        prefix: &[u8],
        start_before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, LedgerError> {
        // From the last key at or before the start: `start_before` itself, or the prefix's
        // successor (the smallest key after every key with the prefix), or the very end.
        let successor = prefix_successor(prefix);
        let mode = match (start_before, &successor) {
            (Some(s), _) => IteratorMode::From(s, rocksdb::Direction::Reverse),
            (None, Some(next)) => IteratorMode::From(next, rocksdb::Direction::Reverse),
            (None, None) => IteratorMode::End,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_STATE), mode) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if Some(&*k) == start_before || Some(&*k) == successor.as_deref() {
                continue;
            }
            if !k.starts_with(prefix) {
                if &*k > prefix {
                    continue; // past the prefix's range, above it
                }
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    /// A read-only view of one chaincode's namespace at the tip.
    pub fn view<'a>(&'a self, namespace: &str) -> NamespaceView<'a> {
        NamespaceView {
            ledger: self,
            prefix: state_key(namespace, b""),
        }
    }
}

/// The smallest key greater than every key that starts with `prefix` (`None` if every byte of
/// `prefix` is 0xFF: no key is greater).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// One chaincode's namespace, read-only, at the ledger's tip.
#[derive(Debug)]
pub struct NamespaceView<'a> {
    ledger: &'a Ledger,
    prefix: Vec<u8>,
}

impl StateView for NamespaceView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError> {
        let mut full = self.prefix.clone();
        full.extend_from_slice(key);
        self.ledger.state_get(&full).map_err(storage_error)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let full_prefix = [self.prefix.as_slice(), prefix].concat();
        let full_start = start_after.map(|s| [self.prefix.as_slice(), s].concat());
        let rows = self
            .ledger
            .state_scan(
                &full_prefix,
                full_start.as_deref(),
                limit.min(SCAN_LIMIT_MAX),
            )
            .map_err(storage_error)?;
        let n = self.prefix.len();
        Ok(rows
            .into_iter()
            .map(|(k, v)| (k[n..].to_vec(), v))
            .collect())
    }

    fn scan_back(
        &self,
        prefix: &[u8],
        start_before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let full_prefix = [self.prefix.as_slice(), prefix].concat();
        let full_start = start_before.map(|s| [self.prefix.as_slice(), s].concat());
        let rows = self
            .ledger
            .state_scan_back(
                &full_prefix,
                full_start.as_deref(),
                limit.min(SCAN_LIMIT_MAX),
            )
            .map_err(storage_error)?;
        let n = self.prefix.len();
        Ok(rows
            .into_iter()
            .map(|(k, v)| (k[n..].to_vec(), v))
            .collect())
    }
}
