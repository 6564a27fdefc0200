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

use medchain_chaincode::{Chaincode, ChaincodeError, StateView, Stub};
use medchain_types::{codec, Hash, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The chaincode's name in transactions.
pub const NAME: &str = "ehr";
/// How long break-glass access lasts.
pub const BREAK_GLASS_MS: u64 = 24 * 3600 * 1000;
/// Most bytes of a free-text field (purpose, reason, profile fields).
pub const TEXT_MAX: usize = 512;
/// Most entries a list query returns.
pub const LIST_MAX: usize = 1000;

/// What a grant covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// The patient's profile.
    Profile,
    /// Cases (problem, blood pressure, blood glucose, notes).
    Cases,
    /// Reports, certificates, prescriptions.
    Documents,
}

/// Kinds of documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DocKind {
    /// A medical report.
    Report,
    /// A medical certificate.
    Certificate,
    /// A prescription.
    Prescription,
}

/// A hospital's public profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HospitalProfile {
    /// Name.
    pub name: String,
    /// Postal address.
    pub address: String,
    /// Contact (phone, email of the front desk).
    pub contact: String,
    /// Treatments offered.
    pub treatments: Vec<String>,
}

/// A transaction of the `ehr` chaincode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EhrOp {
    /// A hospital registers (pending until an administrator approves it).
    RegisterHospital(HospitalProfile),
    /// An administrator approves a hospital.
    ApproveHospital {
        /// The hospital.
        hospital: PublicKey,
    },
    /// An approved hospital registers one of its doctors.
    RegisterDoctor {
        /// The doctor's key.
        doctor: PublicKey,
        /// Salted commitment to the doctor's profile (kept off chain).
        profile_commitment: Hash,
    },
    /// A patient registers its pseudonym (the sender).
    RegisterPatient {
        /// Salted commitment to the profile.
        profile_commitment: Hash,
        /// The encrypted profile in the vault.
        profile_blob: Option<Hash>,
    },
    /// An approved hospital asks a patient for access.
    RequestAccess {
        /// The patient.
        patient: PublicKey,
        /// Why.
        purpose: String,
        /// What.
        scopes: Vec<Scope>,
    },
    /// A patient grants a hospital access (replacing any earlier grant to it).
    Grant {
        /// The hospital.
        grantee: PublicKey,
        /// What.
        scopes: Vec<Scope>,
        /// Whether it may add cases and documents, not only read.
        write: bool,
        /// Until when (block time, milliseconds since the Unix epoch).
        expires_ms: u64,
    },
    /// A patient revokes a hospital's access.
    Revoke {
        /// The hospital.
        grantee: PublicKey,
    },
    /// A hospital (or its doctor) with write access to cases records one.
    RecordCase {
        /// The patient.
        patient: PublicKey,
        /// The case's id (unique per patient).
        case_id: String,
        /// The encrypted case in the vault.
        blob: Hash,
        /// SHA-256 of the case's plaintext.
        content_sha256: Hash,
    },
    /// A doctor issues a document whose plaintext hash is anchored here.
    IssueDocument {
        /// The document's id (unique).
        doc_id: String,
        /// The patient.
        patient: PublicKey,
        /// Report, certificate or prescription.
        kind: DocKind,
        /// SHA-256 of the document's plaintext.
        plaintext_sha256: Hash,
        /// The encrypted document in the vault.
        blob: Hash,
        /// An earlier document of the same patient this one replaces.
        supersedes: Option<String>,
    },
    /// A reader records that it is reading a patient's personal data (before it is served).
    LogRead {
        /// The patient.
        patient: PublicKey,
        /// What is read (`profile`, `case/<id>`, `doc/<id>`).
        object: String,
    },
    /// A doctor takes emergency access to a patient's record.
    BreakGlass {
        /// The patient.
        patient: PublicKey,
        /// Why.
        reason: String,
    },
    /// A patient has a document erased (its ciphertext and keys are destroyed off chain).
    Erase {
        /// The document.
        doc_id: String,
    },
    /// The patient or the issuing doctor lets whoever holds the share-link key `holder` read
    /// one document until `expires_ms` (at most 30 days ahead). The transaction is the
    /// capability: signed by its creator, on chain, listable and revocable.
    ShareDocument {
        /// The document.
        doc_id: String,
        /// The share link's public key (its secret travels in the link).
        holder: PublicKey,
        /// Until when (block time, milliseconds since the Unix epoch).
        expires_ms: u64,
    },
    /// Ends a share link before its expiry (the patient or the issuer).
    Unshare {
        /// The document.
        doc_id: String,
        /// The share link's public key.
        holder: PublicKey,
    },
}

/// A share link on one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    /// The document.
    pub doc_id: String,
    /// The link's public key.
    pub holder: PublicKey,
    /// Who created it (the patient or the issuer).
    pub by: PublicKey,
    /// Until when.
    pub expires_ms: u64,
    /// When created.
    pub at_ms: u64,
    /// When revoked, if it was.
    pub revoked_ms: Option<u64>,
}

/// Longest share link: 30 days.
pub const SHARE_MAX_MS: u64 = 30 * 24 * 3600 * 1000;

/// A registered hospital.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hospital {
    /// Its key.
    pub key: PublicKey,
    /// Its public profile.
    pub profile: HospitalProfile,
    /// Approved by an administrator.
    pub approved: bool,
    /// Registration time.
    pub registered_ms: u64,
}

/// A registered doctor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doctor {
    /// Its key.
    pub key: PublicKey,
    /// Its hospital.
    pub hospital: PublicKey,
    /// Commitment to its profile.
    pub profile_commitment: Hash,
}

/// A registered patient (a pseudonym).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    /// The pseudonym.
    pub key: PublicKey,
    /// Commitment to the profile.
    pub profile_commitment: Hash,
    /// The encrypted profile's vault address.
    pub profile_blob: Option<Hash>,
    /// Registration time.
    pub registered_ms: u64,
}

/// A patient's grant to a hospital.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The hospital.
    pub grantee: PublicKey,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Read-write.
    pub write: bool,
    /// Expiry.
    pub expires_ms: u64,
    /// When granted.
    pub granted_ms: u64,
    /// When revoked, if it was.
    pub revoked_ms: Option<u64>,
}

/// A hospital's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// The hospital.
    pub hospital: PublicKey,
    /// Why.
    pub purpose: String,
    /// What.
    pub scopes: Vec<Scope>,
    /// When.
    pub at_ms: u64,
}

/// A recorded case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// Its id.
    pub case_id: String,
    /// The patient.
    pub patient: PublicKey,
    /// The hospital that recorded it.
    pub hospital: PublicKey,
    /// The sender (the hospital or one of its doctors).
    pub author: PublicKey,
    /// The encrypted case.
    pub blob: Hash,
    /// SHA-256 of its plaintext.
    pub content_sha256: Hash,
    /// When.
    pub at_ms: u64,
}

/// A document's anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentAnchor {
    /// Its id.
    pub doc_id: String,
    /// The patient pseudonym.
    pub patient: PublicKey,
    /// The issuing doctor.
    pub issuer: PublicKey,
    /// The doctor's hospital.
    pub hospital: PublicKey,
    /// Kind.
    pub kind: DocKind,
    /// SHA-256 of the plaintext.
    pub plaintext_sha256: Hash,
    /// The encrypted document's vault address (BLAKE3 of the blob).
    pub blob: Hash,
    /// When (block time).
    pub at_ms: u64,
    /// Height of the anchoring block.
    pub height: u64,
    /// The anchoring transaction.
    pub tx: Hash,
    /// The document it replaces.
    pub supersedes: Option<String>,
    /// The document that replaced it.
    pub superseded_by: Option<String>,
    /// Erased at the patient's request (when).
    pub erased_ms: Option<u64>,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Who.
    pub reader: PublicKey,
    /// What (`profile`, `case/<id>`, `doc/<id>`, `break-glass`).
    pub object: String,
    /// Under which right: `owner`, `grant`, `break-glass`.
    pub basis: String,
    /// Flagged to the patient (break-glass).
    pub flagged: bool,
    /// Free text (break-glass reason).
    pub note: String,
    /// When.
    pub at_ms: u64,
}

/// A verdict on a file's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The hash is anchored.
    Authentic(Box<DocumentAnchor>),
    /// A document id was given and its anchored hash differs.
    Tampered {
        /// The document the file claims to be.
        anchored: Box<DocumentAnchor>,
        /// The hash of the file presented.
        presented: Hash,
    },
    /// Nothing is anchored for this hash (or this id).
    Unknown,
}

/// Read-only requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EhrQuery {
    /// Approved hospitals whose name or treatments contain the text (case-insensitive).
    Hospitals {
        /// Search text (empty: all).
        search: String,
        /// Include those not yet approved (for administrators).
        pending: bool,
    },
    /// One doctor.
    Doctor(PublicKey),
    /// One patient.
    Patient(PublicKey),
    /// A patient's grants.
    Grants(PublicKey),
    /// Requests to a patient.
    Requests(PublicKey),
    /// A patient's cases.
    Cases(PublicKey),
    /// A patient's documents.
    Documents(PublicKey),
    /// One document.
    Document(String),
    /// Is this file hash anchored (for this document)?
    Verify {
        /// SHA-256 of the file.
        sha256: Hash,
        /// The document it claims to be.
        doc_id: Option<String>,
    },
    /// A patient's audit log.
    Audit(PublicKey),
    /// The administrator's overview: hospitals, doctors and patient pseudonyms.
    Users,
    /// Every anchored vault record (documents and cases), for the verifier's audit.
    Anchors,
    /// May `actor` read (or write) `scope` of `patient` now (`now_ms`)?
    Access {
        /// The patient.
        patient: PublicKey,
        /// Who asks.
        actor: PublicKey,
        /// What.
        scope: Scope,
        /// Writing.
        write: bool,
        /// The time to judge expiry at.
        now_ms: u64,
    },
    /// A document's share links.
    Shares(String),
    /// One case.
    Case {
        /// The patient.
        patient: PublicKey,
        /// The case's id.
        case_id: String,
    },
    /// The record a vault blob is anchored for (`doc/<id>`, `case/<patient>/<id>`,
    /// `profile/<patient>`), if any.
    BlobRecord(Hash),
}

/// A vault record and the blob address anchored for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchoredBlob {
    /// `doc/<id>` or `case/<id>`.
    pub record: String,
    /// The patient pseudonym.
    pub patient: PublicKey,
    /// The anchored blob address.
    pub blob: Hash,
    /// Erased at the patient's request.
    pub erased: bool,
}

/// The administrator's overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Users {
    /// Hospitals.
    pub hospitals: Vec<Hospital>,
    /// Doctors.
    pub doctors: Vec<Doctor>,
    /// Patients (pseudonyms and registration times only).
    pub patients: Vec<Patient>,
}

/// The chaincode.
#[derive(Debug, Clone)]
pub struct Ehr {
    admins: BTreeSet<PublicKey>,
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&b'/')
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
            {
                return Ok(Basis::Grant);
            }
        }
        if doctor.is_some() {
            let glass: Option<u64> = get(
                view,
                &key(&[b"glass", hex(patient).as_bytes(), hex(actor).as_bytes()]),
            )?;
            if glass.is_some_and(|until| now < until) {
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
                if d.patient == *patient
                    && d.erased_ms.is_none()
                    && sh.revoked_ms.is_none()
                    && now < sh.expires_ms
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

    fn exec(&self, stub: &mut dyn Stub, op: EhrOp) -> Result<(), ChaincodeError> {
        let me = *stub.caller();
        let now = stub.time_ms();
        match op {
            EhrOp::RegisterHospital(profile) => {
                for t in [&profile.name, &profile.address, &profile.contact] {
                    check_text("a profile field", t)?;
                }
                if profile.name.trim().is_empty() {
                    return Err(ChaincodeError::BadRequest("a hospital needs a name".into()));
                }
                if profile.treatments.len() > 64 {
                    return Err(ChaincodeError::BadRequest("at most 64 treatments".into()));
                }
                for t in &profile.treatments {
                    check_text("a treatment", t)?;
                }
                let k = key(&[b"hospital", hex(&me).as_bytes()]);
                let approved = match get::<Hospital>(stub, &k)? {
                    Some(h) => h.approved,
                    None => {
                        if Self::doctor(stub, &me)?.is_some()
                            || stub
                                .get(&key(&[b"patient", hex(&me).as_bytes()]))?
                                .is_some()
                        {
                            return Err(forbidden("this key already has another role"));
                        }
                        false
                    }
                };
                put(
                    stub,
                    &k,
                    &Hospital {
                        key: me,
                        profile,
                        approved,
                        registered_ms: now,
                    },
                )?;
                stub.emit("hospital_registered", me.as_bytes())
            }
            EhrOp::ApproveHospital { hospital } => {
                if !self.admins.contains(&me) {
                    return Err(forbidden("only administrators approve hospitals"));
                }
                let k = key(&[b"hospital", hex(&hospital).as_bytes()]);
                let mut h: Hospital = get(stub, &k)?
                    .ok_or_else(|| ChaincodeError::NotFound(format!("hospital {hospital}")))?;
                h.approved = true;
                put(stub, &k, &h)?;
                stub.emit("hospital_approved", hospital.as_bytes())
            }
            EhrOp::RegisterDoctor {
                doctor,
                profile_commitment,
            } => {
                Self::approved_hospital(stub, &me)?;
                let k = key(&[b"doctor", hex(&doctor).as_bytes()]);
                if let Some(d) = Self::doctor(stub, &doctor)? {
                    if d.hospital != me {
                        return Err(forbidden("the doctor belongs to another hospital"));
                    }
                }
                if Self::hospital(stub, &doctor)?.is_some()
                    || stub
                        .get(&key(&[b"patient", hex(&doctor).as_bytes()]))?
                        .is_some()
                {
                    return Err(forbidden("this key already has another role"));
                }
                put(
                    stub,
                    &k,
                    &Doctor {
                        key: doctor,
                        hospital: me,
                        profile_commitment,
                    },
                )?;
                stub.emit("doctor_registered", doctor.as_bytes())
            }
            EhrOp::RegisterPatient {
                profile_commitment,
                profile_blob,
            } => {
                if Self::hospital(stub, &me)?.is_some() || Self::doctor(stub, &me)?.is_some() {
                    return Err(forbidden("this key already has another role"));
                }
                let k = key(&[b"patient", hex(&me).as_bytes()]);
                if let Some(b) = &profile_blob {
                    Self::claim_blob(stub, b, &format!("profile/{}", hex(&me)))?;
                }
                let registered_ms = get::<Patient>(stub, &k)?.map_or(now, |p| p.registered_ms);
                put(
                    stub,
                    &k,
                    &Patient {
                        key: me,
                        profile_commitment,
                        profile_blob,
                        registered_ms,
                    },
                )?;
                stub.emit("patient_registered", me.as_bytes())
            }
            EhrOp::RequestAccess {
                patient,
                purpose,
                scopes,
            } => {
                Self::approved_hospital(stub, &me)?;
                Self::patient(stub, &patient)?;
                check_text("the purpose", &purpose)?;
                if scopes.is_empty() {
                    return Err(ChaincodeError::BadRequest("no scope requested".into()));
                }
                let k = key(&[b"request", hex(&patient).as_bytes(), hex(&me).as_bytes()]);
                put(
                    stub,
                    &k,
                    &AccessRequest {
                        hospital: me,
                        purpose,
                        scopes,
                        at_ms: now,
                    },
                )?;
                stub.emit("access_requested", patient.as_bytes())
            }
            EhrOp::Grant {
                grantee,
                scopes,
                write,
                expires_ms,
            } => {
                Self::patient(stub, &me)?;
                Self::approved_hospital(stub, &grantee)
                    .map_err(|_| forbidden("grants go to approved hospitals"))?;
                if expires_ms <= now {
                    return Err(ChaincodeError::BadRequest(
                        "the expiry is in the past".into(),
                    ));
                }
                let mut scopes = scopes;
                scopes.sort();
                scopes.dedup();
                let k = key(&[b"grant", hex(&me).as_bytes(), hex(&grantee).as_bytes()]);
                put(
                    stub,
                    &k,
                    &GrantRecord {
                        grantee,
                        scopes,
                        write,
                        expires_ms,
                        granted_ms: now,
                        revoked_ms: None,
                    },
                )?;
                stub.delete(&key(&[
                    b"request",
                    hex(&me).as_bytes(),
                    hex(&grantee).as_bytes(),
                ]))?;
                stub.emit("granted", grantee.as_bytes())
            }
            EhrOp::Revoke { grantee } => {
                let k = key(&[b"grant", hex(&me).as_bytes(), hex(&grantee).as_bytes()]);
                let mut g: GrantRecord = get(stub, &k)?
                    .ok_or_else(|| ChaincodeError::NotFound(format!("grant to {grantee}")))?;
                g.revoked_ms = Some(now);
                put(stub, &k, &g)?;
                stub.emit("revoked", grantee.as_bytes())
            }
            EhrOp::RecordCase {
                patient,
                case_id,
                blob,
                content_sha256,
            } => {
                check_id("case id", &case_id)?;
                Self::patient(stub, &patient)?;
                let hospital = match Self::doctor(stub, &me)? {
                    Some(d) => d.hospital,
                    None => {
                        Self::approved_hospital(stub, &me)?;
                        me
                    }
                };
                let basis = Self::access(stub, &patient, &me, Scope::Cases, true, now)?;
                let k = key(&[b"case", hex(&patient).as_bytes(), case_id.as_bytes()]);
                if stub.get(&k)?.is_some() {
                    return Err(ChaincodeError::Rejected(format!("case {case_id} exists")));
                }
                Self::claim_blob(stub, &blob, &format!("case/{}/{case_id}", hex(&patient)))?;
                put(
                    stub,
                    &k,
                    &CaseRecord {
                        case_id: case_id.clone(),
                        patient,
                        hospital,
                        author: me,
                        blob,
                        content_sha256,
                        at_ms: now,
                    },
                )?;
                Self::audit(
                    stub,
                    &patient,
                    &AuditEvent {
                        reader: me,
                        object: format!("case/{case_id}"),
                        basis: basis.as_str().into(),
                        flagged: basis == Basis::BreakGlass,
                        note: "recorded".into(),
                        at_ms: now,
                    },
                )
            }
            EhrOp::IssueDocument {
                doc_id,
                patient,
                kind,
                plaintext_sha256,
                blob,
                supersedes,
            } => {
                check_id("document id", &doc_id)?;
                let doctor = Self::doctor(stub, &me)?
                    .ok_or_else(|| forbidden("only doctors issue documents"))?;
                Self::approved_hospital(stub, &doctor.hospital)?;
                Self::patient(stub, &patient)?;
                let basis = Self::access(stub, &patient, &me, Scope::Documents, true, now)?;
                let k = key(&[b"doc", doc_id.as_bytes()]);
                if stub.get(&k)?.is_some() {
                    return Err(ChaincodeError::Rejected(format!(
                        "document {doc_id} exists"
                    )));
                }
                Self::claim_blob(stub, &blob, &format!("doc/{doc_id}"))?;
                if let Some(old_id) = &supersedes {
                    let ok = key(&[b"doc", old_id.as_bytes()]);
                    let mut old: DocumentAnchor = get(stub, &ok)?.ok_or_else(|| {
                        ChaincodeError::NotFound(format!("superseded document {old_id}"))
                    })?;
                    if old.patient != patient {
                        return Err(forbidden("a document supersedes only one of its patient's"));
                    }
                    if old.superseded_by.is_some() {
                        return Err(ChaincodeError::Rejected(format!(
                            "{old_id} is already superseded"
                        )));
                    }
                    old.superseded_by = Some(doc_id.clone());
                    put(stub, &ok, &old)?;
                }
                let anchor = DocumentAnchor {
                    doc_id: doc_id.clone(),
                    patient,
                    issuer: me,
                    hospital: doctor.hospital,
                    kind,
                    plaintext_sha256,
                    blob,
                    at_ms: now,
                    height: stub.height(),
                    tx: *stub.tx_hash(),
                    supersedes,
                    superseded_by: None,
                    erased_ms: None,
                };
                put(stub, &k, &anchor)?;
                stub.put(
                    &key(&[
                        b"dochash",
                        plaintext_sha256.to_hex().as_bytes(),
                        doc_id.as_bytes(),
                    ]),
                    doc_id.as_bytes(),
                )?;
                stub.put(
                    &key(&[b"patientdoc", hex(&patient).as_bytes(), doc_id.as_bytes()]),
                    doc_id.as_bytes(),
                )?;
                Self::audit(
                    stub,
                    &patient,
                    &AuditEvent {
                        reader: me,
                        object: format!("doc/{doc_id}"),
                        basis: basis.as_str().into(),
                        flagged: basis == Basis::BreakGlass,
                        note: "issued".into(),
                        at_ms: now,
                    },
                )?;
                stub.emit("document_issued", doc_id.as_bytes())
            }
            EhrOp::LogRead { patient, object } => {
                check_text("the object", &object)?;
                Self::patient(stub, &patient)?;
                let basis = Self::access_object(stub, &patient, &me, &object, now)?;
                if basis == Basis::Owner {
                    return Ok(()); // a patient's own reads are not logged
                }
                Self::audit(
                    stub,
                    &patient,
                    &AuditEvent {
                        reader: me,
                        object,
                        basis: basis.as_str().into(),
                        flagged: basis == Basis::BreakGlass,
                        note: String::new(),
                        at_ms: now,
                    },
                )
            }
            EhrOp::BreakGlass { patient, reason } => {
                check_text("the reason", &reason)?;
                if reason.trim().is_empty() {
                    return Err(ChaincodeError::BadRequest(
                        "break-glass needs a reason".into(),
                    ));
                }
                let d = Self::doctor(stub, &me)?
                    .ok_or_else(|| forbidden("only doctors can break the glass"))?;
                Self::approved_hospital(stub, &d.hospital)?;
                Self::patient(stub, &patient)?;
                put(
                    stub,
                    &key(&[b"glass", hex(&patient).as_bytes(), hex(&me).as_bytes()]),
                    &(now + BREAK_GLASS_MS),
                )?;
                Self::audit(
                    stub,
                    &patient,
                    &AuditEvent {
                        reader: me,
                        object: "break-glass".into(),
                        basis: Basis::BreakGlass.as_str().into(),
                        flagged: true,
                        note: reason,
                        at_ms: now,
                    },
                )
            }
            EhrOp::Erase { doc_id } => {
                let k = key(&[b"doc", doc_id.as_bytes()]);
                let mut d: DocumentAnchor = get(stub, &k)?
                    .ok_or_else(|| ChaincodeError::NotFound(format!("document {doc_id}")))?;
                if d.patient != me {
                    return Err(forbidden("only the patient erases its documents"));
                }
                if d.erased_ms.is_none() {
                    d.erased_ms = Some(now);
                    put(stub, &k, &d)?;
                }
                stub.emit("erased", doc_id.as_bytes())
            }
            EhrOp::ShareDocument {
                doc_id,
                holder,
                expires_ms,
            } => {
                check_id("document id", &doc_id)?;
                let d = Self::sharer_of(stub, &doc_id, &me, now)?;
                if expires_ms <= now || expires_ms - now > SHARE_MAX_MS {
                    return Err(ChaincodeError::BadRequest(
                        "a share link expires in the future, within 30 days".into(),
                    ));
                }
                let k = key(&[b"share", doc_id.as_bytes(), hex(&holder).as_bytes()]);
                if get::<ShareRecord>(stub, &k)?.is_some() {
                    return Err(ChaincodeError::Rejected(
                        "this share-link key was used before; make a new link".into(),
                    ));
                }
                put(
                    stub,
                    &k,
                    &ShareRecord {
                        doc_id: doc_id.clone(),
                        holder,
                        by: me,
                        expires_ms,
                        at_ms: now,
                        revoked_ms: None,
                    },
                )?;
                Self::audit(
                    stub,
                    &d.patient,
                    &AuditEvent {
                        reader: me,
                        object: format!("share/{doc_id}"),
                        basis: if me == d.patient { "owner" } else { "issuer" }.into(),
                        flagged: me != d.patient,
                        note: format!("share link {holder} until {expires_ms}"),
                        at_ms: now,
                    },
                )
            }
            EhrOp::Unshare { doc_id, holder } => {
                check_id("document id", &doc_id)?;
                Self::sharer_of(stub, &doc_id, &me, now)?;
                let k = key(&[b"share", doc_id.as_bytes(), hex(&holder).as_bytes()]);
                let mut sh: ShareRecord = get(stub, &k)?
                    .ok_or_else(|| ChaincodeError::NotFound(format!("share link {holder}")))?;
                if sh.revoked_ms.is_none() {
                    sh.revoked_ms = Some(now);
                    put(stub, &k, &sh)?;
                }
                stub.emit("unshared", doc_id.as_bytes())
            }
        }
    }

    fn answer(&self, view: &dyn StateView, q: EhrQuery) -> Result<Vec<u8>, ChaincodeError> {
        Ok(match q {
            EhrQuery::Hospitals { search, pending } => {
                let needle = search.to_lowercase();
                let all: Vec<Hospital> = list(view, b"hospital/")?;
                let hits: Vec<Hospital> = all
                    .into_iter()
                    .filter(|h| pending || h.approved)
                    .filter(|h| {
                        needle.is_empty()
                            || h.profile.name.to_lowercase().contains(&needle)
                            || h.profile
                                .treatments
                                .iter()
                                .any(|t| t.to_lowercase().contains(&needle))
                    })
                    .collect();
                codec::encode(&hits)
            }
            EhrQuery::Doctor(k) => codec::encode(&Self::doctor(view, &k)?),
            EhrQuery::Patient(k) => codec::encode(&Self::patient(view, &k).ok()),
            EhrQuery::Grants(p) => codec::encode(&list::<GrantRecord>(
                view,
                &key(&[b"grant", hex(&p).as_bytes(), b""]),
            )?),
            EhrQuery::Requests(p) => codec::encode(&list::<AccessRequest>(
                view,
                &key(&[b"request", hex(&p).as_bytes(), b""]),
            )?),
            EhrQuery::Cases(p) => codec::encode(&list::<CaseRecord>(
                view,
                &key(&[b"case", hex(&p).as_bytes(), b""]),
            )?),
            EhrQuery::Documents(p) => {
                let ids = view.scan(
                    &key(&[b"patientdoc", hex(&p).as_bytes(), b""]),
                    None,
                    LIST_MAX,
                )?;
                let mut docs = Vec::new();
                for (_, id) in ids {
                    if let Some(d) = get::<DocumentAnchor>(view, &key(&[b"doc", &id]))? {
                        docs.push(d);
                    }
                }
                codec::encode(&docs)
            }
            EhrQuery::Document(id) => codec::encode(&get::<DocumentAnchor>(
                view,
                &key(&[b"doc", id.as_bytes()]),
            )?),
            EhrQuery::Verify { sha256, doc_id } => {
                codec::encode(&Self::verify(view, &sha256, doc_id.as_deref())?)
            }
            EhrQuery::Audit(p) => codec::encode(&list::<AuditEvent>(
                view,
                &key(&[b"audit", hex(&p).as_bytes(), b""]),
            )?),
            EhrQuery::Anchors => {
                let docs: Vec<DocumentAnchor> = list(view, b"doc/")?;
                let cases: Vec<CaseRecord> = list(view, b"case/")?;
                let mut out: Vec<AnchoredBlob> = docs
                    .into_iter()
                    .map(|d| AnchoredBlob {
                        record: format!("doc/{}", d.doc_id),
                        patient: d.patient,
                        blob: d.blob,
                        erased: d.erased_ms.is_some(),
                    })
                    .collect();
                out.extend(cases.into_iter().map(|c| AnchoredBlob {
                    record: format!("case/{}", c.case_id),
                    patient: c.patient,
                    blob: c.blob,
                    erased: false,
                }));
                codec::encode(&out)
            }
            EhrQuery::Case { patient, case_id } => codec::encode(&get::<CaseRecord>(
                view,
                &key(&[b"case", hex(&patient).as_bytes(), case_id.as_bytes()]),
            )?),
            EhrQuery::BlobRecord(blob) => codec::encode(
                &view
                    .get(&key(&[b"blob", blob.to_hex().as_bytes()]))?
                    .map(|r| String::from_utf8_lossy(&r).into_owned()),
            ),
            EhrQuery::Shares(id) => codec::encode(&list::<ShareRecord>(
                view,
                &key(&[b"share", id.as_bytes(), b""]),
            )?),
            EhrQuery::Users => codec::encode(&Users {
                hospitals: list(view, b"hospital/")?,
                doctors: list(view, b"doctor/")?,
                patients: list(view, b"patient/")?,
            }),
            EhrQuery::Access {
                patient,
                actor,
                scope,
                write,
                now_ms,
            } => codec::encode(&Self::access(view, &patient, &actor, scope, write, now_ms).is_ok()),
        })
    }

    /// Answers a query as JSON (for the HTTP API and the CLI).
    pub fn query_json(
        &self,
        view: &dyn StateView,
        q: &EhrQuery,
    ) -> Result<serde_json::Value, ChaincodeError> {
        fn j<T: serde::de::DeserializeOwned + Serialize>(
            b: &[u8],
        ) -> Result<serde_json::Value, ChaincodeError> {
            let v: T = codec::decode(b).map_err(|e| ChaincodeError::Storage(e.to_string()))?;
            serde_json::to_value(v).map_err(|e| ChaincodeError::Storage(e.to_string()))
        }
        let b = self.answer(view, q.clone())?;
        match q {
            EhrQuery::Hospitals { .. } => j::<Vec<Hospital>>(&b),
            EhrQuery::Doctor(_) => j::<Option<Doctor>>(&b),
            EhrQuery::Patient(_) => j::<Option<Patient>>(&b),
            EhrQuery::Grants(_) => j::<Vec<GrantRecord>>(&b),
            EhrQuery::Requests(_) => j::<Vec<AccessRequest>>(&b),
            EhrQuery::Cases(_) => j::<Vec<CaseRecord>>(&b),
            EhrQuery::Documents(_) => j::<Vec<DocumentAnchor>>(&b),
            EhrQuery::Document(_) => j::<Option<DocumentAnchor>>(&b),
            EhrQuery::Verify { .. } => j::<Verdict>(&b),
            EhrQuery::Audit(_) => j::<Vec<AuditEvent>>(&b),
            EhrQuery::Users => j::<Users>(&b),
            EhrQuery::Shares(_) => j::<Vec<ShareRecord>>(&b),
            EhrQuery::Case { .. } => j::<Option<CaseRecord>>(&b),
            EhrQuery::BlobRecord(_) => j::<Option<String>>(&b),
            EhrQuery::Anchors => j::<Vec<AnchoredBlob>>(&b),
            EhrQuery::Access { .. } => j::<bool>(&b),
        }
    }

    /// The verdict on a file hash (and the document it claims to be).
    pub fn verify(
        view: &dyn StateView,
        sha256: &Hash,
        doc_id: Option<&str>,
    ) -> Result<Verdict, ChaincodeError> {
        if let Some(id) = doc_id {
            return Ok(
                match get::<DocumentAnchor>(view, &key(&[b"doc", id.as_bytes()]))? {
                    None => Verdict::Unknown,
                    Some(d) if d.plaintext_sha256 == *sha256 => Verdict::Authentic(Box::new(d)),
                    Some(d) => Verdict::Tampered {
                        anchored: Box::new(d),
                        presented: *sha256,
                    },
                },
            );
        }
        let hits = view.scan(
            &key(&[b"dochash", sha256.to_hex().as_bytes(), b""]),
            None,
            1,
        )?;
        match hits.first() {
            Some((_, id)) => match get::<DocumentAnchor>(view, &key(&[b"doc", id]))? {
                Some(d) => Ok(Verdict::Authentic(Box::new(d))),
                None => Ok(Verdict::Unknown),
            },
            None => Ok(Verdict::Unknown),
        }
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
}
