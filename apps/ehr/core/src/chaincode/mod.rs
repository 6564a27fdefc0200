//! The `ehr` chaincode: roles, consent, cases, document anchors, audit, break-glass and
//! erasure, each transaction checked against its sender's role and the patient's grants.
//!
//! **No personal data on the chain.** A patient is a pseudonym: its ed25519 key, for life. Its
//! profile (name, date of birth, contact, ...) lives encrypted in the vault; the chain keeps a
//! salted commitment (`SHA-256(salt || profile)`) and the blob's address. Cases and documents
//! are vault blobs too; the chain keeps their hashes, kind, author, patient pseudonym and time.
//! Doctors appear as keys with a commitment to their profile. Hospitals are organizations and
//! register a public profile (name, address, contact, treatments) so that patients can find
//! them.
//!
//! **Roles.** Administrators (fixed when the chaincode is installed, from genesis) approve
//! hospitals. An approved hospital registers its doctors and asks patients for access. A
//! patient grants a hospital scopes (profile, cases, documents), read or read-write, until an
//! expiry, and revokes. A doctor acts under its hospital's grant, or by break-glass (allowed,
//! for 24 hours, recorded and flagged to the patient). Every read of personal data is logged
//! (`LogRead`) before the data is served, and the patient can list the log.

mod exec;
mod parties;
mod queries;
mod types;
pub use parties::strip_patient;
pub use queries::query_name;

use crate::note::SealedNote;
use medchain_chaincode::{Chaincode, ChaincodeError, StateView, Stub};
use medchain_types::{codec, Hash, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
pub use types::*;

/// The chaincode's name in transactions.
pub const NAME: &str = "ehr";
/// The event a registration that replaces a profile emits (its data: the old blob's address,
/// hex): nodes delete that blob.
pub const PROFILE_REPLACED: &str = "profile_replaced";
/// The event an erasure emits (its data: the document id): nodes destroy its blob and keys.
pub const ERASED: &str = "erased";
/// How long break-glass access lasts.
pub const BREAK_GLASS_MS: u64 = 24 * 3600 * 1000;
/// Most bytes of a free-text field (purpose, reason, profile fields).
pub const TEXT_MAX: usize = 512;
/// Most entries a list query returns.
pub const LIST_MAX: usize = 1000;

/// The chaincode.
#[derive(Debug, Clone)]
pub struct Ehr {
    admins: BTreeSet<PublicKey>,
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&b'/')
}

/// The key of the time `reader` last logged a read of `object` of `patient`: the read check
/// looks it up directly, however long the patient's audit log.
fn last_read_key(patient: &PublicKey, reader: &PublicKey, object: &str) -> Vec<u8> {
    key(&[
        b"lastread",
        hex(patient).as_bytes(),
        hex(reader).as_bytes(),
        object.as_bytes(),
    ])
}

fn key_of_verifier(k: &PublicKey) -> Vec<u8> {
    key(&[b"verifier", hex(k).as_bytes()])
}

fn key_of_patient(k: &PublicKey) -> Vec<u8> {
    key(&[b"patient", hex(k).as_bytes()])
}

fn hex(k: &PublicKey) -> String {
    k.to_hex()
}

fn get<T: serde::de::DeserializeOwned>(
    view: &dyn StateView,
    k: &[u8],
) -> Result<Option<T>, ChaincodeError> {
    match view.get(k)? {
        None => Ok(None),
        Some(b) => codec::decode(&b)
            .map(Some)
            .map_err(|e| ChaincodeError::Storage(format!("undecodable ehr record: {e}"))),
    }
}

fn put<T: Serialize>(stub: &mut dyn Stub, k: &[u8], v: &T) -> Result<(), ChaincodeError> {
    stub.put(k, &codec::encode(v))
}

fn list<T: serde::de::DeserializeOwned>(
    view: &dyn StateView,
    prefix: &[u8],
) -> Result<Vec<T>, ChaincodeError> {
    view.scan(prefix, None, LIST_MAX)?
        .into_iter()
        .map(|(_, v)| {
            codec::decode(&v)
                .map_err(|e| ChaincodeError::Storage(format!("undecodable ehr record: {e}")))
        })
        .collect()
}

fn check_id(what: &str, id: &str) -> Result<(), ChaincodeError> {
    // Ids name files off chain: none of `.`, `..` or hidden names.
    if medchain_types::is_valid_name(id, 64) && !id.starts_with('.') {
        Ok(())
    } else {
        Err(ChaincodeError::BadRequest(format!(
            "{what} {id:?} must be 1 to 64 characters of a-z 0-9 - _ ."
        )))
    }
}

fn check_text(what: &str, t: &str) -> Result<(), ChaincodeError> {
    if t.len() > TEXT_MAX {
        return Err(ChaincodeError::BadRequest(format!(
            "{what} is longer than {TEXT_MAX} bytes"
        )));
    }
    Ok(())
}

fn forbidden(msg: impl Into<String>) -> ChaincodeError {
    ChaincodeError::Forbidden(msg.into())
}

/// Why an actor may touch a patient's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// It is the patient.
    Owner,
    /// A valid grant (to the actor's hospital).
    Grant,
    /// Break-glass (a doctor, in an emergency).
    BreakGlass,
    /// A share link on one document.
    ShareLink,
}

impl Basis {
    fn as_str(self) -> &'static str {
        match self {
            Basis::Owner => "owner",
            Basis::Grant => "grant",
            Basis::BreakGlass => "break-glass",
            Basis::ShareLink => "share-link",
        }
    }
}

impl Ehr {
    /// The chaincode with its administrators (from genesis).
    pub fn new(admins: impl IntoIterator<Item = PublicKey>) -> Ehr {
        Ehr {
            admins: admins.into_iter().collect(),
        }
    }

    /// Encodes a transaction payload.
    pub fn payload(op: &EhrOp) -> Vec<u8> {
        codec::encode(op)
    }

    /// Encodes a query.
    pub fn request(q: &EhrQuery) -> Vec<u8> {
        codec::encode(q)
    }

    fn hospital(view: &dyn StateView, k: &PublicKey) -> Result<Option<Hospital>, ChaincodeError> {
        get(view, &key(&[b"hospital", hex(k).as_bytes()]))
    }

    fn approved_hospital(view: &dyn StateView, k: &PublicKey) -> Result<Hospital, ChaincodeError> {
        match Self::hospital(view, k)? {
            Some(h) if h.approved => Ok(h),
            Some(_) => Err(forbidden("the hospital is not approved yet")),
            None => Err(forbidden("the sender is not a registered hospital")),
        }
    }

    fn doctor(view: &dyn StateView, k: &PublicKey) -> Result<Option<Doctor>, ChaincodeError> {
        get(view, &key(&[b"doctor", hex(k).as_bytes()]))
    }

    fn patient(view: &dyn StateView, k: &PublicKey) -> Result<Patient, ChaincodeError> {
        get(view, &key(&[b"patient", hex(k).as_bytes()]))?
            .ok_or_else(|| ChaincodeError::NotFound(format!("patient {k}")))
    }

    /// Whether `key` is consortium staff: an approved hospital, or a doctor of one.
    pub fn is_staff(view: &dyn StateView, key: &PublicKey) -> Result<bool, ChaincodeError> {
        let hospital = match Self::doctor(view, key)? {
            Some(d) => d.hospital,
            None => *key,
        };
        Ok(Self::hospital(view, &hospital)?.is_some_and(|h| h.approved))
    }

    /// Whether `holder` holds a share link (live or not) on document `doc_id`.
    pub fn is_share_holder(
        view: &dyn StateView,
        doc_id: &str,
        holder: &PublicKey,
    ) -> Result<bool, ChaincodeError> {
        Ok(view
            .get(&key(&[b"share", doc_id.as_bytes(), hex(holder).as_bytes()]))?
            .is_some())
    }

    /// Whether `actor` may touch `scope` of `patient` at `now` (and on what basis).
    pub fn access(
        view: &dyn StateView,
        patient: &PublicKey,
        actor: &PublicKey,
        scope: Scope,
        write: bool,
        now: u64,
    ) -> Result<Basis, ChaincodeError> {
        if actor == patient {
            return Ok(Basis::Owner);
        }
        // A doctor acts under its hospital's grant.
        let doctor = Self::doctor(view, actor)?;
        let org = doctor.as_ref().map_or(*actor, |d| d.hospital);
        let grant: Option<GrantRecord> = get(
            view,
            &key(&[b"grant", hex(patient).as_bytes(), hex(&org).as_bytes()]),
        )?;
        if let Some(g) = grant {
            if g.revoked_ms.is_none()
                && now < g.expires_ms
                && g.scopes.contains(&scope)
                && (g.write || !write)
                // A suspended hospital's grants, and its doctors', are dormant.
                && Self::hospital(view, &org)?.is_some_and(|h| h.approved)
            {
                return Ok(Basis::Grant);
            }
        }
        // Break-glass reads, never writes: no emergency issues a document for anyone; and only
        // while the doctor's hospital is approved.
        if let Some(d) = doctor.filter(|_| !write) {
            let glass: Option<u64> = get(
                view,
                &key(&[b"glass", hex(patient).as_bytes(), hex(actor).as_bytes()]),
            )?;
            if glass.is_some_and(|until| now < until)
                && Self::hospital(view, &d.hospital)?.is_some_and(|h| h.approved)
            {
                return Ok(Basis::BreakGlass);
            }
        }
        Err(forbidden(format!(
            "no valid {} grant from patient {patient} covers {scope:?}",
            if write { "write" } else { "read" }
        )))
    }

    /// Whether `actor` may read `object` (`profile`, `case/<id>`, `doc/<id>`) of `patient` at
    /// `now`: [`Ehr::access`] for the object's scope, or, for a document, the holder of a live
    /// share link on it.
    pub fn access_object(
        view: &dyn StateView,
        patient: &PublicKey,
        actor: &PublicKey,
        object: &str,
        now: u64,
    ) -> Result<Basis, ChaincodeError> {
        let scope = if object == "profile" {
            Scope::Profile
        } else if object.starts_with("case/") {
            Scope::Cases
        } else if object.starts_with("doc/") {
            Scope::Documents
        } else {
            return Err(ChaincodeError::BadRequest(format!(
                "unknown object {object:?} (profile, case/<id>, doc/<id>)"
            )));
        };
        let refused = match Self::access(view, patient, actor, scope, false, now) {
            Ok(b) => return Ok(b),
            Err(e) => e,
        };
        if let Some(doc_id) = object.strip_prefix("doc/") {
            let doc: Option<DocumentAnchor> = get(view, &key(&[b"doc", doc_id.as_bytes()]))?;
            let share: Option<ShareRecord> = get(
                view,
                &key(&[b"share", doc_id.as_bytes(), hex(actor).as_bytes()]),
            )?;
            if let (Some(d), Some(sh)) = (doc, share) {
                // A link made by anyone but the patient lasts only as long as its maker's own
                // access to the patient's documents.
                if d.patient == *patient
                    && d.erased_ms.is_none()
                    && sh.revoked_ms.is_none()
                    && now < sh.expires_ms
                    && (sh.by == *patient
                        || Self::access(view, patient, &sh.by, Scope::Documents, false, now)
                            .is_ok())
                {
                    return Ok(Basis::ShareLink);
                }
            }
        }
        Err(refused)
    }

    /// The document, if `me` may share it: its patient, or its issuing doctor while the
    /// doctor's hospital still holds the patient's grant on documents (a revocation ends the
    /// issuer's sharing too).
    fn sharer_of(
        view: &dyn StateView,
        doc_id: &str,
        me: &PublicKey,
        now: u64,
    ) -> Result<DocumentAnchor, ChaincodeError> {
        let d: DocumentAnchor = get(view, &key(&[b"doc", doc_id.as_bytes()]))?
            .ok_or_else(|| ChaincodeError::NotFound(format!("document {doc_id}")))?;
        if d.patient != *me && d.issuer != *me {
            return Err(forbidden(
                "only the patient or the issuing doctor shares a document",
            ));
        }
        if d.patient != *me {
            Self::access(view, &d.patient, me, Scope::Documents, false, now).map_err(|_| {
                forbidden("the issuer's hospital no longer holds a documents grant")
            })?;
        }
        if d.erased_ms.is_some() {
            return Err(ChaincodeError::Rejected(format!(
                "document {doc_id} was erased"
            )));
        }
        Ok(d)
    }

    /// A vault blob belongs to one record: anchoring another record's blob (to read it, or to
    /// have it destroyed by an erasure) is refused.
    fn claim_blob(stub: &mut dyn Stub, blob: &Hash, record: &str) -> Result<(), ChaincodeError> {
        let k = key(&[b"blob", blob.to_hex().as_bytes()]);
        match stub.get(&k)? {
            Some(owner) if owner != record.as_bytes() => Err(ChaincodeError::Rejected(format!(
                "blob {blob} is already anchored for another record"
            ))),
            Some(_) => Ok(()),
            None => stub.put(&k, record.as_bytes()),
        }
    }

    fn audit(
        stub: &mut dyn Stub,
        patient: &PublicKey,
        event: &AuditEvent,
    ) -> Result<(), ChaincodeError> {
        let k = format!(
            "audit/{}/{:020}/{}",
            hex(patient),
            stub.height(),
            stub.tx_hash()
        );
        put(stub, k.as_bytes(), event)?;
        let kind = if event.flagged {
            "audit_flagged"
        } else {
            "audit"
        };
        stub.emit(kind, patient.as_bytes())
    }
}

impl Chaincode for Ehr {
    fn name(&self) -> &str {
        NAME
    }

    fn execute(&self, stub: &mut dyn Stub, payload: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        let op: EhrOp =
            codec::decode(payload).map_err(|e| ChaincodeError::BadRequest(e.to_string()))?;
        self.exec(stub, op)?;
        Ok(Vec::new())
    }

    fn query(&self, view: &dyn StateView, request: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        let q: EhrQuery =
            codec::decode(request).map_err(|e| ChaincodeError::BadRequest(e.to_string()))?;
        self.answer(view, q)
    }

    /// Everything here concerns patients: the raw chain routes serve none of it.
    fn private(&self) -> bool {
        true
    }

    /// Nodes admit no operation that is not one, and no free text in clear: a purpose or a
    /// reason goes sealed (`RequestAccessSealed`, `BreakGlassSealed`), and a new case or
    /// document takes an opaque id (`records::new_id`). Admission only: blocks committed
    /// before a rule existed execute as they always did.
    fn screen(&self, payload: &[u8]) -> Result<(), ChaincodeError> {
        let op: EhrOp = codec::decode(payload)
            .map_err(|e| ChaincodeError::BadRequest(format!("not an ehr operation: {e}")))?;
        match op {
            EhrOp::RequestAccess { purpose, .. } if !purpose.is_empty() => {
                Err(ChaincodeError::BadRequest(
                    "a purpose is never sent in clear: seal it for the patient (RequestAccessSealed)"
                        .into(),
                ))
            }
            EhrOp::RecordCase { case_id: id, .. } | EhrOp::IssueDocument { doc_id: id, .. }
                if !crate::records::is_opaque(&id) =>
            {
                Err(ChaincodeError::BadRequest(format!(
                    "a new case or document id is opaque: {} lowercase hex characters chosen \
                     at random ({id:?} is not); what a person calls the record goes inside its \
                     encrypted contents",
                    crate::records::OPAQUE_ID_LEN
                )))
            }
            EhrOp::BreakGlass { .. } => Err(ChaincodeError::BadRequest(
                "a break-glass reason is never sent in clear: seal it for the patient \
                 (BreakGlassSealed)"
                    .into(),
            )),
            _ => Ok(()),
        }
    }
}
