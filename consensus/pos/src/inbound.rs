//! What other validators send: proposals, votes, and final blocks for a validator that is
//! behind.

use super::*;

impl Pos {
    pub(super) fn ask_blocks(&mut self, now: Time, peer: PublicKey, out: &mut Vec<Action>) {
        if self.last_sync.is_some_and(|t| now < t + SYNC_INTERVAL_MS) {
            return;
        }
        self.last_sync = Some(now);
        self.count("sync_requests");
        out.push(Action::NeedBlocks {
            from_height: self.height,
            peer: Some(peer),
        });
    }

    pub(super) fn on_wire(
        &mut self,
        now: Time,
        from: PublicKey,
        wire: Wire,
        out: &mut Vec<Action>,
    ) {
        let height = match &wire {
            Wire::Proposal { proposal, .. } => proposal.body.height,
            Wire::Vote(v) => v.body.height,
        };
        if height < self.height {
            return;
        }
        let round = match &wire {
            Wire::Proposal { proposal, .. } => proposal.body.round,
            Wire::Vote(v) => v.body.round,
        };
        if round > self.round.saturating_add(ROUND_AHEAD_MAX) {
            // Memory per height stays bounded; an honest validator is never this far ahead.
            return self.count("rejected_round_too_far");
        }
        if height > self.height || self.deciding {
            if height == self.height + 1 && self.future.len() < FUTURE_MAX {
                self.future.push((from, wire));
            }
            // Others decided heights this validator has not: fetch them with certificates.
            if height > self.height + 1 || (height == self.height + 1 && !self.deciding) {
                self.ask_blocks(now, from, out);
            }
            return;
        }
        match wire {
            Wire::Proposal { proposal, block } => self.on_proposal(now, proposal, *block, out),
            Wire::Vote(v) => self.on_vote(now, v, out),
        }
    }

    pub(super) fn on_proposal(
        &mut self,
        now: Time,
        proposal: SignedProposal,
        block: Block,
        out: &mut Vec<Action>,
    ) {
        let r = proposal.body.round;
        if proposal.proposer != self.proposer(self.height, r)
            || block.hash() != proposal.body.block
            || !proposal.verify(&self.chain_id)
        {
            return self.count("rejected_proposal");
        }
        if let Some(prev) = self.proposals.get(&r) {
            if prev.body.block != proposal.body.block {
                let e = Evidence::DoubleProposal(prev.clone(), proposal);
                self.report(e);
            }
            return;
        }
        self.blocks.insert(proposal.body.block, block);
        self.proposals.insert(r, proposal);
        self.progress(now, out);
    }

    pub(super) fn on_vote(&mut self, now: Time, v: SignedVote, out: &mut Vec<Action>) {
        if self.current_table().power(&v.validator) == 0 || !v.verify(&self.chain_id) {
            return self.count("rejected_vote");
        }
        let slot = self.votes.entry((v.body.round, v.body.kind)).or_default();
        if let Some(prev) = slot.get(&v.validator) {
            if prev.body.value != v.body.value {
                let e = Evidence::DoubleVote(prev.clone(), v);
                self.report(e);
            }
            return;
        }
        slot.insert(v.validator, v);
        self.progress(now, out);
    }

    pub(super) fn on_synced(
        &mut self,
        now: Time,
        block: Block,
        certificate: Certificate,
        out: &mut Vec<Action>,
    ) {
        let h = block.header.height;
        if h < self.height || (h == self.height && self.deciding) {
            return;
        }
        if self.synced.len() >= SYNCED_MAX {
            // Keep the lowest heights: they are needed first (junk far ahead cannot crowd
            // out the block this validator is waiting for).
            match self.synced.last_key_value() {
                Some((top, _)) if *top > h => {
                    let top = *top;
                    self.synced.remove(&top);
                }
                _ => return,
            }
        }
        // A second copy for one height replaces the first only if the first fails its checks
        // (apply_synced removes what it refuses).
        self.synced.entry(h).or_insert((block, certificate));
        self.apply_synced(now, out);
    }

    /// Commits the synced block for the current height if its certificate holds.
    pub(super) fn apply_synced(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.deciding {
            return;
        }
        let Some((block, certificate)) = self.synced.remove(&self.height) else {
            return;
        };
        let hash = block.hash();
        let Ok(precommits) = codec::decode::<Vec<SignedVote>>(&certificate.0) else {
            return self.count("rejected_certificate");
        };
        let table = self.current_table().clone();
        let mut signers = BTreeSet::new();
        let mut power: u128 = 0;
        let round = precommits.first().map(|v| v.body.round);
        for v in &precommits {
            let ok = v.body.height == self.height
                && Some(v.body.round) == round
                && v.body.kind == VoteKind::Precommit
                && v.body.value == Some(hash)
                && signers.insert(v.validator)
                && v.verify(&self.chain_id);
            if !ok {
                return self.count("rejected_certificate");
            }
            power += u128::from(table.power(&v.validator));
        }
        if !table.is_quorum(power) || !self.check_block(now, &block) {
            return self.count("rejected_certificate");
        }
        self.count("synced_blocks");
        self.finalize(block, certificate, out);
    }
}
