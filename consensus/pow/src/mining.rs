//! Mining: the next block's template from the mempool, a found nonce turned into a block,
//! execution results, and the hash-rate estimate.

use super::*;

impl Pow {
    pub(super) fn request_template(&mut self, out: &mut Vec<Action>) {
        if self.awaiting_txs {
            return;
        }
        self.awaiting_txs = true;
        let in_chain: usize = self
            .recent_chain(self.best)
            .iter()
            .map(|h| self.blocks[h].tx_hashes.len())
            .sum();
        out.push(Action::NeedTransactions {
            max: self.cfg.block_txs_max + in_chain,
        });
    }

    pub(super) fn on_transactions(
        &mut self,
        now: Time,
        txs: Vec<Transaction>,
        out: &mut Vec<Action>,
    ) {
        self.awaiting_txs = false;
        let chain = self.recent_chain(self.best);
        let in_chain: BTreeSet<Hash> = chain
            .iter()
            .flat_map(|h| self.blocks[h].tx_hashes.iter().copied())
            .collect();
        let mut chosen = Vec::new();
        let mut seen = BTreeSet::new();
        let mut bytes = 0;
        for tx in txs {
            if chosen.len() >= self.cfg.block_txs_max {
                break;
            }
            let h = tx.hash();
            if in_chain.contains(&h) || !seen.insert(h) {
                continue;
            }
            bytes += tx.payload.len() + 200;
            if bytes > self.cfg.block_bytes_max {
                break;
            }
            chosen.push(tx);
        }
        let parent = self.best_entry();
        if let Some(t) = &self.template {
            let same = t.block.header.parent == self.best
                && t.block.txs.len() == chosen.len()
                && t.block.txs.iter().zip(&chosen).all(|(a, b)| a == b);
            if same {
                return;
            }
        }
        let height = parent.height() + 1;
        let time_ms = now.max(parent.block.header.time_ms);
        let target = self.next_target(&self.best);
        let (state_height, state_root) = self.last_executed();
        let block = Block::build(
            height,
            self.best,
            state_height.min(height - 1),
            state_root,
            time_ms,
            self.me,
            target.0.to_vec(),
            chosen,
        );
        let header = block.header.clone();
        self.template = Some(Template {
            hash: header.hash(),
            block,
            target,
        });
        out.push(Action::StartWork { header, target });
    }

    pub(super) fn on_work_found(
        &mut self,
        now: Time,
        header_hash: Hash,
        nonce: u64,
        out: &mut Vec<Action>,
    ) {
        let Some(t) = self.template.take_if(|t| t.hash == header_hash) else {
            self.count("work_found_stale");
            return;
        };
        let mut block = t.block;
        if work_hash(&block.header, nonce) > t.target {
            self.count("work_found_invalid");
            self.request_template(out);
            return;
        }
        block.header.seal.extend_from_slice(&nonce.to_le_bytes());
        self.count("blocks_mined");
        let best = self.best;
        self.on_block(now, block, None, true, out);
        if self.best == best {
            self.request_template(out);
        }
    }

    pub(super) fn on_executed(&mut self, height: u64, state_root: Hash, out: &mut Vec<Action>) {
        self.executed.insert(height, state_root);
        while self.executed.len() > EXECUTED_WINDOW {
            self.executed.pop_first();
        }
        if self.committing == Some(height) {
            self.committing = None;
            let record = FinalRecord {
                window: self.window.clone(),
                roots: self.executed.iter().map(|(h, r)| (*h, *r)).collect(),
            };
            out.push(Action::Persist {
                key: RECORD_WINDOW.to_vec(),
                value: Some(codec::encode(&record)),
            });
            self.prune();
            self.try_finalize(out);
        }
    }

    /// Hash rate of the heaviest chain's recent blocks (expected hashes per second).
    pub(super) fn hash_rate(&self) -> f64 {
        let mut points = Vec::new();
        let mut cur = self.best;
        while let Some(e) = self.blocks.get(&cur) {
            if points.len() > self.cfg.lwma_window || e.height() == 0 {
                break;
            }
            points.push((e.block.header.time_ms, e.target));
            cur = e.parent();
        }
        for w in self.window.iter().rev() {
            if points.len() > self.cfg.lwma_window {
                break;
            }
            if w.height < self.blocks.get(&cur).map_or(u64::MAX, Entry::height) {
                points.push((w.time_ms, w.target));
            }
        }
        if points.len() < 2 {
            return 0.0;
        }
        let span_ms = points[0]
            .0
            .saturating_sub(points[points.len() - 1].0)
            .max(1);
        let total: f64 = points[..points.len() - 1]
            .iter()
            .map(|(_, t)| work(t) as f64)
            .sum();
        total / (span_ms as f64 / 1000.0)
    }
}
