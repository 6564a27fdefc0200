//! Catching up with peers: asking for blocks from a height, serving them (from memory, or
//! through the ledger), and taking what arrives.

use super::*;

impl Pow {
    pub(super) fn request_sync(&mut self, now: Time, peer: PublicKey, out: &mut Vec<Action>) {
        if peer == self.me {
            return;
        }
        if let Some(t) = self.last_sync.get(&peer) {
            if now < t + SYNC_INTERVAL_MS {
                return;
            }
        }
        self.last_sync.insert(peer, now);
        out.push(Action::Send {
            to: peer,
            msg: Wire::GetBlocks {
                from_height: self.final_height + 1,
            }
            .encode(),
        });
    }

    /// Answers `GetBlocks` from the heaviest chain in memory.
    pub(super) fn serve(&mut self, to: PublicKey, from_height: u64, out: &mut Vec<Action>) {
        let mut chain = Vec::new();
        let mut cur = self.best;
        while let Some(e) = self.blocks.get(&cur) {
            if e.height() < from_height || !e.complete {
                break;
            }
            chain.push(cur);
            if e.height() == 0 {
                break;
            }
            cur = e.parent();
        }
        chain.reverse();
        let mut blocks = Vec::new();
        let mut bytes = 0;
        for h in chain.into_iter().take(SYNC_BLOCKS_MAX) {
            let b = &self.blocks[&h].block;
            bytes += b.txs.iter().map(|t| t.payload.len() + 200).sum::<usize>() + 300;
            if !blocks.is_empty() && bytes > SYNC_BYTES_MAX {
                break;
            }
            blocks.push(b.clone());
        }
        if blocks.is_empty() {
            return;
        }
        self.count("sync_served");
        out.push(Action::Send {
            to,
            msg: Wire::Blocks(blocks).encode(),
        });
    }

    pub(super) fn on_blocks(
        &mut self,
        now: Time,
        from: PublicKey,
        blocks: Vec<Block>,
        out: &mut Vec<Action>,
    ) {
        if blocks.len() > SYNC_BLOCKS_MAX {
            self.count("rejected_sync_size");
            return;
        }
        let Some(first) = blocks.first() else {
            return;
        };
        // The peer's memory starts above what this node has: fetch final blocks from its ledger.
        if first.header.height > self.final_height + 1
            && !self.blocks.contains_key(&first.header.parent)
            && self.last_need_blocks.is_none_or(|t| now >= t + 1_000)
        {
            self.last_need_blocks = Some(now);
            self.count("ledger_sync_requests");
            out.push(Action::NeedBlocks {
                from_height: self.final_height + 1,
                peer: Some(from),
            });
        }
        for b in blocks {
            self.on_block(now, b, Some(from), false, out);
        }
    }
}
