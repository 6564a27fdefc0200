//! Tendermint's steps (Algorithm 1, lines 22–49): the voting power behind a value, block
//! validity, and the rules that move a round on from propose to prevote, precommit and
//! decision.

use super::*;

impl Pos {
    pub(super) fn power_for(
        &self,
        round: u32,
        kind: VoteKind,
        value: Option<Option<Hash>>,
    ) -> u128 {
        let table = self.current_table();
        self.votes.get(&(round, kind)).map_or(0, |m| {
            m.values()
                .filter(|v| value.is_none_or(|x| v.body.value == x))
                .map(|v| u128::from(table.power(&v.validator)))
                .sum()
        })
    }

    pub(super) fn is_valid(&mut self, now: Time, hash: &Hash) -> bool {
        if let Some(v) = self.validity.get(hash) {
            return *v;
        }
        let Some(block) = self.blocks.get(hash) else {
            return false;
        };
        let ok = self.check_block(now, block);
        // A block a little ahead of this validator's clock becomes valid later: not cached.
        let early = block.header.time_ms > now + self.cfg.clock_skew_max.as_millis() as u64;
        if !ok {
            self.count("rejected_block");
        }
        if ok || !early {
            self.validity.insert(*hash, ok);
        }
        ok
    }

    pub(super) fn check_block(&self, now: Time, block: &Block) -> bool {
        let h = &block.header;
        let Some(seal) = Seal::of(h) else {
            return false;
        };
        let table = self.current_table();
        h.height == self.height
            && h.parent == self.tip.hash()
            && h.time_ms >= self.tip.time_ms
            && h.time_ms <= now + self.cfg.clock_skew_max.as_millis() as u64
            && h.state_height == self.tip.height
            && h.state_root == self.tip_root
            && seal.slot == self.tip_slot() + u64::from(seal.round) + 1
            && table.power(&h.proposer) > 0
            // The block's proposer is its slot's: nobody can reuse another's public reveal.
            && h.proposer == self.proposer(h.height, seal.round)
            && h.proposer
                .verify(
                    DOMAIN_REVEAL,
                    &self.chain_id,
                    &h.height.to_le_bytes(),
                    &seal.reveal,
                )
                .is_ok()
            && block.txs.len() <= self.cfg.block_txs_max
            && block.check_structure().is_ok_and(|hashes| {
                let mut sorted = hashes.clone();
                sorted.sort_unstable();
                sorted.windows(2).all(|w| w[0] != w[1])
                    && self.verifier.verify_block(block, &hashes).is_ok()
            })
    }

    /// Evaluates Tendermint's upon-rules until none fires.
    pub(super) fn progress(&mut self, now: Time, out: &mut Vec<Action>) {
        for _ in 0..64 {
            if self.deciding || !self.step_once(now, out) {
                return;
            }
        }
    }

    pub(super) fn step_once(&mut self, now: Time, out: &mut Vec<Action>) -> bool {
        // TM l.49: a proposal with 2/3 precommits for it, in any round, decides.
        let rounds: Vec<(u32, Hash)> = self
            .proposals
            .iter()
            .map(|(r, p)| (*r, p.body.block))
            .collect();
        for (r, v) in &rounds {
            let power = self.power_for(*r, VoteKind::Precommit, Some(Some(*v)));
            if self.current_table().is_quorum(power) && self.is_valid(now, v) {
                self.decide(*r, *v, out);
                return false;
            }
        }
        // TM l.55: f+1 (more than 1/3 of the stake) in a later round: skip to it.
        let later: BTreeSet<u32> = self
            .votes
            .keys()
            .map(|(r, _)| *r)
            .filter(|r| *r > self.round)
            .collect();
        for r in later.into_iter().rev() {
            let table = self.current_table();
            let voters: BTreeSet<PublicKey> = self
                .votes
                .iter()
                .filter(|((vr, _), _)| *vr == r)
                .flat_map(|(_, m)| m.keys().copied())
                .collect();
            let power: u128 = voters.iter().map(|v| u128::from(table.power(v))).sum();
            if table.is_one_third(power) {
                self.count("round_skips");
                self.start_round(now, r, out);
                return true;
            }
        }
        let round = self.round;
        let proposal = self.proposals.get(&round).cloned();
        if self.step == Step::Propose {
            if let Some(p) = &proposal {
                let v = p.body.block;
                match p.body.valid_round {
                    // TM l.22.
                    None => {
                        let ok =
                            self.is_valid(now, &v) && self.locked.is_none_or(|(_, lv)| lv == v);
                        self.vote(VoteKind::Prevote, ok.then_some(v), out);
                        self.step = Step::Prevote;
                        return true;
                    }
                    // TM l.28.
                    Some(vr) if vr < round => {
                        let polka = self.power_for(vr, VoteKind::Prevote, Some(Some(v)));
                        if self.current_table().is_quorum(polka) {
                            let ok = self.is_valid(now, &v)
                                && self.locked.is_none_or(|(lr, lv)| lr <= vr || lv == v);
                            self.vote(VoteKind::Prevote, ok.then_some(v), out);
                            self.step = Step::Prevote;
                            return true;
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        // TM l.34: 2/3 prevotes of any values: start the prevote timeout once.
        if self.step == Step::Prevote
            && !self.prevote_timer.contains(&round)
            && self
                .current_table()
                .is_quorum(self.power_for(round, VoteKind::Prevote, None))
        {
            self.prevote_timer.insert(round);
            self.set_timer(
                TIMER_PREVOTE,
                self.timeout(self.cfg.timeout_prevote, round),
                out,
            );
        }
        // TM l.36: a proposal with 2/3 prevotes for it: lock and precommit it.
        if let Some(p) = &proposal {
            let v = p.body.block;
            if self.step >= Step::Prevote
                && !self.polka_seen.contains(&round)
                && self.current_table().is_quorum(self.power_for(
                    round,
                    VoteKind::Prevote,
                    Some(Some(v)),
                ))
                && self.is_valid(now, &v)
            {
                self.polka_seen.insert(round);
                self.valid = Some((round, v));
                self.mine.valid = self.valid;
                let lock = self.step == Step::Prevote;
                if lock {
                    self.locked = Some((round, v));
                    self.mine.locked = self.locked;
                }
                // The block itself first: after a restart of every validator, the polka block
                // must still exist somewhere to be re-proposed (TM l.14).
                self.persist_blocks(out);
                if lock {
                    self.vote(VoteKind::Precommit, Some(v), out);
                    self.step = Step::Precommit;
                }
                self.persist_mine(out);
                return true;
            }
        }
        // TM l.44: 2/3 prevotes for nil: precommit nil.
        if self.step == Step::Prevote
            && self
                .current_table()
                .is_quorum(self.power_for(round, VoteKind::Prevote, Some(None)))
        {
            self.vote(VoteKind::Precommit, None, out);
            self.step = Step::Precommit;
            return true;
        }
        // TM l.47: 2/3 precommits of any values: start the precommit timeout once.
        if !self.precommit_timer.contains(&round)
            && self
                .current_table()
                .is_quorum(self.power_for(round, VoteKind::Precommit, None))
        {
            self.precommit_timer.insert(round);
            self.set_timer(
                TIMER_PRECOMMIT,
                self.timeout(self.cfg.timeout_precommit, round),
                out,
            );
        }
        false
    }

    /// A block is final: apply its stake operations, persist, commit.
    pub(super) fn decide(&mut self, round: u32, value: Hash, out: &mut Vec<Action>) {
        let block = self.blocks[&value].clone();
        let precommits: Vec<SignedVote> = self
            .votes
            .get(&(round, VoteKind::Precommit))
            .map(|m| {
                m.values()
                    .filter(|v| v.body.value == Some(value))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.finalize(block, Certificate(codec::encode(&precommits)), out);
    }
}
