//! The `ehr` chaincode's rules, over an in-memory state: every flow and its refusals.

use medchain_chaincode::ChaincodeError;
use medchain_ehr::chaincode::{
    AuditEvent, CaseRecord, DocKind, DocumentAnchor, GrantRecord, Hospital, Scope, Users,
};
use medchain_ehr::{EhrOp, EhrQuery, Verdict};
use medchain_types::{sha256, Hash, SecretKey};

mod common;

use common::*;

#[test]
fn every_flow_with_its_refusals() {
    let (admin, hosp, hosp2, doc, doc2, pat, pat2, stranger) =
        (k(1), k(2), k(3), k(4), k(5), k(6), k(7), k(8));
    let mut t = T::new(&admin);

    // Registration and approval.
    t.tx(&hosp, EhrOp::RegisterHospital(profile("St Mary")))
        .unwrap();
    t.tx(&hosp2, EhrOp::RegisterHospital(profile("General")))
        .unwrap();
    let commit = sha256(b"salt||doctor profile");
    assert!(
        forbidden(t.tx(
            &hosp,
            EhrOp::RegisterDoctor {
                doctor: doc.public(),
                profile_commitment: commit
            }
        )),
        "not approved yet"
    );
    assert!(
        forbidden(t.tx(
            &stranger,
            EhrOp::ApproveHospital {
                hospital: hosp.public()
            }
        )),
        "only admins approve"
    );
    t.tx(
        &admin,
        EhrOp::ApproveHospital {
            hospital: hosp.public(),
        },
    )
    .unwrap();
    t.tx(
        &admin,
        EhrOp::ApproveHospital {
            hospital: hosp2.public(),
        },
    )
    .unwrap();
    t.tx(
        &hosp,
        EhrOp::RegisterDoctor {
            doctor: doc.public(),
            profile_commitment: commit,
        },
    )
    .unwrap();
    t.tx(
        &hosp2,
        EhrOp::RegisterDoctor {
            doctor: doc2.public(),
            profile_commitment: commit,
        },
    )
    .unwrap();
    assert!(
        forbidden(t.tx(
            &hosp2,
            EhrOp::RegisterDoctor {
                doctor: doc.public(),
                profile_commitment: commit
            }
        )),
        "another hospital's doctor"
    );
    for p in [&pat, &pat2] {
        t.tx(
            p,
            EhrOp::RegisterPatient {
                profile_commitment: sha256(b"salt||profile"),
                profile_blob: Some(sha256(p.public().as_bytes())),
            },
        )
        .unwrap();
    }
    assert!(
        forbidden(t.tx(
            &doc,
            EhrOp::RegisterPatient {
                profile_commitment: commit,
                profile_blob: None
            }
        )),
        "one role per key"
    );

    // Search.
    let found: Vec<Hospital> = t.q(EhrQuery::Hospitals {
        search: "diabetes".into(),
        pending: false,
    });
    assert_eq!(found.len(), 2);
    let found: Vec<Hospital> = t.q(EhrQuery::Hospitals {
        search: "mary".into(),
        pending: false,
    });
    assert_eq!(found[0].key, hosp.public());

    // Request, grant, use, expire, revoke.
    t.tx(
        &hosp,
        EhrOp::RequestAccess {
            patient: pat.public(),
            purpose: "follow-up".into(),
            scopes: vec![Scope::Cases, Scope::Documents],
        },
    )
    .unwrap();
    assert!(forbidden(t.tx(
        &stranger,
        EhrOp::RequestAccess {
            patient: pat.public(),
            purpose: "x".into(),
            scopes: vec![Scope::Cases]
        }
    )));
    let case = |id: &str, p: &SecretKey| EhrOp::RecordCase {
        patient: p.public(),
        case_id: id.into(),
        blob: sha256(format!("case blob {id}").as_bytes()),
        content_sha256: sha256(id.as_bytes()),
    };
    assert!(forbidden(t.tx(&hosp, case("c1", &pat))), "no grant yet");
    let until = t.w.time_ms + 60_000;
    t.tx(
        &pat,
        EhrOp::Grant {
            grantee: hosp.public(),
            scopes: vec![Scope::Cases, Scope::Documents],
            write: true,
            expires_ms: until,
        },
    )
    .unwrap();
    t.tx(&hosp, case("c1", &pat)).unwrap();
    t.tx(&doc, case("c2", &pat)).unwrap();
    assert!(
        forbidden(t.tx(&hosp, case("c3", &pat2))),
        "another patient's id"
    );
    assert!(
        forbidden(t.tx(&doc2, case("c4", &pat))),
        "a doctor of another hospital"
    );
    let cases: Vec<CaseRecord> = t.q(EhrQuery::Cases(pat.public()));
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[1].hospital, hosp.public());

    // Documents: issue, verify, supersede.
    let report = b"REPORT: patient fine".to_vec();
    let issue = |id: &str, body: &[u8], sup: Option<&str>| EhrOp::IssueDocument {
        doc_id: id.into(),
        patient: pat.public(),
        kind: DocKind::Report,
        plaintext_sha256: sha256(body),
        blob: Hash([9; 32]),
        supersedes: sup.map(Into::into),
    };
    assert!(
        forbidden(t.tx(&hosp, issue("d1", &report, None))),
        "hospitals do not issue, doctors do"
    );
    t.tx(&doc, issue("d1", &report, None)).unwrap();
    assert!(matches!(
        t.tx(&doc, issue("d1", &report, None)),
        Err(ChaincodeError::Rejected(_))
    ));
    let v: Verdict = t.q(EhrQuery::Verify {
        sha256: sha256(&report),
        doc_id: None,
    });
    assert!(matches!(v, Verdict::Authentic(ref d) if d.issuer == doc.public() && d.doc_id == "d1"));
    let mut forged = report.clone();
    forged[0] ^= 1;
    let v: Verdict = t.q(EhrQuery::Verify {
        sha256: sha256(&forged),
        doc_id: Some("d1".into()),
    });
    assert!(matches!(v, Verdict::Tampered { .. }));
    let v: Verdict = t.q(EhrQuery::Verify {
        sha256: sha256(&forged),
        doc_id: None,
    });
    assert_eq!(v, Verdict::Unknown);
    // Another record's blob cannot be anchored again (d1's blob is [9; 32]).
    assert!(matches!(
        t.tx(
            &doc,
            EhrOp::IssueDocument {
                doc_id: "d1-copy".into(),
                patient: pat.public(),
                kind: DocKind::Report,
                plaintext_sha256: sha256(b"x"),
                blob: Hash([9; 32]),
                supersedes: None,
            }
        ),
        Err(ChaincodeError::Rejected(_))
    ));
    let issue = |id: &str, body: &[u8], sup: Option<&str>| EhrOp::IssueDocument {
        doc_id: id.into(),
        patient: pat.public(),
        kind: DocKind::Report,
        plaintext_sha256: sha256(body),
        blob: sha256(id.as_bytes()),
        supersedes: sup.map(Into::into),
    };
    t.tx(&doc, issue("d2", b"REPORT v2", Some("d1"))).unwrap();
    let d1: Option<DocumentAnchor> = t.q(EhrQuery::Document("d1".into()));
    assert_eq!(d1.unwrap().superseded_by.as_deref(), Some("d2"));

    // Reads are logged; the patient's own are not; a revoked or expired grant reads nothing.
    t.tx(
        &hosp,
        EhrOp::LogRead {
            patient: pat.public(),
            object: "doc/d1".into(),
        },
    )
    .unwrap();
    t.tx(
        &pat,
        EhrOp::LogRead {
            patient: pat.public(),
            object: "doc/d1".into(),
        },
    )
    .unwrap();
    assert!(
        forbidden(t.tx(
            &hosp,
            EhrOp::LogRead {
                patient: pat.public(),
                object: "profile".into()
            }
        )),
        "profile not granted"
    );
    t.tx(
        &pat,
        EhrOp::Revoke {
            grantee: hosp.public(),
        },
    )
    .unwrap();
    assert!(
        forbidden(t.tx(
            &hosp,
            EhrOp::LogRead {
                patient: pat.public(),
                object: "doc/d1".into()
            }
        )),
        "revoked"
    );
    t.tx(
        &pat,
        EhrOp::Grant {
            grantee: hosp.public(),
            scopes: vec![Scope::Documents],
            write: false,
            expires_ms: t.w.time_ms + 5_000,
        },
    )
    .unwrap();
    assert!(
        forbidden(t.tx(&doc, issue("d3", b"x", None))),
        "read-only grant"
    );
    t.tx(
        &hosp,
        EhrOp::LogRead {
            patient: pat.public(),
            object: "doc/d2".into(),
        },
    )
    .unwrap();
    t.w.time_ms += 10_000;
    assert!(
        forbidden(t.tx(
            &hosp,
            EhrOp::LogRead {
                patient: pat.public(),
                object: "doc/d2".into()
            }
        )),
        "expired"
    );
    let grants: Vec<GrantRecord> = t.q(EhrQuery::Grants(pat.public()));
    assert_eq!(grants.len(), 1);

    // Break-glass: allowed for a doctor, audited and flagged.
    assert!(forbidden(t.tx(
        &doc2,
        EhrOp::LogRead {
            patient: pat.public(),
            object: "profile".into()
        }
    )));
    assert!(
        forbidden(t.tx(
            &hosp2,
            EhrOp::BreakGlass {
                patient: pat.public(),
                reason: "ER".into()
            }
        )),
        "doctors only"
    );
    t.tx(
        &doc2,
        EhrOp::BreakGlass {
            patient: pat.public(),
            reason: "unconscious in ER".into(),
        },
    )
    .unwrap();
    t.tx(
        &doc2,
        EhrOp::LogRead {
            patient: pat.public(),
            object: "profile".into(),
        },
    )
    .unwrap();
    let audit: Vec<AuditEvent> = t.q(EhrQuery::Audit(pat.public()));
    let flagged: Vec<&AuditEvent> = audit.iter().filter(|e| e.flagged).collect();
    assert_eq!(flagged.len(), 2, "{audit:?}");
    assert!(audit
        .iter()
        .any(|e| e.reader == hosp.public() && e.object == "doc/d1" && e.basis == "grant"));
    assert!(!audit.iter().any(|e| e.reader == pat.public()));

    // Erasure: only by the patient; recorded.
    assert!(forbidden(t.tx(
        &doc,
        EhrOp::Erase {
            doc_id: "d2".into()
        }
    )));
    assert!(forbidden(t.tx(
        &pat2,
        EhrOp::Erase {
            doc_id: "d2".into()
        }
    )));
    t.tx(
        &pat,
        EhrOp::Erase {
            doc_id: "d2".into(),
        },
    )
    .unwrap();
    let d2: Option<DocumentAnchor> = t.q(EhrQuery::Document("d2".into()));
    assert!(d2.unwrap().erased_ms.is_some());
    assert!(t.w.events.iter().any(|e| e == "erased"));

    // The administrator's overview holds pseudonyms, commitments and hospital profiles only.
    let users: Users = t.q(EhrQuery::Users);
    assert_eq!(
        (
            users.hospitals.len(),
            users.doctors.len(),
            users.patients.len()
        ),
        (2, 2, 2)
    );
    // Malformed input is a clean refusal.
    assert!(matches!(
        t.w.execute(&t.cc, pat.public(), Hash::ZERO, b"\x01garbage"),
        Err(ChaincodeError::BadRequest(_))
    ));
    assert!(matches!(
        t.tx(&hosp, case("Bad Id!", &pat)),
        Err(ChaincodeError::BadRequest(_))
    ));
}

/// A share link is a capability on one document: the holder's reads of that document are
/// allowed (and audited as share-link reads) until the expiry or an unshare; nothing else.
#[test]
fn share_links_open_one_document_until_expiry_or_unshare() {
    let (admin, hosp, doc, pat, pat2, link, link2, stranger) =
        (k(1), k(2), k(4), k(6), k(7), k(20), k(21), k(8));
    let mut t = T::new(&admin);
    t.approved_hospital(&admin, &hosp, "St Mary");
    t.doctor(&hosp, &doc);
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
    t.tx(
        &pat,
        EhrOp::Grant {
            grantee: hosp.public(),
            scopes: vec![Scope::Documents],
            write: true,
            expires_ms: 10_000_000_000,
        },
    )
    .unwrap();
    for id in ["d-1", "d-2"] {
        t.tx(
            &doc,
            EhrOp::IssueDocument {
                doc_id: id.into(),
                patient: pat.public(),
                kind: DocKind::Certificate,
                plaintext_sha256: sha256(id.as_bytes()),
                blob: sha256(format!("blob {id}").as_bytes()),
                supersedes: None,
            },
        )
        .unwrap();
    }
    let share = |id: &str, holder: &SecretKey, expires_ms: u64| EhrOp::ShareDocument {
        doc_id: id.into(),
        holder: holder.public(),
        expires_ms,
    };
    let read = |id: &str| EhrOp::LogRead {
        patient: pat.public(),
        object: format!("doc/{id}"),
    };
    let now = t.w.time_ms;
    assert!(
        forbidden(t.tx(&stranger, share("d-1", &link, now + 3_600_000))),
        "only the patient or the issuer shares"
    );
    assert!(
        forbidden(t.tx(&pat2, share("d-1", &link, now + 3_600_000))),
        "another patient"
    );
    assert!(
        t.tx(&pat, share("d-1", &link, now + 31 * 24 * 3_600_000))
            .is_err(),
        "at most 30 days"
    );
    assert!(forbidden(t.tx(&link, read("d-1"))), "no link yet");
    t.tx(&pat, share("d-1", &link, now + 3_600_000)).unwrap();
    assert!(
        t.tx(&pat, share("d-1", &link, now + 3_600_000)).is_err(),
        "a link key is used once"
    );
    t.tx(&link, read("d-1")).unwrap();
    assert!(forbidden(t.tx(&link, read("d-2"))), "one document only");
    assert!(
        forbidden(t.tx(
            &link,
            EhrOp::LogRead {
                patient: pat.public(),
                object: "profile".into()
            }
        )),
        "not the profile"
    );
    let audit: Vec<AuditEvent> = t.q(EhrQuery::Audit(pat.public()));
    assert!(audit
        .iter()
        .any(|e| e.reader == link.public() && e.basis == "share-link" && e.object == "doc/d-1"));
    assert!(audit.iter().any(|e| e.object == "share/d-1"));
    // The issuer shares too; the link ends at its expiry.
    t.tx(&doc, share("d-2", &link2, t.w.time_ms + 5_000))
        .unwrap();
    t.tx(&link2, read("d-2")).unwrap();
    t.w.time_ms += 10_000;
    assert!(forbidden(t.tx(&link2, read("d-2"))), "expired");
    // Unshare ends it at once; erasure too.
    assert!(forbidden(t.tx(
        &stranger,
        EhrOp::Unshare {
            doc_id: "d-1".into(),
            holder: link.public()
        }
    )));
    t.tx(
        &pat,
        EhrOp::Unshare {
            doc_id: "d-1".into(),
            holder: link.public(),
        },
    )
    .unwrap();
    assert!(forbidden(t.tx(&link, read("d-1"))), "unshared");
    let shares: Vec<medchain_ehr::chaincode::ShareRecord> = t.q(EhrQuery::Shares("d-1".into()));
    assert_eq!(shares.len(), 1);
    assert!(shares[0].revoked_ms.is_some());
    let link3 = k(22);
    t.tx(&pat, share("d-1", &link3, t.w.time_ms + 3_600_000))
        .unwrap();
    t.tx(
        &pat,
        EhrOp::Erase {
            doc_id: "d-1".into(),
        },
    )
    .unwrap();
    assert!(forbidden(t.tx(&link3, read("d-1"))), "erased");
    // A revocation ends the issuer's reads and sharing of what it issued.
    t.tx(&doc, read("d-2")).unwrap();
    t.tx(
        &pat,
        EhrOp::Revoke {
            grantee: hosp.public(),
        },
    )
    .unwrap();
    assert!(
        forbidden(t.tx(&doc, read("d-2"))),
        "revoked: no issuer read"
    );
    assert!(
        forbidden(t.tx(&doc, share("d-2", &k(23), t.w.time_ms + 3_600_000))),
        "revoked: no issuer share"
    );
    t.tx(&pat, share("d-2", &k(23), t.w.time_ms + 3_600_000))
        .unwrap();
    // Ids never name hidden files.
    assert!(t
        .tx(
            &doc,
            EhrOp::IssueDocument {
                doc_id: "..".into(),
                patient: pat.public(),
                kind: DocKind::Report,
                plaintext_sha256: sha256(b".."),
                blob: sha256(b"blob .."),
                supersedes: None,
            },
        )
        .is_err());
}

/// 2,000 logged reads of one patient: the last read of each (reader, object) is found at once,
/// and the patient pages through every event, newest first.
#[test]
fn the_audit_trail_has_no_limit() {
    use medchain_ehr::chaincode::AuditPage;
    let (admin, hosp, pat) = (k(1), k(2), k(6));
    let mut t = T::new(&admin);
    t.approved_hospital(&admin, &hosp, "St Mary");
    t.tx(
        &pat,
        EhrOp::RegisterPatient {
            profile_commitment: sha256(b"salt||profile"),
            profile_blob: None,
        },
    )
    .unwrap();
    t.tx(
        &pat,
        EhrOp::Grant {
            grantee: hosp.public(),
            scopes: vec![Scope::Profile, Scope::Cases],
            write: false,
            expires_ms: u64::MAX,
        },
    )
    .unwrap();
    let reads = 2_000;
    for i in 0..reads {
        let object = if i % 2 == 0 {
            "profile".to_owned()
        } else {
            format!("case/c{}", i % 7)
        };
        t.tx(
            &hosp,
            EhrOp::LogRead {
                patient: pat.public(),
                object,
            },
        )
        .unwrap();
    }
    let last_profile_read = t.w.time_ms - 1_000; // the second-to-last read was the profile's
    let at: Option<u64> = t.q(EhrQuery::LastRead {
        patient: pat.public(),
        reader: hosp.public(),
        object: "profile".into(),
    });
    assert_eq!(at, Some(last_profile_read));
    let never: Option<u64> = t.q(EhrQuery::LastRead {
        patient: pat.public(),
        reader: hosp.public(),
        object: "doc/none".into(),
    });
    assert_eq!(never, None);
    // Every event, newest first, in pages.
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page: AuditPage = t.q(EhrQuery::AuditPage {
            patient: pat.public(),
            before: before.clone(),
            limit: 300,
        });
        assert!(page.events.len() <= 300);
        all.extend(page.events);
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(all.len(), reads);
    assert!(
        all.windows(2).all(|w| w[0].at_ms > w[1].at_ms),
        "newest first"
    );
    assert_eq!(all[0].at_ms, t.w.time_ms);
}
