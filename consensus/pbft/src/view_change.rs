//! PBFT view changes (§4.5.2): suspecting the primary, view-change messages with their proofs,
//! the new view's choice of what to re-propose, and entering a view.

use super::*;

impl Pbft {
    pub(super) fn start_view_change(&mut self, now: Time, target: u64, out: &mut Vec<Action>) {
        if target <= self.view || matches!(self.mode, Mode::ViewChange { target: t } if t >= target)
        {
            return;
        }
        self.mode = Mode::ViewChange { target };
        self.streak += 1;
        self.count("view_changes");
        self.persist(
            RECORD_VIEW,
            &ViewRecord {
                view: self.view,
                mode: self.mode,
                floor: self.view_floor,
            },
            out,
        );
        self.progress_deadline = None;
        out.push(Action::CancelTimer(TIMER_PROGRESS));
        out.push(Action::CancelTimer(TIMER_BATCH));
        let prepared = self.prepared.clone();
        let body = ViewChangeBody {
            view: target,
            committed: CommittedProof {
                header: self.committed.clone(),
                certificate: self.committed_cert.clone(),
            },
            prepared: prepared.as_ref().map(|(p, _)| p.clone()),
        };
        let signed = Signed::sign(body, &self.key, &self.chain_id);
        let block = prepared.map(|(_, b)| Arc::unwrap_or_clone(b));
        self.broadcast(
            Wire::ViewChange {
                view_change: signed.clone(),
                block: block.clone(),
            },
            out,
        );
        self.view_changes.insert(self.me, (signed, block));
        let t = self.timeout();
        self.view_change_deadline = Some(now + t.as_millis() as u64);
        out.push(Action::SetTimer {
            id: TIMER_VIEW_CHANGE,
            after: t,
        });
        self.check_new_view(now, target, out);
    }

    /// Checks a view change's proofs. Returns the height it proves committed.
    pub(super) fn valid_view_change(
        &self,
        vc: &Signed<ViewChangeBody>,
        block: Option<&Block>,
    ) -> Option<u64> {
        if !vc.verify(&self.chain_id, &self.validators) {
            return None;
        }
        let c = &vc.body.committed;
        self.check_certificate(&c.header, &c.certificate).ok()?;
        if let Some(p) = &vc.body.prepared {
            if !self.valid_prepared(p, c.header.height + 1) {
                return None;
            }
            if block.is_some_and(|b| b.hash() != p.pre_prepare.body.digest) {
                return None;
            }
        }
        Some(c.header.height)
    }

    pub(super) fn valid_prepared(&self, p: &PreparedProof, seq: u64) -> bool {
        let pp = &p.pre_prepare;
        let primary = self.primary(pp.body.view);
        if pp.body.phase != Phase::PrePrepare || pp.body.seq != seq || pp.signer != primary {
            return false;
        }
        if !pp.verify(&self.chain_id, &self.validators) {
            return false;
        }
        let mut signers = BTreeSet::new();
        for v in &p.prepares {
            let b = v.body;
            if b.phase != Phase::Prepare
                || b.view != pp.body.view
                || b.seq != seq
                || b.digest != pp.body.digest
            {
                return false;
            }
            if v.signer == primary || !v.verify(&self.chain_id, &self.validators) {
                return false;
            }
            signers.insert(v.signer);
        }
        signers.len() + 1 >= self.quorum
    }

    pub(super) fn on_view_change(
        &mut self,
        now: Time,
        from: PublicKey,
        vc: Signed<ViewChangeBody>,
        block: Option<Block>,
        out: &mut Vec<Action>,
    ) {
        if vc.signer != from {
            return;
        }
        if vc.body.view == self.view && self.mode == Mode::Normal {
            // Someone is still trying to reach the view this replica is in: the new view that
            // started it was lost on the way there. Send it again (§4.5.2 retransmission).
            if let Some((view, wire)) = &self.last_new_view {
                if *view == self.view {
                    out.push(Action::Send {
                        to: from,
                        msg: wire.clone(),
                    });
                }
            }
            return;
        }
        if vc.body.view <= self.view {
            return;
        }
        if vc.body.view > self.view + self.cfg.watermark_window {
            return self.count("rejected_beyond_watermark");
        }
        // A prepared proof must travel with its block, or no new primary could re-propose it.
        if vc.body.prepared.is_some() != block.is_some() {
            return self.count("rejected_view_change");
        }
        let Some(height) = self.valid_view_change(&vc, block.as_ref()) else {
            return self.count("rejected_view_change");
        };
        if height > self.committed.height {
            self.request_sync(now, height, Some(from), out);
        }
        let view = vc.body.view;
        let newer = self
            .view_changes
            .get(&from)
            .is_none_or(|(old, _)| old.body.view < view);
        if newer {
            self.view_changes.insert(from, (vc, block));
        }
        // Liveness (§4.5.2): f + 1 replicas want a later view, so at least one correct replica
        // timed out; join the smallest of their views.
        let current = match self.mode {
            Mode::Normal => self.view,
            Mode::ViewChange { target } => target,
        };
        let mut later: Vec<u64> = self
            .view_changes
            .iter()
            .filter(|(k, (v, _))| **k != self.me && v.body.view > current)
            .map(|(_, (v, _))| v.body.view)
            .collect();
        if later.len() > self.validators.f() {
            later.sort_unstable();
            let smallest = later[later.len() - self.validators.f() - 1];
            self.start_view_change(now, smallest, out);
        }
        self.check_new_view(now, view, out);
    }

    /// For each view change in `vcs`: the highest committed height H, and the prepared block with
    /// the highest view for H + 1 (the new view must re-propose it).
    pub(super) fn choose(
        &self,
        vcs: &[(Signed<ViewChangeBody>, Option<Block>)],
    ) -> (u64, Option<(PreparedProof, Option<Block>)>) {
        let h = vcs
            .iter()
            .map(|(v, _)| v.body.committed.header.height)
            .max()
            .unwrap_or(0);
        let chosen = vcs
            .iter()
            .filter(|(v, _)| v.body.committed.header.height == h)
            .filter_map(|(v, b)| v.body.prepared.clone().map(|p| (p, b.clone())))
            .max_by_key(|(p, b)| (p.pre_prepare.body.view, b.is_some()));
        (h, chosen)
    }

    pub(super) fn check_new_view(&mut self, now: Time, view: u64, out: &mut Vec<Action>) {
        if self.primary(view) != self.me
            || self.mode != (Mode::ViewChange { target: view })
            || self.new_view_sent.contains(&view)
        {
            return;
        }
        let vcs: Vec<(Signed<ViewChangeBody>, Option<Block>)> = self
            .view_changes
            .values()
            .filter(|(v, _)| v.body.view == view)
            .take(self.quorum)
            .cloned()
            .collect();
        if vcs.len() < self.quorum {
            return;
        }
        let (h, chosen) = self.choose(&vcs);
        let (pre_prepare, block) = match chosen {
            Some((proof, Some(block))) => (
                Some(self.vote(
                    Phase::PrePrepare,
                    view,
                    h + 1,
                    proof.pre_prepare.body.digest,
                )),
                Some(block),
            ),
            // A prepared proof without its block cannot be re-proposed; wait for more view
            // changes (one that carries the block) or the next view.
            Some((_, None)) => return,
            None => (None, None),
        };
        let body = NewViewBody {
            view,
            view_changes: vcs.into_iter().map(|(v, _)| v).collect(),
            pre_prepare: pre_prepare.clone(),
        };
        let signed = Signed::sign(body, &self.key, &self.chain_id);
        self.new_view_sent.insert(view);
        // Persist the view (and the re-proposal below) before the new view goes out.
        self.enter_view(view, h, out);
        if let (Some(vote), Some(b)) = (pre_prepare.clone(), block.clone()) {
            self.adopt_re_proposal(now, vote, b, out);
        }
        let wire = Wire::NewView {
            new_view: signed,
            block,
        }
        .encode();
        self.remember_new_view(view, wire.clone(), out);
        out.push(Action::Broadcast(wire));
        if h > self.committed.height {
            self.request_sync(now, h, None, out);
        }
        if pre_prepare.is_none() {
            self.maybe_propose(out);
        }
    }

    /// The new primary's own re-proposal, or a backup's copy from the new view.
    pub(super) fn adopt_re_proposal(
        &mut self,
        now: Time,
        vote: Signed<Vote>,
        block: Block,
        out: &mut Vec<Action>,
    ) {
        if vote.body.seq == self.committed.height + 1 {
            if self.primary(vote.body.view) == self.me {
                self.persist(
                    RECORD_ACCEPTED,
                    &AcceptedRecord {
                        view: vote.body.view,
                        seq: vote.body.seq,
                        digest: vote.body.digest,
                    },
                    out,
                );
                self.accepted = Some((vote, Arc::new(block)));
                self.check_prepared(out);
            } else {
                self.try_accept(now, vote, block, out);
            }
        } else if vote.body.seq > self.committed.height + 1 {
            self.defer(vote, block);
        }
    }

    pub(super) fn on_new_view(
        &mut self,
        now: Time,
        from: PublicKey,
        nv: Signed<NewViewBody>,
        block: Option<Block>,
        out: &mut Vec<Action>,
    ) {
        let view = nv.body.view;
        // Any validator may relay a new view; its signer must be the view's primary.
        if nv.signer != self.primary(view) || view <= self.view {
            return;
        }
        // A replica changing views promised not to vote below its target (§4.5.2).
        if matches!(self.mode, Mode::ViewChange { target } if view < target) {
            return;
        }
        if !nv.verify(&self.chain_id, &self.validators) {
            return self.count("rejected_new_view");
        }
        let mut signers = BTreeSet::new();
        let mut vcs = Vec::new();
        for vc in &nv.body.view_changes {
            // The prepared blocks travel once, beside the new view; proofs are checked here.
            if vc.body.view != view || self.valid_view_change(vc, None).is_none() {
                return self.count("rejected_new_view");
            }
            signers.insert(vc.signer);
            vcs.push((vc.clone(), None));
        }
        if signers.len() < self.quorum {
            return self.count("rejected_new_view");
        }
        let (h, chosen) = self.choose(&vcs);
        let consistent = match (&chosen, &nv.body.pre_prepare, &block) {
            (None, None, None) => true,
            (Some((proof, _)), Some(pp), Some(b)) => {
                pp.body
                    == Vote {
                        phase: Phase::PrePrepare,
                        view,
                        seq: h + 1,
                        digest: proof.pre_prepare.body.digest,
                    }
                    && pp.signer == nv.signer
                    && b.hash() == pp.body.digest
            }
            _ => false,
        };
        if !consistent {
            return self.count("rejected_new_view");
        }
        let relay = Wire::NewView {
            new_view: nv.clone(),
            block: block.clone(),
        }
        .encode();
        self.remember_new_view(view, relay, out);
        self.enter_view(view, h, out);
        if h > self.committed.height {
            self.request_sync(now, h, Some(from), out);
        }
        if let (Some(pp), Some(b)) = (nv.body.pre_prepare, block) {
            self.adopt_re_proposal(now, pp, b, out);
        }
        self.after_progress(now, out);
    }

    /// Keeps (durably) the new view that started `view`, to relay it to late replicas.
    pub(super) fn remember_new_view(&mut self, view: u64, wire: Vec<u8>, out: &mut Vec<Action>) {
        out.push(Action::Persist {
            key: RECORD_NEW_VIEW.to_vec(),
            value: Some(codec::encode(&(view, wire.clone()))),
        });
        self.last_new_view = Some((view, wire));
    }

    pub(super) fn enter_view(&mut self, view: u64, floor: u64, out: &mut Vec<Action>) {
        self.view = view;
        self.mode = Mode::Normal;
        self.view_floor = floor;
        self.persist(
            RECORD_VIEW,
            &ViewRecord {
                view,
                mode: self.mode,
                floor,
            },
            out,
        );
        self.accepted = None;
        self.awaiting_txs = false;
        self.future.retain(|(_, v), _| *v >= view);
        self.view_changes.retain(|_, (v, _)| v.body.view > view);
        self.new_view_sent.retain(|v| *v > view);
        self.votes.retain(|(_, v, _), _| *v >= view);
        self.view_change_deadline = None;
        self.progress_deadline = None;
        out.push(Action::CancelTimer(TIMER_VIEW_CHANGE));
        out.push(Action::CancelTimer(TIMER_PROGRESS));
        self.count("views_entered");
    }
}
