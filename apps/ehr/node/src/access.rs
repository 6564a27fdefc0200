//! Who may read what, now: the chaincode's access rule, and the audit-before-read rule (a reader
//! other than the patient must have committed a `LogRead` of the object within the last 10
//! minutes, so every read of personal data is on the chain before the data leaves the node).

use crate::state::EhrNode;
use medchain_app::ApiError;
use medchain_ehr::chaincode::{Basis, DocumentAnchor};
use medchain_ehr::{Ehr, EhrQuery};
use medchain_types::PublicKey;

/// How recent the reader's `LogRead` must be.
pub const AUDIT_FRESH_MS: u64 = 10 * 60 * 1000;

/// The reader may read the patient's `object` (`profile`, `case/<id>`, `doc/<id>`) now, and
/// logged the read if it is not the patient: 403 without access, 428 without a fresh log.
pub fn may_read_object(
    node: &EhrNode,
    reader: &PublicKey,
    patient: &PublicKey,
    object: &str,
) -> Result<(), ApiError> {
    let now = medchain_app::now_ms();
    let basis = Ehr::access_object(node.view().as_ref(), patient, reader, object, now)
        .map_err(|e| ApiError::forbidden(e.to_string()))?;
    if basis == Basis::Owner {
        return Ok(());
    }
    // The reader's last logged read of this object, looked up directly: however long the
    // patient's audit log, a read stays possible.
    let last: Option<u64> = node.query_as(&EhrQuery::LastRead {
        patient: *patient,
        reader: *reader,
        object: object.to_owned(),
    })?;
    if last.is_none_or(|at| at + AUDIT_FRESH_MS < now) {
        return Err(ApiError::new(
            axum::http::StatusCode::PRECONDITION_REQUIRED,
            format!("commit a LogRead of {object} first (every read of personal data is audited)"),
        ));
    }
    Ok(())
}

/// The reader may read document `d` now (see [`may_read_object`]).
pub fn may_read_document(
    node: &EhrNode,
    reader: &PublicKey,
    d: &DocumentAnchor,
) -> Result<(), ApiError> {
    may_read_object(node, reader, &d.patient, &format!("doc/{}", d.doc_id))
}
