//! A Tendermint round (Buchman, Kwon, Milosevic 2018, Algorithm 1): starting it, the
//! proposer's block from the mempool, and this validator's own proposals and votes (persisted
//! before they are signed, gossiped again until the height is decided).

use super::*;

impl Pos {
    // TM l.10: StartRound.
    pub(super) fn start_round(&mut self, now: Time, round: u32, out: &mut Vec<Action>) {
        self.round = round;
        self.step = Step::Propose;
        self.round_started = now;
        if self.mine.round != round {
            self.mine.round = round;
            self.persist_mine(out);
        }
        self.set_timer(
            TIMER_PROPOSE,
            self.timeout(self.cfg.timeout_propose, round),
            out,
        );
        if self.proposer(self.height, round) == self.me {
            if let Some((vr, v)) = self.valid {
                // TM l.14: re-propose the latest polka block.
                if let Some(block) = self.blocks.get(&v).cloned() {
                    self.propose(block, Some(vr), out);
                }
            } else if let Some(p) = self.mine.proposals.iter().find(|p| p.round == round) {
                // Restarted after proposing in this slot: only that block may be proposed.
                let hash = p.block;
                if let Some(block) = self.blocks.get(&hash).cloned() {
                    self.propose(block, p.valid_round, out);
                }
            } else {
                self.request_txs(out);
            }
        }
        self.replay_own_votes(out);
        self.progress(now, out);
    }

    pub(super) fn request_txs(&mut self, out: &mut Vec<Action>) {
        if !self.awaiting_txs {
            self.awaiting_txs = true;
            out.push(Action::NeedTransactions {
                max: self.cfg.block_txs_max,
            });
        }
    }

    pub(super) fn on_transactions(
        &mut self,
        now: Time,
        txs: Vec<Transaction>,
        out: &mut Vec<Action>,
    ) {
        self.awaiting_txs = false;
        let round = self.round;
        if self.deciding
            || self.step != Step::Propose
            || self.proposer(self.height, round) != self.me
            || self.proposals.contains_key(&round)
            || self.valid.is_some()
            || self.mine.proposals.iter().any(|p| p.round == round)
        {
            return;
        }
        if txs.is_empty()
            && self.evidence.is_empty()
            && now < self.round_started + self.cfg.empty_block_delay.as_millis() as u64
        {
            self.set_timer(TIMER_POLL, self.cfg.poll_txs, out);
            return;
        }
        let mut bytes = 0;
        let mut chosen: Vec<Transaction> = Vec::new();
        for e in &self.evidence {
            chosen.push(Transaction::signed(
                &self.chain_id,
                STAKING_CHAINCODE,
                codec::encode(&StakeOp::Evidence(Box::new(e.clone()))),
                self.height,
                &self.key,
            ));
        }
        for tx in txs {
            if chosen.len() >= self.cfg.block_txs_max {
                break;
            }
            bytes += tx.payload.len() + 200;
            if bytes > self.cfg.block_bytes_max {
                break;
            }
            chosen.push(tx);
        }
        let seal = Seal {
            round,
            slot: self.tip_slot() + u64::from(round) + 1,
            reveal: self
                .key
                .sign(DOMAIN_REVEAL, &self.chain_id, &self.height.to_le_bytes()),
        };
        let block = Block::build(
            self.height,
            self.tip.hash(),
            self.tip.height,
            self.tip_root,
            now.max(self.tip.time_ms),
            self.me,
            codec::encode(&seal),
            chosen,
        );
        self.propose(block, None, out);
        self.progress(now, out);
    }

    pub(super) fn tip_slot(&self) -> u64 {
        Seal::of(&self.tip).map_or(0, |s| s.slot)
    }

    pub(super) fn propose(
        &mut self,
        block: Block,
        valid_round: Option<u32>,
        out: &mut Vec<Action>,
    ) {
        let body = ProposalBody {
            height: self.height,
            round: self.round,
            valid_round,
            block: block.hash(),
        };
        if let Some(p) = self.mine.proposals.iter().find(|p| p.round == self.round) {
            if p.block != body.block {
                return self.count("refused_second_proposal");
            }
        } else {
            self.mine.proposals.push(body);
            self.blocks.insert(body.block, block.clone());
            self.persist_blocks(out);
            self.persist_mine(out);
        }
        let proposal = SignedProposal::sign(body, &self.key, &self.chain_id);
        self.blocks.insert(body.block, block.clone());
        self.proposals.insert(self.round, proposal.clone());
        out.push(Action::Broadcast(
            Wire::Proposal {
                proposal,
                block: Box::new(block),
            }
            .encode(),
        ));
        self.count("proposals");
    }

    /// Signs and sends a vote; never a second value for one (round, kind).
    pub(super) fn vote(&mut self, kind: VoteKind, value: Option<Hash>, out: &mut Vec<Action>) {
        let body = VoteBody {
            height: self.height,
            round: self.round,
            kind,
            value,
        };
        match self
            .mine
            .votes
            .iter()
            .find(|v| v.round == body.round && v.kind == kind)
        {
            Some(prev) if prev.value != value => return self.count("refused_double_vote"),
            Some(_) => {}
            None => {
                self.mine.votes.push(body);
                self.persist_mine(out);
            }
        }
        let signed = SignedVote::sign(body, &self.key, &self.chain_id);
        self.votes
            .entry((body.round, kind))
            .or_default()
            .insert(self.me, signed.clone());
        out.push(Action::Broadcast(Wire::Vote(signed).encode()));
        if self.cfg.unsafe_equivocate && kind == VoteKind::Prevote {
            // Test only: a second, conflicting prevote for the same slot.
            let other = VoteBody {
                value: if value.is_some() {
                    None
                } else {
                    Some(Hash([0xee; 32]))
                },
                ..body
            };
            out.push(Action::Broadcast(
                Wire::Vote(SignedVote::sign(other, &self.key, &self.chain_id)).encode(),
            ));
        }
    }

    /// Re-sends everything this validator signed at this height, every round: Tendermint's
    /// liveness assumes every message a correct validator sent eventually reaches every correct
    /// validator, and a lost prevote of an earlier round can be what a later re-proposal's
    /// polka needs (TM l.28).
    pub(super) fn gossip_own(&mut self, out: &mut Vec<Action>) {
        for body in self.mine.votes.clone() {
            let signed = SignedVote::sign(body, &self.key, &self.chain_id);
            out.push(Action::Broadcast(Wire::Vote(signed).encode()));
        }
        let own: Vec<SignedProposal> = self
            .proposals
            .values()
            .filter(|p| p.proposer == self.me)
            .cloned()
            .collect();
        for proposal in own {
            if let Some(block) = self.blocks.get(&proposal.body.block).cloned() {
                out.push(Action::Broadcast(
                    Wire::Proposal {
                        proposal,
                        block: Box::new(block),
                    }
                    .encode(),
                ));
            }
        }
    }

    /// After a restart: re-sends what was signed in the current round.
    pub(super) fn replay_own_votes(&mut self, out: &mut Vec<Action>) {
        let mine: Vec<VoteBody> = self
            .mine
            .votes
            .iter()
            .filter(|v| v.round == self.round && v.height == self.height)
            .copied()
            .collect();
        for body in mine {
            let signed = SignedVote::sign(body, &self.key, &self.chain_id);
            self.votes
                .entry((body.round, body.kind))
                .or_default()
                .insert(self.me, signed.clone());
            out.push(Action::Broadcast(Wire::Vote(signed).encode()));
            if body.kind == VoteKind::Prevote && self.step == Step::Propose {
                self.step = Step::Prevote;
            }
            if body.kind == VoteKind::Precommit {
                self.step = Step::Precommit;
            }
        }
    }
}
