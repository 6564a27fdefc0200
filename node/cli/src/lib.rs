//! The `medchain` binary's composition: the apps it is built with. This list is the one place
//! where apps are named; the node crate drives them through `medchain-app`.

use medchain_app::App;
use std::sync::Arc;

/// The apps of this build, in the order their genesis sections are sealed into block 0 (a new
/// app goes at the end, so existing consortia keep their block 0).
pub fn apps() -> Vec<Arc<dyn App>> {
    vec![
        Arc::new(medchain_ehr_node::EhrApp),
        Arc::new(medchain_kv_app::KvApp),
    ]
}
