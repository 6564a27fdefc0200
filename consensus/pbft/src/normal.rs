//! PBFT's normal case: the primary proposes (§4.2), replicas accept a pre-prepare, prepare and
//! commit (§4.2–4.4), and a block commits with its certificate.

use super::*;

impl Pbft {
    pub(super) fn maybe_propose(&mut self, out: &mut Vec<Action>) {
        // Not below the new view's certified height (catch up first), and never a second block
        // for a height this primary already proposed in this view before a restart.
        let promised = self
            .restored_promise
            .is_some_and(|p| p.view == self.view && p.seq == self.committed.height + 1);
        if self.is_primary()
            && self.accepted.is_none()
            && !self.awaiting_txs
            && self.committed.height >= self.view_floor
            && !promised
        {
            self.awaiting_txs = true;
            out.push(Action::NeedTransactions {
                max: self.cfg.batch_txs_max,
            });
        }
    }

    pub(super) fn propose(
        &mut self,
        now: Time,
        mut txs: Vec<Transaction>,
        hashes: &[Hash],
        out: &mut Vec<Action>,
    ) {
        // A runtime that broke the event's contract costs the hashing, not a wrong block.
        let hashed = hashes.len() == txs.len();
        let mut bytes = 0;
        let fit = txs
            .iter()
            .take_while(|t| {
                bytes += t.payload.len() + 200;
                bytes <= self.cfg.batch_bytes_max
            })
            .count();
        txs.truncate(fit);
        let (&state_height, &state_root) = self
            .executed
            .iter()
            .next_back()
            .expect("the tip's root is always known");
        let height = self.committed.height + 1;
        let computed: Vec<Hash>;
        let tx_hashes = if hashed {
            &hashes[..fit]
        } else {
            computed = txs.iter().map(Transaction::hash).collect();
            &computed
        };
        let block = Block::build_hashed(
            height,
            self.committed.hash(),
            state_height.min(height - 1),
            state_root,
            now.max(self.committed.time_ms),
            self.me,
            self.view.to_be_bytes().to_vec(),
            txs,
            tx_hashes,
        );
        let vote = self.vote(Phase::PrePrepare, self.view, height, block.hash());
        self.persist(
            RECORD_ACCEPTED,
            &AcceptedRecord {
                view: self.view,
                seq: height,
                digest: vote.body.digest,
            },
            out,
        );
        // Encoded from references: a block of a saturated cluster is megabytes and thousands of
        // allocations to copy.
        out.push(Action::Broadcast(Wire::encode_pre_prepare(&vote, &block)));
        self.accepted = Some((vote, Arc::new(block)));
        self.count("proposed");
        self.check_prepared(out);
    }

    pub(super) fn on_pre_prepare(
        &mut self,
        now: Time,
        from: PublicKey,
        vote: Signed<Vote>,
        block: Block,
        out: &mut Vec<Action>,
    ) {
        let v = vote.body;
        if v.phase != Phase::PrePrepare || vote.signer != from || from != self.primary(v.view) {
            return self.count("rejected_pre_prepare_sender");
        }
        if !vote.verify(&self.chain_id, &self.validators)
            || block.hash() != v.digest
            || block.header.height != v.seq
        {
            return self.count("rejected_pre_prepare_signature");
        }
        if v.seq <= self.committed.height {
            return; // already final
        }
        if v.seq > self.committed.height + self.cfg.watermark_window {
            return self.count("rejected_beyond_watermark");
        }
        if v.view < self.view {
            return;
        }
        if v.view > self.view + self.cfg.watermark_window {
            return self.count("rejected_beyond_watermark");
        }
        if v.seq > self.committed.height + 1 {
            self.request_sync(now, v.seq - 1, Some(from), out);
        }
        if v.view > self.view || self.mode != Mode::Normal || v.seq > self.committed.height + 1 {
            // A view not entered yet (its new view may arrive after this pre-prepare), or a
            // height whose parent is not final here yet: keep it for later.
            self.defer(vote, block);
            return;
        }
        self.try_accept(now, vote, block, out);
    }

    /// Validates a pre-prepare for height committed + 1 in the current view and, if valid,
    /// accepts it and sends a prepare. Defers it if the state it claims is not executed yet.
    pub(super) fn try_accept(
        &mut self,
        now: Time,
        vote: Signed<Vote>,
        block: Block,
        out: &mut Vec<Action>,
    ) {
        let v = vote.body;
        if let Some((a, _)) = &self.accepted {
            if a.body.view == v.view && a.body.seq == v.seq {
                if a.body.digest != v.digest {
                    self.count("rejected_equivocation");
                }
                return;
            }
        }
        if let Some(p) = &self.restored_promise {
            if p.view == v.view && p.seq == v.seq && p.digest != v.digest {
                return self.count("rejected_equivocation");
            }
        }
        if v.view == self.view && v.seq <= self.view_floor {
            // The new view certified a committed block at this height: nothing else goes here.
            return self.count("rejected_below_new_view");
        }
        let h = &block.header;
        // A block re-proposed by a new view keeps its original proposer; the pre-prepare's
        // signature is what authenticates the proposal.
        if h.parent != self.committed.hash() || !self.validators.contains(&h.proposer) {
            return self.count("rejected_pre_prepare_parent");
        }
        if h.time_ms < self.committed.time_ms
            || h.time_ms > now + self.cfg.clock_skew_max.as_millis() as u64
        {
            return self.count("rejected_pre_prepare_time");
        }
        // The state claim: the proposer's root at state_height must equal ours.
        match self.executed.get(&h.state_height) {
            Some(root) if *root == h.state_root => {}
            Some(_) => return self.count("rejected_pre_prepare_state"),
            None if h.state_height > self.last_executed() => {
                // Not executed here yet: try again after BlockExecuted.
                self.defer(vote, block);
                return;
            }
            None => return self.count("rejected_pre_prepare_state"),
        }
        let tx_bytes: usize = block.txs.iter().map(|t| t.payload.len() + 200).sum();
        if block.txs.len() > self.cfg.batch_txs_max || tx_bytes > self.cfg.batch_bytes_max + 200 {
            return self.count("rejected_pre_prepare_size");
        }
        let Ok(tx_hashes) = block.check_structure() else {
            return self.count("rejected_pre_prepare_txs");
        };
        if self.verifier.verify_block(&block, &tx_hashes).is_err() {
            return self.count("rejected_pre_prepare_txs");
        }
        self.persist(
            RECORD_ACCEPTED,
            &AcceptedRecord {
                view: v.view,
                seq: v.seq,
                digest: v.digest,
            },
            out,
        );
        self.restored_promise = None;
        let prepare = self.vote(Phase::Prepare, v.view, v.seq, v.digest);
        self.broadcast(Wire::Prepare(prepare.clone()), out);
        self.accepted = Some((vote, Arc::new(block)));
        self.record_vote(prepare);
        self.arm_progress(now, out);
        self.check_prepared(out);
    }

    /// Keeps a pre-prepare that cannot be processed yet; per height, the one of the highest view.
    pub(super) fn defer(&mut self, vote: Signed<Vote>, block: Block) {
        self.future
            .insert((vote.body.seq, vote.body.view), (vote, block));
        // Bounded: blocks are large. The lowest heights are the ones needed next.
        while self.future.len() > FUTURE_MAX {
            self.future.pop_last();
        }
    }

    pub(super) fn last_executed(&self) -> u64 {
        self.executed.keys().next_back().copied().unwrap_or(0)
    }

    pub(super) fn record_vote(&mut self, vote: Signed<Vote>) {
        let b = vote.body;
        self.votes
            .entry((b.phase, b.view, b.seq))
            .or_default()
            .entry(vote.signer)
            .or_insert(vote);
    }

    pub(super) fn on_vote(
        &mut self,
        now: Time,
        from: PublicKey,
        vote: Signed<Vote>,
        out: &mut Vec<Action>,
    ) {
        let b = vote.body;
        if vote.signer != from || !matches!(b.phase, Phase::Prepare | Phase::Commit) {
            return self.count("rejected_vote_sender");
        }
        // Votes of older views can no longer matter (and would pile up).
        if b.seq <= self.committed.height || b.view < self.view {
            return;
        }
        if b.seq > self.committed.height + self.cfg.watermark_window
            || b.view > self.view + self.cfg.watermark_window
        {
            return self.count("rejected_beyond_watermark");
        }
        if !vote.verify(&self.chain_id, &self.validators) {
            return self.count("rejected_vote_signature");
        }
        if b.view > self.view || b.seq > self.committed.height + 1 {
            // Others are ahead (a later view, or a later height): fetch what they committed.
            self.request_sync(now, b.seq - 1, Some(from), out);
        }
        self.record_vote(vote);
        self.check_prepared(out);
    }

    pub(super) fn matching(
        &self,
        phase: Phase,
        view: u64,
        seq: u64,
        digest: Hash,
    ) -> Vec<Signed<Vote>> {
        self.votes
            .get(&(phase, view, seq))
            .map(|m| {
                m.values()
                    .filter(|v| v.body.digest == digest)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// prepared(m, v, n, i) (§4.2): the pre-prepare plus quorum − 1 matching prepares from other
    /// replicas; then send a commit. committed-local: prepared plus a quorum of commits.
    pub(super) fn check_prepared(&mut self, out: &mut Vec<Action>) {
        // Called on every vote: copy the pre-prepare, never the block (megabytes under load).
        let Some(pp) = self.accepted.as_ref().map(|(pp, _)| pp.clone()) else {
            return;
        };
        let (view, seq, digest) = (pp.body.view, pp.body.seq, pp.body.digest);
        let primary = self.primary(view);
        let already = self.prepared.as_ref().is_some_and(|(p, _)| {
            p.pre_prepare.body.view == view && p.pre_prepare.body.digest == digest
        });
        // After sending a view change a replica no longer votes in older views (§4.5.2); it may
        // still commit from a quorum of others' commits, which is a valid certificate.
        if !already && self.mode == Mode::Normal && view == self.view {
            let prepares: Vec<_> = self
                .matching(Phase::Prepare, view, seq, digest)
                .into_iter()
                .filter(|v| v.signer != primary)
                .collect();
            if prepares.len() + 1 < self.quorum {
                return;
            }
            let proof = PreparedProof {
                pre_prepare: pp.clone(),
                prepares: prepares.into_iter().take(self.quorum - 1).collect(),
            };
            let Some((_, block)) = &self.accepted else {
                return;
            };
            // The block is written once: as the ledger's candidate now, kept when it is final.
            out.push(Action::PersistCandidate {
                key: RECORD_PREPARED_PROOF.to_vec(),
                value: codec::encode(&proof),
                block: block.clone(),
            });
            self.prepared = Some((proof, block.clone()));
            let commit = self.vote(Phase::Commit, view, seq, digest);
            self.broadcast(Wire::Commit(commit.clone()), out);
            self.record_vote(commit);
        }
        let commits = self.matching(Phase::Commit, view, seq, digest);
        let prepared_here = self.prepared.as_ref().is_some_and(|(p, _)| {
            p.pre_prepare.body.view == view && p.pre_prepare.body.digest == digest
        });
        if commits.len() >= self.quorum && (prepared_here || self.mode != Mode::Normal) {
            let mut sigs: Vec<(PublicKey, medchain_types::Signature)> =
                commits.iter().map(|v| (v.signer, v.signature)).collect();
            sigs.sort_by_key(|(k, _)| *k);
            sigs.truncate(self.quorum);
            let cert = Certificate(codec::encode(&PbftCertificate {
                view,
                commits: sigs,
            }));
            // `commit` clears `accepted` and `prepared` anyway: move the block out of them (the
            // runtime dropped its share when it stored the candidate, so nothing is copied).
            if let Some((_, block)) = self.accepted.take() {
                self.prepared = None;
                self.commit(Arc::unwrap_or_clone(block), cert, out);
            }
        }
    }

    /// A block is final here: hand it to the runtime and move to the next height.
    pub(super) fn commit(&mut self, block: Block, cert: Certificate, out: &mut Vec<Action>) {
        let height = block.header.height;
        debug_assert_eq!(height, self.committed.height + 1);
        self.committed = block.header.clone();
        self.committed_cert = cert.clone();
        self.hashes.insert(height, block.hash());
        while self.hashes.len() as u64 > EXECUTED_WINDOW {
            self.hashes.pop_first();
        }
        out.push(Action::Commit {
            block,
            certificate: cert,
        });
        self.count("committed");
        self.accepted = None;
        self.prepared = None;
        self.restored_promise = None;
        self.streak = 0;
        self.awaiting_txs = false;
        self.votes = self.votes.split_off(&(Phase::PrePrepare, 0, 0));
        self.votes.retain(|(_, _, seq), _| *seq > height);
        self.future.retain(|(seq, _), _| *seq > height);
        self.progress_deadline = None;
        out.push(Action::CancelTimer(TIMER_PROGRESS));
    }

    pub(super) fn after_progress(&mut self, now: Time, out: &mut Vec<Action>) {
        // Work seen before this commit may have been in it; the next poll says again.
        self.pending_work = false;
        // A buffered pre-prepare for the next height may now be acceptable.
        let next = self.committed.height + 1;
        let view = self.view;
        self.future.retain(|(seq, v), _| *seq >= next && *v >= view);
        if self.mode == Mode::Normal {
            if let Some((vote, block)) = self.future.remove(&(next, view)) {
                self.try_accept(now, vote, block, out);
            }
        }
        if self.pending_work || self.accepted.is_some() {
            self.arm_progress(now, out);
        }
        self.maybe_propose(out);
    }

    /// Starts the view-change timer if it is not running (§4.5.2: a backup waiting for a request
    /// to execute).
    pub(super) fn arm_progress(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.progress_deadline.is_none() && self.mode == Mode::Normal && !self.is_primary() {
            let t = self.timeout();
            self.progress_deadline = Some(now + t.as_millis() as u64);
            out.push(Action::SetTimer {
                id: TIMER_PROGRESS,
                after: t,
            });
        }
    }
}
