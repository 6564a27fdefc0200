//! The block tree: checking and inserting blocks, orphans waiting for their parents, the
//! heaviest chain (most cumulative work), finality at `confirmations`, invalid branches, and
//! pruning what can no longer matter.

use super::*;

impl Pow {
    /// Checks a block against everything but its parent's presence; inserts it if valid.
    pub(super) fn accept(
        &mut self,
        now: Time,
        block: Block,
        from: Option<PublicKey>,
        relay: bool,
        out: &mut Vec<Action>,
    ) -> Accepted {
        let hash = block.hash();
        if self.blocks.contains_key(&hash) || self.orphans.contains_key(&hash) {
            self.count("duplicate_blocks");
            return Accepted::Refused;
        }
        let h = &block.header;
        if h.height <= self.final_height {
            self.count("stale_blocks_received");
            return Accepted::Refused;
        }
        if self.invalid.contains(&hash) || self.invalid.contains(&h.parent) {
            // Known bad, or built on a block found bad (its false state claim, at finality).
            self.remember_invalid(hash);
            self.count("rejected_invalid_ancestry");
            return Accepted::Refused;
        }
        if !self.validators.contains(&h.proposer) {
            self.count("rejected_proposer");
            return Accepted::Refused;
        }
        let Some((target, nonce)) = parse_seal(h) else {
            self.count("rejected_seal");
            return Accepted::Refused;
        };
        // Work first: it is cheap and keeps unsealed junk out of the orphan pool.
        if target > self.cfg.max_target || work_hash(&template_of(h), nonce) > target {
            self.count("rejected_work");
            return Accepted::Refused;
        }
        let Ok(tx_hashes) = block.check_structure() else {
            self.count("rejected_structure");
            return Accepted::Refused;
        };
        let tx_bytes: usize = block.txs.iter().map(|t| t.payload.len() + 200).sum();
        if block.txs.len() > self.cfg.block_txs_max || tx_bytes > self.cfg.block_bytes_max + 200 {
            self.count("rejected_size");
            return Accepted::Refused;
        }
        let Some(parent) = self.blocks.get(&h.parent) else {
            self.add_orphan(now, hash, block, from, relay, out);
            return Accepted::Orphan;
        };
        if h.height != parent.height() + 1 {
            self.count("rejected_height");
            return Accepted::Refused;
        }
        if h.time_ms < parent.block.header.time_ms
            || h.time_ms > now + self.cfg.clock_skew_max.as_millis() as u64
        {
            self.count("rejected_time");
            return Accepted::Refused;
        }
        let parent_work = parent.work;
        if target != self.next_target(&h.parent) {
            self.count("rejected_target");
            return Accepted::Refused;
        }
        let claim_reach = h.state_height.saturating_add(CLAIM_DEPTH_MAX) >= h.height;
        match self.executed.get(&h.state_height) {
            Some(root) if claim_reach && *root == h.state_root => {}
            None if claim_reach && h.state_height > self.last_executed().0 => {} // checked before commit
            _ => {
                self.count("rejected_state");
                return Accepted::Refused;
            }
        }
        // Validity must be a function of the block and its ancestors alone, never of what a
        // node happens to hold in memory: a transaction repeated from an ancestor is therefore
        // not a reason to refuse a block (miners avoid it; the ledger records a repeat as a
        // duplicate without executing it), only a repeat inside the block is.
        let mut sorted = tx_hashes.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            self.count("rejected_duplicate_tx");
            return Accepted::Refused;
        }
        if self.verifier.verify_block(&block, &tx_hashes).is_err() {
            self.count("rejected_txs");
            return Accepted::Refused;
        }
        if relay {
            out.push(Action::Broadcast(Wire::Block(block.clone()).encode()));
        }
        self.seq += 1;
        self.blocks.insert(
            hash,
            Entry {
                block,
                complete: true,
                target,
                work: parent_work.saturating_add(work(&target)),
                seq: self.seq,
                tx_hashes,
            },
        );
        Accepted::New(hash)
    }

    pub(super) fn add_orphan(
        &mut self,
        now: Time,
        hash: Hash,
        block: Block,
        from: Option<PublicKey>,
        relay: bool,
        out: &mut Vec<Action>,
    ) {
        // Orphans are local policy (not validity): keep only those with at least a quarter of
        // the work a block on the current tip needs, within a count and a byte budget.
        let best_target = self.next_target(&self.best);
        let (target, _) = parse_seal(&block.header).expect("checked before");
        if work(&target).saturating_mul(4) < work(&best_target) {
            return self.count("rejected_orphan_work");
        }
        let size = block_bytes(&block);
        self.count("orphans_received");
        while self.orphans.len() >= self.cfg.orphans_max.max(1)
            || self.orphan_bytes + size > ORPHAN_BYTES_MAX
        {
            let Some(old) = self.orphan_order.pop_front() else {
                break;
            };
            self.forget_orphan(&old);
        }
        self.orphans_by_parent
            .entry(block.header.parent)
            .or_default()
            .push(hash);
        self.orphan_bytes += size;
        self.orphans.insert(hash, (block, relay));
        self.orphan_order.push_back(hash);
        if let Some(peer) = from {
            self.request_sync(now, peer, out);
        }
    }

    pub(super) fn forget_orphan(&mut self, hash: &Hash) {
        if let Some((b, _)) = self.orphans.remove(hash) {
            self.orphan_bytes = self.orphan_bytes.saturating_sub(block_bytes(&b));
            if let Some(v) = self.orphans_by_parent.get_mut(&b.header.parent) {
                v.retain(|h| h != hash);
                if v.is_empty() {
                    self.orphans_by_parent.remove(&b.header.parent);
                }
            }
        }
    }

    /// Offers a block and every orphan it connects; then updates the fork choice.
    pub(super) fn on_block(
        &mut self,
        now: Time,
        block: Block,
        from: Option<PublicKey>,
        relay: bool,
        out: &mut Vec<Action>,
    ) {
        let old_best = self.best;
        let mut queue = VecDeque::from([(block, relay)]);
        while let Some((block, relay)) = queue.pop_front() {
            if let Accepted::New(hash) = self.accept(now, block, from, relay, out) {
                self.count("blocks_accepted");
                let e = &self.blocks[&hash];
                let best = self.best_entry();
                if e.work > best.work {
                    self.best = hash;
                }
                for child in self.orphans_by_parent.remove(&hash).unwrap_or_default() {
                    self.orphan_order.retain(|h| *h != child);
                    if let Some((b, r)) = self.orphans.remove(&child) {
                        self.orphan_bytes = self.orphan_bytes.saturating_sub(block_bytes(&b));
                        queue.push_back((b, r));
                    }
                }
            }
        }
        if self.best != old_best {
            self.on_new_best(old_best, out);
        }
    }

    pub(super) fn on_new_best(&mut self, old_best: Hash, out: &mut Vec<Action>) {
        let old_height = self.blocks.get(&old_best).map(Entry::height);
        let extends = match old_height {
            Some(h) => {
                let mut cur = self.best;
                while self.blocks.get(&cur).is_some_and(|e| e.height() > h) {
                    cur = self.blocks[&cur].parent();
                }
                cur == old_best
            }
            None => true,
        };
        if !extends {
            self.count("reorgs");
        }
        self.request_template(out);
        self.try_finalize(out);
    }

    /// Commits the next block once it has `confirmations` blocks on it in the heaviest chain.
    pub(super) fn try_finalize(&mut self, out: &mut Vec<Action>) {
        let k = self.cfg.confirmations as usize;
        while self.committing.is_none() {
            let chain = self.chain_from(self.best);
            if chain.len() < k + 1 {
                return;
            }
            let next = chain[chain.len() - 1];
            let e = &self.blocks[&next];
            let claim_ok =
                self.executed.get(&e.block.header.state_height) == Some(&e.block.header.state_root);
            if !claim_ok {
                self.count("invalidated_state_claim");
                self.invalidate(next, out);
                continue;
            }
            let confirmations: Vec<Header> = chain[chain.len() - 1 - k..chain.len() - 1]
                .iter()
                .rev()
                .map(|h| self.blocks[h].block.header.clone())
                .collect();
            let block = e.block.clone();
            let height = block.header.height;
            self.window.push(WindowEntry {
                height,
                hash: next,
                time_ms: block.header.time_ms,
                target: e.target,
            });
            let keep = self.cfg.lwma_window + 16;
            if self.window.len() > keep {
                self.window.drain(..self.window.len() - keep);
            }
            out.push(Action::Commit {
                block,
                certificate: Certificate(codec::encode(&confirmations)),
            });
            self.final_height = height;
            self.final_hash = next;
            self.committing = Some(height);
            // Branches that do not contain the new final block are dead from now on.
            self.prune();
        }
    }

    pub(super) fn remember_invalid(&mut self, hash: Hash) {
        if self.invalid.insert(hash) {
            self.invalid_order.push_back(hash);
            while self.invalid_order.len() > INVALID_MAX {
                if let Some(old) = self.invalid_order.pop_front() {
                    self.invalid.remove(&old);
                }
            }
        }
    }

    /// Drops `root` and its descendants (a block found invalid late) and re-chooses the tip.
    pub(super) fn invalidate(&mut self, root: Hash, out: &mut Vec<Action>) {
        let mut dead = BTreeSet::from([root]);
        // Parents precede children in height order.
        let mut by_height: Vec<(u64, Hash, Hash)> = self
            .blocks
            .iter()
            .map(|(h, e)| (e.height(), *h, e.parent()))
            .collect();
        by_height.sort_unstable();
        for (_, h, parent) in by_height {
            if dead.contains(&parent) {
                dead.insert(h);
            }
        }
        for h in &dead {
            self.blocks.remove(h);
            self.remember_invalid(*h);
        }
        let old = self.best;
        if dead.contains(&old) {
            self.best = self.choose_best();
            self.on_new_best(old, out);
        }
    }

    pub(super) fn choose_best(&self) -> Hash {
        self.blocks
            .iter()
            .max_by(|a, b| a.1.work.cmp(&b.1.work).then(b.1.seq.cmp(&a.1.seq)))
            .map(|(h, _)| *h)
            .unwrap_or(self.final_hash)
    }

    /// Forgets blocks that can no longer matter: side branches below the final tip, blocks
    /// that do not descend from it, and final blocks older than the serving window.
    pub(super) fn prune(&mut self) {
        let mut keep_final = BTreeSet::new();
        let mut cur = self.final_hash;
        for _ in 0..=SERVE_FINAL {
            keep_final.insert(cur);
            match self.blocks.get(&cur) {
                Some(e) if e.height() > 0 => cur = e.parent(),
                _ => break,
            }
        }
        let mut descends: BTreeMap<Hash, bool> = BTreeMap::new();
        let mut by_height: Vec<(u64, Hash, Hash)> = self
            .blocks
            .iter()
            .filter(|(_, e)| e.height() > self.final_height)
            .map(|(h, e)| (e.height(), *h, e.parent()))
            .collect();
        by_height.sort_unstable();
        for (_, h, parent) in by_height {
            let ok = parent == self.final_hash || descends.get(&parent).copied().unwrap_or(false);
            descends.insert(h, ok);
        }
        let final_height = self.final_height;
        self.blocks.retain(|h, e| {
            if e.height() <= final_height {
                keep_final.contains(h)
            } else {
                descends.get(h).copied().unwrap_or(false)
            }
        });
        if !self.blocks.contains_key(&self.best) {
            // Cannot happen (the final block is chosen on the best chain); stay safe anyway.
            self.best = self.choose_best();
        }
        let stale: Vec<Hash> = self
            .orphans
            .iter()
            .filter(|(_, (b, _))| b.header.height <= final_height)
            .map(|(h, _)| *h)
            .collect();
        for h in stale {
            self.forget_orphan(&h);
            self.orphan_order.retain(|o| *o != h);
        }
    }
}
