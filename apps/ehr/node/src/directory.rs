//! The public hospital search on this node, from an index of the approved hospitals.
//!
//! Anyone may register a hospital (it stays pending until an administrator approves it), so
//! the directory in state can hold any number of pending registrations. The search must not
//! read them: the node keeps the keys of the approved hospitals in memory (one scan when the
//! app starts, then the commit hook: every hospital a committed block registered, approved or
//! suspended is read again), and a search reads only those, again from state, so an answer is
//! never staler than the state itself. A search waits (`EhrNode::hospital_index_caught_up`) for the hooks to run through the blocks
//! committed before it (bounded by [`HOOK_WAIT`]), so a hospital approved by a transaction whose
//! commit was acknowledged is found by the next search.

use medchain_app::CommittedBlock;
use medchain_chaincode::{ChaincodeError, StateView};
use medchain_ehr::chaincode::{Hospital, NAME};
use medchain_ehr::Ehr;
use medchain_types::PublicKey;
use std::collections::BTreeSet;
use std::sync::RwLock;
use std::time::Duration;

/// How long a search waits for the commit hooks to catch up before it answers from the index
/// as it is.
pub const HOOK_WAIT: Duration = Duration::from_secs(2);

/// The events after which a hospital's approval may have changed.
const HOSPITAL_EVENTS: [&str; 3] = [
    "hospital_registered",
    "hospital_approved",
    "hospital_suspended",
];

/// The keys of the approved hospitals, as far as the commit hook has run.
#[derive(Debug, Default)]
pub struct HospitalIndex(RwLock<BTreeSet<PublicKey>>);

impl HospitalIndex {
    /// The index of the approved hospitals in `view` (one scan of the directory).
    pub fn build(view: &dyn StateView) -> Result<HospitalIndex, ChaincodeError> {
        let keys = Ehr::approved_hospitals(view)?;
        Ok(HospitalIndex(RwLock::new(keys.into_iter().collect())))
    }

    /// How many hospitals it holds.
    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The commit hook: each hospital whose registration or approval `block` changed is read
    /// again from `view` (the latest state: idempotent, whatever order the blocks come in).
    pub fn on_committed(&self, view: &dyn StateView, block: &CommittedBlock) {
        let touched: BTreeSet<PublicKey> = block
            .receipts
            .iter()
            .flat_map(|r| &r.events)
            .filter(|e| e.chaincode == NAME && HOSPITAL_EVENTS.contains(&e.kind.as_str()))
            .filter_map(|e| PublicKey::from_slice(&e.data))
            .collect();
        for k in touched {
            let approved = Ehr::search_hospitals(view, [&k], "").map(|h| !h.is_empty());
            let mut set = self.0.write().unwrap_or_else(|e| e.into_inner());
            match approved {
                Ok(true) => {
                    set.insert(k);
                }
                Ok(false) => {
                    set.remove(&k);
                }
                Err(e) => {
                    // Kept as a candidate: a search reads it again and drops it if need be.
                    set.insert(k);
                    tracing::error!(hospital = %k, error = %e, "cannot read a hospital for the index");
                }
            }
        }
    }

    /// The approved hospitals whose name or treatments contain `search`.
    pub fn search(
        &self,
        view: &dyn StateView,
        search: &str,
    ) -> Result<Vec<Hospital>, ChaincodeError> {
        let keys: Vec<PublicKey> = self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        Ehr::search_hospitals(view, &keys, search)
    }
}
