//! The `ehr` chaincode's data: what transactions carry (`EhrOp`), what the state holds (hospitals,
//! doctors, patients, grants, requests, cases, document anchors, share links, audit events),
//! and what queries ask and answer.

use super::*;

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
    /// The doctor's hospital, or an administrator, removes a doctor: its grants-based access,
    /// break-glass and share links end with it.
    RemoveDoctor {
        /// The doctor.
        doctor: PublicKey,
    },
    /// An administrator suspends a hospital: it is pending again (re-approved with
    /// `ApproveHospital`), and its grants, its doctors' access and their share links are
    /// dormant meanwhile.
    SuspendHospital {
        /// The hospital.
        hospital: PublicKey,
    },
    /// An approved hospital asks a patient for access, why sealed for its readers (the patient
    /// among them): the form nodes admit. (`RequestAccess` with a purpose in clear still
    /// executes in old blocks; nodes do not admit it.)
    RequestAccessSealed {
        /// The patient.
        patient: PublicKey,
        /// Why, sealed for the patient (and the hospital, to read it back).
        purpose: SealedNote,
        /// What.
        scopes: Vec<Scope>,
    },
    /// A doctor takes emergency access to a patient's record, why sealed for its readers (the
    /// patient among them): the form nodes admit.
    BreakGlassSealed {
        /// The patient.
        patient: PublicKey,
        /// Why, sealed for the patient (and the doctor, to read it back).
        reason: SealedNote,
    },
    /// An administrator appoints a verifier: it audits the vault (every anchored record
    /// re-hashed) and lists the anchors.
    AddVerifier {
        /// The verifier.
        verifier: PublicKey,
    },
    /// An administrator dismisses a verifier.
    RemoveVerifier {
        /// The verifier.
        verifier: PublicKey,
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
    /// Why: a sealed note as stored in a text field (see [`SealedNote::to_field`]), or, in
    /// requests of old blocks, clear text.
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
    /// What happened; for break-glass, the reason, sealed for the patient (see
    /// [`SealedNote::to_field`]; in events of old blocks, clear text).
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
    /// When `reader` last logged a read of `object` of `patient` (`LogRead`), if ever.
    LastRead {
        /// The patient.
        patient: PublicKey,
        /// The reader.
        reader: PublicKey,
        /// The object (`profile`, `case/<id>`, `doc/<id>`).
        object: String,
    },
    /// A page of a patient's audit log, newest first: up to `limit` (at most 1,000) events
    /// before the cursor `before` (from the previous page's `next`; none: the newest).
    AuditPage {
        /// The patient.
        patient: PublicKey,
        /// Where the previous page ended.
        before: Option<String>,
        /// Events on this page.
        limit: u32,
    },
    /// One hospital, approved or not.
    Hospital(PublicKey),
    /// The roles a key has (see [`Roles`]).
    Roles(PublicKey),
    /// Registered doctors (administrators).
    Doctors,
    /// Registered patients: pseudonyms and registration times (administrators).
    Patients,
    /// Appointed verifiers (administrators and verifiers).
    Verifiers,
    /// A page of a list query, to its end: up to `limit` (at most 1,000) items after the
    /// cursor `after` (the previous page's `next`; none: from the start), and the cursor of the
    /// next page. The lists: `Hospitals`, `Doctors`, `Patients`, `Verifiers`, `Grants`,
    /// `Requests`, `Cases`, `Documents`, `Shares`, `Audit` (oldest first) and `Anchors` (every
    /// anchored blob: profiles, cases and documents). A page may hold fewer than `limit` items
    /// (a filter left some out) and still have a next one.
    Page {
        /// The list.
        query: Box<EhrQuery>,
        /// Where the previous page ended.
        after: Option<String>,
        /// Items on this page.
        limit: u32,
    },
}

/// A page of a list (see [`EhrQuery::Page`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<String>,
}

/// The roles of one key (see [`EhrQuery::Roles`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    /// A consortium administrator (from genesis).
    pub administrator: bool,
    /// An appointed verifier.
    pub verifier: bool,
    /// A registered hospital: whether it is approved.
    pub hospital: Option<bool>,
    /// A doctor: of which hospital.
    pub doctor: Option<PublicKey>,
    /// A registered patient.
    pub patient: bool,
}

/// A page of a patient's audit log (see [`EhrQuery::AuditPage`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// The events, newest first.
    pub events: Vec<AuditEvent>,
    /// The cursor of the next (older) page; `None` on the last.
    pub next: Option<String>,
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
