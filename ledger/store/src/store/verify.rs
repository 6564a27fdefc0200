//! [`Ledger::verify_chain`]: the whole chain checked from genesis, read-only.

use super::*;

/// What [`Ledger::verify_chain`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blocks checked (tip height + 1, or 0 for an empty ledger).
    pub blocks: u64,
    /// Transactions checked.
    pub txs: u64,
    /// The tip, if any block exists.
    pub tip: Option<Tip>,
}

impl Ledger {
    /// Walks every block from genesis and checks the hash links, heights, transaction roots,
    /// indexes, receipts and state roots, and that the tip is the last block. `progress` is
    /// called with `(checked, total)` every 1,000 blocks and at the end.
    pub fn verify_chain(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<VerifyReport, LedgerError> {
        let tip = self.tip();
        let total = tip.map_or(0, |t| t.height + 1);
        let mut prev_hash = Hash::ZERO;
        let mut prev_root = Hash::ZERO;
        let mut txs = 0u64;
        for height in 0..total {
            let corrupt = |what: String| LedgerError::Corrupt { height, what };
            let bytes = self
                .block_bytes(height)?
                .ok_or_else(|| corrupt("block is missing".into()))?;
            let block = Block::decode(&bytes).map_err(|e| corrupt(format!("block: {e}")))?;
            let tx_hashes = block.tx_hashes();
            let h = &block.header;
            if h.height != height {
                return Err(corrupt(format!("block records height {}", h.height)));
            }
            if h.parent != prev_hash {
                return Err(corrupt(format!(
                    "parent is {}, previous block is {prev_hash}",
                    h.parent
                )));
            }
            let hash = h.hash();
            if self.height_of(&hash)? != Some(height) {
                return Err(corrupt("block hash index does not point here".into()));
            }
            self.certificate(height)?
                .ok_or_else(|| corrupt("certificate is missing".into()))?;
            let writes: WriteSet = match self.db.get_cf(self.cf(CF_DIFFS), be_u64(height))? {
                Some(b) => Self::decode_at(height, "write set", &b)?,
                None => return Err(corrupt("write set is missing".into())),
            };
            let root = next_state_root(&prev_root, height, &writes);
            if self.state_root_at(height)? != Some(root) {
                return Err(corrupt(
                    "stored state root differs from the one recomputed from the writes".into(),
                ));
            }
            self.check_state_claim(h)
                .map_err(|e| corrupt(e.to_string()))?;
            let receipts = self
                .receipts(height)?
                .ok_or_else(|| corrupt("receipts are missing".into()))?;
            if receipts.len() != tx_hashes.len() {
                return Err(corrupt(format!(
                    "{} receipts for {} transactions",
                    receipts.len(),
                    tx_hashes.len()
                )));
            }
            for (i, (tx_hash, receipt)) in tx_hashes.iter().zip(&receipts).enumerate() {
                let index = i as u32;
                if receipt.tx_hash != *tx_hash || receipt.height != height || receipt.index != index
                {
                    return Err(corrupt(format!(
                        "receipt {i} describes another transaction"
                    )));
                }
                match self.tx_position(tx_hash)? {
                    Some(pos) if pos == (height, index) => {}
                    Some(pos) if receipt.status == TxStatus::Duplicate && pos < (height, index) => {
                    }
                    other => {
                        return Err(corrupt(format!(
                            "tx index for transaction {i} is {other:?}"
                        )))
                    }
                }
            }
            txs += tx_hashes.len() as u64;
            prev_hash = hash;
            prev_root = root;
            if (height + 1) % 1000 == 0 {
                progress(height + 1, total);
            }
        }
        if let Some(t) = tip {
            if t.hash != prev_hash || t.state_root != prev_root {
                return Err(LedgerError::Corrupt {
                    height: t.height,
                    what: "tip record does not match the last block".into(),
                });
            }
        }
        // Above the tip, only a candidate for the next height may be stored.
        if let Some(bytes) = self.block_bytes(total)? {
            let corrupt = |what: String| LedgerError::Corrupt {
                height: total,
                what,
            };
            let block = Block::decode(&bytes)
                .map_err(|e| corrupt(format!("candidate block above the tip: {e}")))?;
            if block.header.height != total || block.header.parent != prev_hash {
                return Err(corrupt(format!(
                    "the block above the tip is not a candidate for height {total}: it records \
                     height {} and parent {}",
                    block.header.height, block.header.parent
                )));
            }
        }
        if self
            .db
            .get_cf(self.cf(CF_BLOCKS), be_u64(total + 1))?
            .is_some()
        {
            return Err(LedgerError::Corrupt {
                height: total + 1,
                what: "a block exists above the tip and its candidate".into(),
            });
        }
        progress(total, total);
        Ok(VerifyReport {
            blocks: total,
            txs,
            tip,
        })
    }
}
