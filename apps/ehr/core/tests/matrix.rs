//! The authorization matrix of the `ehr` operations: every operation, sent by every role, on
//! the sender's own patient's object and on another's, each row run on its own copy of one
//! consortium's state, with the exact outcome. An operation without a row fails the test (and
//! a new `EhrOp` variant does not compile until it is named here).

mod common;

use common::*;
use medchain_chaincode::ChaincodeError;
use medchain_ehr::chaincode::{DocKind, Scope};
use medchain_ehr::{EhrOp, SealedNote};
use medchain_types::{sha256, PublicKey, SecretKey};
use std::collections::BTreeSet;

/// The roles, in the order of the outcome strings below.
const ROLES: [&str; 12] = [
    "administrator",
    "approved hospital",
    "pending hospital",
    "doctor",
    "patient (the object's)",
    "another patient",
    "stranger",
    "share-link holder",
    "revoked grantee",
    "expired grantee",
    "removed doctor",
    "verifier",
];

/// Outcomes: `o` success, `f` forbidden, `n` not found, `b` bad request, `r` rejected.
fn outcome(r: &Result<(), ChaincodeError>) -> char {
    match r {
        Ok(()) => 'o',
        Err(ChaincodeError::Forbidden(_)) => 'f',
        Err(ChaincodeError::NotFound(_)) => 'n',
        Err(ChaincodeError::BadRequest(_)) => 'b',
        Err(ChaincodeError::Rejected(_)) => 'r',
        Err(_) => '?',
    }
}

/// Every operation's name: adding a variant to `EhrOp` fails here until it has a name (and
/// then the test, until it has a row).
fn name(op: &EhrOp) -> &'static str {
    match op {
        EhrOp::RegisterHospital(_) => "RegisterHospital",
        EhrOp::ApproveHospital { .. } => "ApproveHospital",
        EhrOp::RegisterDoctor { .. } => "RegisterDoctor",
        EhrOp::RegisterPatient { .. } => "RegisterPatient",
        EhrOp::RequestAccess { .. } => "RequestAccess",
        EhrOp::Grant { .. } => "Grant",
        EhrOp::Revoke { .. } => "Revoke",
        EhrOp::RecordCase { .. } => "RecordCase",
        EhrOp::IssueDocument { .. } => "IssueDocument",
        EhrOp::LogRead { .. } => "LogRead",
        EhrOp::BreakGlass { .. } => "BreakGlass",
        EhrOp::Erase { .. } => "Erase",
        EhrOp::ShareDocument { .. } => "ShareDocument",
        EhrOp::Unshare { .. } => "Unshare",
        EhrOp::RemoveDoctor { .. } => "RemoveDoctor",
        EhrOp::SuspendHospital { .. } => "SuspendHospital",
        EhrOp::RequestAccessSealed { .. } => "RequestAccessSealed",
        EhrOp::BreakGlassSealed { .. } => "BreakGlassSealed",
        EhrOp::AddVerifier { .. } => "AddVerifier",
        EhrOp::RemoveVerifier { .. } => "RemoveVerifier",
    }
}

const ALL: [&str; 20] = [
    "RegisterHospital",
    "ApproveHospital",
    "RegisterDoctor",
    "RegisterPatient",
    "RequestAccess",
    "Grant",
    "Revoke",
    "RecordCase",
    "IssueDocument",
    "LogRead",
    "BreakGlass",
    "Erase",
    "ShareDocument",
    "Unshare",
    "RemoveDoctor",
    "SuspendHospital",
    "RequestAccessSealed",
    "BreakGlassSealed",
    "AddVerifier",
    "RemoveVerifier",
];

struct Consortium {
    t: T,
    keys: Vec<SecretKey>,
    pending: PublicKey,
    hospital: PublicKey,
    doctor: PublicKey,
    patient: PublicKey,
    other: PublicKey,
    link: PublicKey,
    verifier: PublicKey,
}

/// One consortium: an administrator; an approved hospital with a doctor and a removed doctor;
/// a pending hospital; hospitals whose grants were revoked and expired; a patient who granted
/// the first hospital everything (with a document its doctor issued, shared by a link, and a
/// case), another patient, a stranger, a verifier.
fn consortium() -> Consortium {
    let keys: Vec<SecretKey> = (1..=12u8).map(|i| k(100 + i)).collect();
    let [admin, hosp, pend, doc, pat, pat2, _stranger, link, rev, exp, removed, ver] =
        <[SecretKey; 12]>::try_from(keys.clone()).unwrap();
    let mut t = T::new(&admin);
    for (h, name) in [
        (&hosp, "St Mary"),
        (&pend, "Pending"),
        (&rev, "Revoked"),
        (&exp, "Expired"),
    ] {
        t.tx(h, EhrOp::RegisterHospital(profile(name))).unwrap();
        if name != "Pending" {
            t.tx(
                &admin,
                EhrOp::ApproveHospital {
                    hospital: h.public(),
                },
            )
            .unwrap();
        }
    }
    for d in [&doc, &removed] {
        t.tx(
            &hosp,
            EhrOp::RegisterDoctor {
                doctor: d.public(),
                profile_commitment: sha256(b"d"),
            },
        )
        .unwrap();
    }
    t.tx(
        &hosp,
        EhrOp::RemoveDoctor {
            doctor: removed.public(),
        },
    )
    .unwrap();
    for p in [&pat, &pat2] {
        t.tx(
            p,
            EhrOp::RegisterPatient {
                profile_commitment: sha256(b"p"),
                profile_blob: None,
            },
        )
        .unwrap();
    }
    let all = vec![Scope::Profile, Scope::Cases, Scope::Documents];
    let grant = |h: &SecretKey, expires_ms| EhrOp::Grant {
        grantee: h.public(),
        scopes: all.clone(),
        write: true,
        expires_ms,
    };
    let now = t.w.time_ms;
    t.tx(&pat, grant(&hosp, 10_000_000_000)).unwrap();
    t.tx(&pat, grant(&rev, 10_000_000_000)).unwrap();
    t.tx(
        &pat,
        EhrOp::Revoke {
            grantee: rev.public(),
        },
    )
    .unwrap();
    t.tx(&pat, grant(&exp, now + 5_000)).unwrap();
    t.tx(
        &doc,
        EhrOp::IssueDocument {
            doc_id: "doc-a".into(),
            patient: pat.public(),
            kind: DocKind::Report,
            plaintext_sha256: sha256(b"doc-a"),
            blob: sha256(b"blob doc-a"),
            supersedes: None,
        },
    )
    .unwrap();
    t.tx(
        &pat,
        EhrOp::ShareDocument {
            doc_id: "doc-a".into(),
            holder: link.public(),
            expires_ms: now + 3_600_000,
        },
    )
    .unwrap();
    t.tx(
        &hosp,
        EhrOp::RecordCase {
            patient: pat.public(),
            case_id: "case-a".into(),
            blob: sha256(b"blob case-a"),
            content_sha256: sha256(b"case-a"),
        },
    )
    .unwrap();
    t.tx(
        &admin,
        EhrOp::AddVerifier {
            verifier: ver.public(),
        },
    )
    .unwrap();
    t.w.time_ms += 10_000; // the expired grant is past its expiry
    Consortium {
        t,
        pending: pend.public(),
        hospital: hosp.public(),
        doctor: doc.public(),
        patient: pat.public(),
        other: pat2.public(),
        link: link.public(),
        verifier: ver.public(),
        keys,
    }
}

#[test]
fn every_operation_by_every_role_on_own_and_another_patients_objects() {
    let c = consortium();
    let fresh = k(200).public();
    let later = c.t.w.time_ms + 3_600_000;
    let note = |patient: PublicKey, sender: &SecretKey| {
        SealedNote::seal("why", &[patient, sender.public()]).unwrap()
    };
    // (row, operation for a sender on a patient, outcomes by role on the patient's object,
    // on another patient's). Operations without a patient take the same outcomes twice.
    type Op<'a> = Box<dyn Fn(&SecretKey, PublicKey) -> EhrOp + 'a>;
    let rows: Vec<(&str, Op, &str, &str)> = vec![
        (
            "register a hospital",
            Box::new(|_, _| EhrOp::RegisterHospital(profile("New"))),
            "ooofffoooooo",
            "ooofffoooooo",
        ),
        (
            "approve the pending hospital",
            Box::new(|_, _| EhrOp::ApproveHospital {
                hospital: c.pending,
            }),
            "offfffffffff",
            "offfffffffff",
        ),
        (
            "suspend the approved hospital",
            Box::new(|_, _| EhrOp::SuspendHospital {
                hospital: c.hospital,
            }),
            "offfffffffff",
            "offfffffffff",
        ),
        (
            "register a doctor",
            Box::new(|_, _| EhrOp::RegisterDoctor {
                doctor: fresh,
                profile_commitment: sha256(b"n"),
            }),
            "foffffffooff",
            "foffffffooff",
        ),
        (
            "remove the hospital's doctor",
            Box::new(|_, _| EhrOp::RemoveDoctor { doctor: c.doctor }),
            "ooffffffffff",
            "ooffffffffff",
        ),
        (
            "register as a patient",
            Box::new(|_, _| EhrOp::RegisterPatient {
                profile_commitment: sha256(b"q"),
                profile_blob: None,
            }),
            "offfooooffoo",
            "offfooooffoo",
        ),
        (
            "appoint a verifier",
            Box::new(|_, _| EhrOp::AddVerifier { verifier: fresh }),
            "offfffffffff",
            "offfffffffff",
        ),
        (
            "dismiss the verifier",
            Box::new(|_, _| EhrOp::RemoveVerifier {
                verifier: c.verifier,
            }),
            "offfffffffff",
            "offfffffffff",
        ),
        (
            "ask for access (sealed)",
            Box::new(|s, p| EhrOp::RequestAccessSealed {
                patient: p,
                purpose: note(p, s),
                scopes: vec![Scope::Cases],
            }),
            "foffffffooff",
            "foffffffooff",
        ),
        (
            "ask for access (old form, in clear)",
            Box::new(|_, p| EhrOp::RequestAccess {
                patient: p,
                purpose: "why".into(),
                scopes: vec![Scope::Cases],
            }),
            "foffffffooff",
            "foffffffooff",
        ),
        (
            "grant the approved hospital",
            Box::new(|_, _| EhrOp::Grant {
                grantee: c.hospital,
                scopes: vec![Scope::Cases],
                write: false,
                expires_ms: later,
            }),
            "nnnnoonnnnnn",
            "nnnnoonnnnnn",
        ),
        (
            "grant the pending hospital",
            Box::new(|_, _| EhrOp::Grant {
                grantee: c.pending,
                scopes: vec![Scope::Cases],
                write: false,
                expires_ms: later,
            }),
            "nnnnffnnnnnn",
            "nnnnffnnnnnn",
        ),
        (
            "revoke the approved hospital",
            Box::new(|_, _| EhrOp::Revoke {
                grantee: c.hospital,
            }),
            "nnnnonnnnnnn",
            "nnnnonnnnnnn",
        ),
        (
            "record a case",
            Box::new(|_, p| EhrOp::RecordCase {
                patient: p,
                case_id: "case-new".into(),
                blob: sha256(b"blob case-new"),
                content_sha256: sha256(b"case-new"),
            }),
            "fofoffffffff",
            "ffffffffffff",
        ),
        (
            "issue a document",
            Box::new(|_, p| EhrOp::IssueDocument {
                doc_id: "doc-new".into(),
                patient: p,
                kind: DocKind::Prescription,
                plaintext_sha256: sha256(b"doc-new"),
                blob: sha256(b"blob doc-new"),
                supersedes: None,
            }),
            "fffoffffffff",
            "ffffffffffff",
        ),
        (
            "log a read of the profile",
            Box::new(|_, p| EhrOp::LogRead {
                patient: p,
                object: "profile".into(),
            }),
            "fofoofffffff",
            "fffffoffffff",
        ),
        (
            "log a read of the shared document",
            Box::new(|_, p| EhrOp::LogRead {
                patient: p,
                object: "doc/doc-a".into(),
            }),
            "fofooffoffff",
            "fffffoffffff",
        ),
        (
            "break the glass (sealed)",
            Box::new(|s, p| EhrOp::BreakGlassSealed {
                patient: p,
                reason: note(p, s),
            }),
            "fffoffffffff",
            "fffoffffffff",
        ),
        (
            "break the glass (old form, in clear)",
            Box::new(|_, p| EhrOp::BreakGlass {
                patient: p,
                reason: "why".into(),
            }),
            "fffoffffffff",
            "fffoffffffff",
        ),
        (
            "erase the document",
            Box::new(|_, _| EhrOp::Erase {
                doc_id: "doc-a".into(),
            }),
            "ffffofffffff",
            "ffffofffffff",
        ),
        (
            "share the document",
            Box::new(|_, _| EhrOp::ShareDocument {
                doc_id: "doc-a".into(),
                holder: fresh,
                expires_ms: later,
            }),
            "fffoofffffff",
            "fffoofffffff",
        ),
        (
            "end the share link",
            Box::new(|_, _| EhrOp::Unshare {
                doc_id: "doc-a".into(),
                holder: c.link,
            }),
            "fffoofffffff",
            "fffoofffffff",
        ),
    ];
    let mut named = BTreeSet::new();
    let mut wrong = Vec::new();
    for (row, op, own, others) in &rows {
        for (patient, want) in [(c.patient, own), (c.other, others)] {
            let got: String = c
                .keys
                .iter()
                .map(|sender| {
                    let op = op(sender, patient);
                    named.insert(name(&op));
                    let mut t = T {
                        cc: c.t.cc.clone(),
                        w: c.t.w.clone(),
                    };
                    outcome(&t.tx(sender, op))
                })
                .collect();
            if got != **want {
                let whose = if patient == c.patient {
                    "own"
                } else {
                    "another's"
                };
                let diff: Vec<String> = ROLES
                    .iter()
                    .zip(got.chars().zip(want.chars()))
                    .filter(|(_, (g, w))| g != w)
                    .map(|(r, (g, w))| format!("{r}: {g}, expected {w}"))
                    .collect();
                wrong.push(format!("{row} ({whose}): {}", diff.join("; ")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "outcomes that differ:\n{}",
        wrong.join("\n")
    );
    let all: BTreeSet<&str> = ALL.into_iter().collect();
    assert_eq!(named, all, "every operation has a row");
    // The fixture is what the rows assume.
    assert_eq!(c.keys[3].public(), c.doctor);
    assert_eq!(c.keys[4].public(), c.patient);
}
