//! Catching up: a replica that sees evidence of later heights asks for final blocks with
//! their certificates, and checks each certificate before committing.

use super::*;

impl Pbft {
    pub(super) fn request_sync(
        &mut self,
        now: Time,
        target: u64,
        peer: Option<PublicKey>,
        out: &mut Vec<Action>,
    ) {
        if target <= self.committed.height {
            return;
        }
        self.sync_target = self.sync_target.max(target);
        if self.sync_deadline.is_some_and(|d| now < d) {
            return; // a request is outstanding
        }
        self.sync_peer = peer.or(self.sync_peer);
        self.sync_deadline = Some(now + self.cfg.sync_retry.as_millis() as u64);
        out.push(Action::NeedBlocks {
            from_height: self.committed.height + 1,
            peer: self.sync_peer,
        });
        out.push(Action::SetTimer {
            id: TIMER_SYNC,
            after: self.cfg.sync_retry,
        });
        self.count("sync_requests");
    }

    pub(super) fn on_synced(
        &mut self,
        now: Time,
        block: Block,
        cert: Certificate,
        out: &mut Vec<Action>,
    ) {
        let h = &block.header;
        if h.height != self.committed.height + 1 {
            return;
        }
        if h.parent != self.committed.hash() || block.check_structure().is_err() {
            return self.count("rejected_synced_block");
        }
        let Ok(view) = self.check_certificate(&block.header.clone(), &cert) else {
            return self.count("rejected_synced_certificate");
        };
        // A certificate from a later view proves a quorum is there, past that view's re-proposal:
        // a replica that missed the new view joins it. One that is changing views may join too
        // if the certificate's view is not below its target (it promised nothing about those).
        let may_join = match self.mode {
            Mode::Normal => true,
            Mode::ViewChange { target } => target <= view,
        };
        if view > self.view && may_join {
            // Heights up to this certified one are final here, so the floor adds nothing.
            self.enter_view(view, 0, out);
        }
        self.commit(block, cert, out);
        if self.committed.height >= self.sync_target {
            self.sync_deadline = None;
        }
        self.after_progress(now, out);
    }
}
