//! Finality: a decided block with its precommits as certificate, its execution, the next
//! height, and equivocation evidence.

use super::*;

impl Pos {
    pub(super) fn finalize(
        &mut self,
        block: Block,
        certificate: Certificate,
        out: &mut Vec<Action>,
    ) {
        let height = block.header.height;
        if height > self.stakes.applied {
            for tx in &block.txs {
                if tx.chaincode == STAKING_CHAINCODE {
                    if let Ok(op) = codec::decode::<StakeOp>(&tx.payload) {
                        self.stakes.pending.push((tx.hash(), tx.sender, op));
                    }
                }
            }
            if let Some(seal) = Seal::of(&block.header) {
                self.stakes.accum =
                    sha256(&[self.stakes.accum.as_bytes().as_slice(), &seal.reveal.0].concat());
            }
            let len = self.cfg.epoch_length.max(1);
            if height % len == 0 {
                let epoch = epoch_of(height, len);
                let mut table = self.stakes.tables[&epoch].0.clone();
                for (tx, sender, op) in std::mem::take(&mut self.stakes.pending) {
                    if let Err(why) = table.apply(&tx, &sender, &op, &self.chain_id) {
                        *self
                            .counters
                            .entry(format!("stake_op_refused: {why}"))
                            .or_default() += 1;
                    }
                }
                // A set with no stake left could never decide again: keep the old one.
                if table.total() == 0 {
                    table = self.stakes.tables[&epoch].0.clone();
                }
                self.stakes
                    .tables
                    .insert(epoch + 1, (table, self.stakes.accum));
                self.stakes.tables.retain(|e, _| *e >= epoch);
            }
            self.stakes.applied = height;
            out.push(Action::Persist {
                key: RECORD_TABLE.to_vec(),
                value: Some(codec::encode(&self.stakes)),
            });
        }
        let convicted: BTreeSet<PublicKey> = block
            .txs
            .iter()
            .filter(|t| t.chaincode == STAKING_CHAINCODE)
            .filter_map(|t| match codec::decode::<StakeOp>(&t.payload) {
                Ok(StakeOp::Evidence(e)) => e.offender(&self.chain_id),
                _ => None,
            })
            .collect();
        self.evidence.retain(|e| {
            e.offender(&self.chain_id)
                .is_none_or(|o| !convicted.contains(&o))
        });
        self.deciding = true;
        self.decided_header = Some(block.header.clone());
        self.count("decisions");
        out.push(Action::Commit { block, certificate });
    }

    pub(super) fn on_executed(
        &mut self,
        now: Time,
        height: u64,
        root: Hash,
        out: &mut Vec<Action>,
    ) {
        if !self.deciding || height != self.height {
            return;
        }
        if let Some(h) = self.decided_header.take() {
            self.tip = h;
        }
        self.tip_root = root;
        self.height = height + 1;
        self.reset_height();
        self.synced.retain(|h, _| *h > height);
        let future = std::mem::take(&mut self.future);
        self.start_round(now, 0, out);
        for (from, wire) in future {
            self.on_wire(now, from, wire, out);
        }
        self.apply_synced(now, out);
    }

    pub(super) fn reset_height(&mut self) {
        self.round = 0;
        self.step = Step::Propose;
        self.locked = None;
        self.valid = None;
        self.proposals.clear();
        self.blocks.clear();
        self.validity.clear();
        self.votes.clear();
        self.polka_seen.clear();
        self.prevote_timer.clear();
        self.precommit_timer.clear();
        self.deciding = false;
        self.mine = VoteRecord {
            height: self.height,
            ..VoteRecord::default()
        };
    }

    pub(super) fn report(&mut self, e: Evidence) {
        let Some(offender) = e.offender(&self.chain_id) else {
            return;
        };
        if self.reported.insert(offender) {
            self.count("equivocations_detected");
            self.evidence.push(e);
        }
    }
}
