//! PBFT checkpoints (§4.3): each carries a block hash and the state root; a quorum makes one
//! stable, moves the low watermark and collects the log; a replica whose root differs has
//! diverged.

use super::*;

impl Pbft {
    pub(super) fn on_executed(
        &mut self,
        now: Time,
        height: u64,
        state_root: Hash,
        out: &mut Vec<Action>,
    ) {
        self.executed.insert(height, state_root);
        while self.executed.len() as u64 > EXECUTED_WINDOW {
            self.executed.pop_first();
        }
        if height > 0 && height % self.cfg.checkpoint_interval == 0 {
            if let Some(block) = self.hashes.get(&height).copied() {
                let body = CheckpointBody {
                    seq: height,
                    block,
                    state_root,
                };
                let signed = Signed::sign(body, &self.key, &self.chain_id);
                self.broadcast(Wire::Checkpoint(signed), out);
                self.record_checkpoint(self.me, body);
            }
        }
        self.after_progress(now, out);
    }

    pub(super) fn on_checkpoint(
        &mut self,
        now: Time,
        from: PublicKey,
        cp: Signed<CheckpointBody>,
        out: &mut Vec<Action>,
    ) {
        if cp.signer != from || !cp.verify(&self.chain_id, &self.validators) {
            return self.count("rejected_checkpoint");
        }
        if cp.body.seq <= self.stable || cp.body.seq % self.cfg.checkpoint_interval != 0 {
            return;
        }
        if cp.body.seq
            > self.committed.height
                + self
                    .cfg
                    .watermark_window
                    .max(4 * self.cfg.checkpoint_interval)
        {
            // Far ahead: catch up first; the checkpoint will come again.
            self.request_sync(now, cp.body.seq, Some(from), out);
            return;
        }
        if cp.body.seq > self.committed.height {
            self.request_sync(now, cp.body.seq, Some(from), out);
        }
        self.record_checkpoint(from, cp.body);
    }

    pub(super) fn record_checkpoint(&mut self, from: PublicKey, body: CheckpointBody) {
        let seq = body.seq;
        self.checkpoints.entry(seq).or_default().insert(from, body);
        let agreeing = self.checkpoints[&seq]
            .values()
            .filter(|b| **b == body)
            .count();
        if agreeing >= self.quorum && seq > self.stable {
            // Stable: a quorum executed to the same state. Our own root must match.
            if let Some(mine) = self.executed.get(&seq) {
                assert_eq!(
                    *mine, body.state_root,
                    "state divergence at height {seq}: a quorum has state root {}, this replica {mine}",
                    body.state_root
                );
            }
            self.stable = seq;
            self.checkpoints = self.checkpoints.split_off(&(seq + 1));
            self.count("stable_checkpoints");
        }
    }
}
