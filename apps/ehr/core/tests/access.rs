//! The `ehr` chaincode's rules over time: access that ends when it should (break-glass,
//! removed doctors, suspended hospitals, share links), pending registrations that hide no
//! approved hospital, and replaced profiles leaving the vault.

mod common;

use common::*;
use medchain_ehr::chaincode::{DocKind, Scope};
use medchain_ehr::{EhrOp, EhrQuery};
use medchain_types::{sha256, SecretKey};

/// Access ends when it should: break-glass reads and never writes; a doctor's share link dies
/// with the doctor's access; a removed doctor and a suspended hospital lose theirs; a hospital
/// that changes its profile is pending again; a document supersedes only its own hospital's.
#[test]
fn access_ends_when_it_should() {
    let (admin, hosp, hosp2, doc, doc2, pat, link, stranger) =
        (k(1), k(2), k(3), k(4), k(5), k(6), k(20), k(8));
    let mut t = T::new(&admin);
    for (h, name, d) in [(&hosp, "St Mary", &doc), (&hosp2, "General", &doc2)] {
        t.approved_hospital(&admin, h, name);
        t.doctor(h, d);
    }
    t.tx(
        &pat,
        EhrOp::RegisterPatient {
            profile_commitment: sha256(b"p"),
            profile_blob: None,
        },
    )
    .unwrap();
    let grant = |h: &SecretKey| EhrOp::Grant {
        grantee: h.public(),
        scopes: vec![Scope::Documents, Scope::Profile],
        write: true,
        expires_ms: 10_000_000_000,
    };
    t.tx(&pat, grant(&hosp)).unwrap();
    let issue = |id: &str, supersedes: Option<&str>| EhrOp::IssueDocument {
        doc_id: id.into(),
        patient: pat.public(),
        kind: DocKind::Prescription,
        plaintext_sha256: sha256(id.as_bytes()),
        blob: sha256(format!("blob {id}").as_bytes()),
        supersedes: supersedes.map(str::to_owned),
    };
    t.tx(&doc, issue("rx-1", None)).unwrap();
    let read = |object: &str| EhrOp::LogRead {
        patient: pat.public(),
        object: object.into(),
    };

    // Break-glass: doc2's hospital has no grant; it may read, never issue.
    t.tx(
        &doc2,
        EhrOp::BreakGlass {
            patient: pat.public(),
            reason: "unconscious".into(),
        },
    )
    .unwrap();
    t.tx(&doc2, read("profile")).unwrap();
    assert!(
        forbidden(t.tx(&doc2, issue("rx-glass", None))),
        "break-glass does not write"
    );

    // A document supersedes only one its own hospital issued.
    t.tx(&pat, grant(&hosp2)).unwrap();
    assert!(forbidden(t.tx(&doc2, issue("rx-2", Some("rx-1")))));
    t.tx(&doc, issue("rx-3", Some("rx-1"))).unwrap();

    // The issuing doctor's share link lasts as long as the doctor's access.
    let now = t.w.time_ms;
    t.tx(
        &doc,
        EhrOp::ShareDocument {
            doc_id: "rx-3".into(),
            holder: link.public(),
            expires_ms: now + 3_600_000,
        },
    )
    .unwrap();
    t.tx(&link, read("doc/rx-3")).unwrap();
    t.tx(
        &pat,
        EhrOp::Revoke {
            grantee: hosp.public(),
        },
    )
    .unwrap();
    assert!(
        forbidden(t.tx(&link, read("doc/rx-3"))),
        "the maker lost its access"
    );
    t.tx(&pat, grant(&hosp)).unwrap();
    t.tx(&link, read("doc/rx-3")).unwrap();

    // A removed doctor: only its hospital or an administrator removes it.
    assert!(forbidden(t.tx(
        &stranger,
        EhrOp::RemoveDoctor {
            doctor: doc.public()
        }
    )));
    assert!(forbidden(t.tx(
        &hosp2,
        EhrOp::RemoveDoctor {
            doctor: doc.public()
        }
    )));
    t.tx(&doc, read("profile")).unwrap();
    t.tx(
        &hosp,
        EhrOp::RemoveDoctor {
            doctor: doc.public(),
        },
    )
    .unwrap();
    assert!(forbidden(t.tx(&doc, read("profile"))), "removed");
    assert!(forbidden(t.tx(&link, read("doc/rx-3"))), "its link too");

    // A suspended hospital: its grant and its doctors' access are dormant until re-approval.
    assert!(forbidden(t.tx(
        &hosp,
        EhrOp::SuspendHospital {
            hospital: hosp2.public()
        }
    )));
    t.tx(&hosp2, read("profile")).unwrap();
    t.tx(
        &admin,
        EhrOp::SuspendHospital {
            hospital: hosp2.public(),
        },
    )
    .unwrap();
    assert!(forbidden(t.tx(&hosp2, read("profile"))));
    assert!(forbidden(t.tx(&doc2, read("doc/rx-1"))));
    t.tx(
        &admin,
        EhrOp::ApproveHospital {
            hospital: hosp2.public(),
        },
    )
    .unwrap();
    t.tx(&hosp2, read("profile")).unwrap();

    // A hospital that changes its profile is pending again; the same profile keeps it.
    t.tx(&hosp, EhrOp::RegisterHospital(profile("St Mary")))
        .unwrap();
    t.tx(&hosp, read("profile")).unwrap();
    t.tx(&hosp, EhrOp::RegisterHospital(profile("St Mary Cardiac")))
        .unwrap();
    assert!(forbidden(t.tx(&hosp, read("profile"))), "pending again");
}

/// 1,100 pending registrations (anyone may register) do not hide an approved hospital from the
/// search.
#[test]
fn pending_registrations_do_not_hide_approved_hospitals() {
    use medchain_ehr::chaincode::Hospital;
    let admin = k(1);
    let mut t = T::new(&admin);
    // The approved hospital's key sorts after every pending one's, where a scan meets it last.
    let mut keys: Vec<SecretKey> = (0..1_101u32)
        .map(|i| {
            let mut seed = [9u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            SecretKey::from_seed(seed)
        })
        .collect();
    keys.sort_by_key(|k| k.public().to_hex());
    let real = keys.pop().unwrap();
    for spam in &keys {
        t.tx(spam, EhrOp::RegisterHospital(profile("Spam Clinic")))
            .unwrap();
    }
    t.tx(&real, EhrOp::RegisterHospital(profile("St Mary")))
        .unwrap();
    t.tx(
        &admin,
        EhrOp::ApproveHospital {
            hospital: real.public(),
        },
    )
    .unwrap();
    let found: Vec<Hospital> = t.q(EhrQuery::Hospitals {
        search: String::new(),
        pending: false,
    });
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key, real.public());
}

/// A registration that replaces the profile releases the old blob's anchor and tells the nodes
/// to delete it; registering the same blob again does not.
#[test]
fn a_replaced_profile_leaves_the_vault() {
    let (admin, pat) = (k(1), k(6));
    let mut t = T::new(&admin);
    let register = |blob: &[u8]| EhrOp::RegisterPatient {
        profile_commitment: sha256(b"p"),
        profile_blob: Some(sha256(blob)),
    };
    t.tx(&pat, register(b"one")).unwrap();
    t.tx(&pat, register(b"one")).unwrap();
    assert!(!t.w.events.iter().any(|e| e == "profile_replaced"));
    let record: Option<String> = t.q(EhrQuery::BlobRecord(sha256(b"one")));
    assert!(record.is_some());
    t.tx(&pat, register(b"two")).unwrap();
    assert_eq!(
        t.w.events
            .iter()
            .filter(|e| *e == "profile_replaced")
            .count(),
        1
    );
    let old: Option<String> = t.q(EhrQuery::BlobRecord(sha256(b"one")));
    assert_eq!(old, None, "the old blob is no longer anchored");
    let new: Option<String> = t.q(EhrQuery::BlobRecord(sha256(b"two")));
    assert!(new.is_some());
}
