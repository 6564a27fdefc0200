//! The `ehr` chaincode's rules, over an in-memory state: every flow and its refusals.

use medchain_chaincode::{Chaincode, ChaincodeError, Entries, StateView, Stub};
use medchain_ehr::chaincode::{
    AuditEvent, CaseRecord, DocKind, DocumentAnchor, GrantRecord, Hospital, HospitalProfile, Scope,
    Users,
};
use medchain_ehr::{Ehr, EhrOp, EhrQuery, Verdict};
use medchain_types::{codec, sha256, Hash, PublicKey, SecretKey};
use std::collections::BTreeMap;

#[derive(Default)]
struct World {
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    time: u64,
    height: u64,
    events: Vec<String>,
}

struct MemStub<'a> {
    w: &'a mut World,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    caller: PublicKey,
    tx: Hash,
    events: Vec<String>,
}

impl StateView for World {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError> {
        Ok(self.state.get(key).cloned())
    }
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        Ok(self
            .state
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| after.is_none_or(|a| k.as_slice() > a))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    fn scan_back(
        &self,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let mut rows: Entries = self
            .state
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| before.is_none_or(|b| k.as_slice() < b))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        rows.reverse();
        rows.truncate(limit);
        Ok(rows)
    }
}

impl StateView for MemStub<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ChaincodeError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.w.get(key),
        }
    }
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .w
            .scan(prefix, after, usize::MAX)?
            .into_iter()
            .collect();
        for (k, v) in &self.writes {
            if k.starts_with(prefix) && after.is_none_or(|a| k.as_slice() > a) {
                match v {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
        }
        Ok(merged.into_iter().take(limit).collect())
    }
    fn scan_back(
        &self,
        prefix: &[u8],
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, ChaincodeError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = self
            .w
            .scan_back(prefix, before, usize::MAX)?
            .into_iter()
            .collect();
        for (k, v) in &self.writes {
            if k.starts_with(prefix) && before.is_none_or(|b| k.as_slice() < b) {
                match v {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
        }
        Ok(merged.into_iter().rev().take(limit).collect())
    }
}

impl Stub for MemStub<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ChaincodeError> {
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), ChaincodeError> {
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }
    fn emit(&mut self, kind: &str, _data: &[u8]) -> Result<(), ChaincodeError> {
        self.events.push(kind.to_owned());
        Ok(())
    }
    fn caller(&self) -> &PublicKey {
        &self.caller
    }
    fn tx_hash(&self) -> &Hash {
        &self.tx
    }
    fn height(&self) -> u64 {
        self.w.height
    }
    fn time_ms(&self) -> u64 {
        self.w.time
    }
}

struct T {
    cc: Ehr,
    w: World,
}

impl T {
    fn new(admin: &SecretKey) -> T {
        T {
            cc: Ehr::new([admin.public()]),
            w: World {
                time: 1_000_000,
                ..World::default()
            },
        }
    }

    /// Runs one transaction; like the executor, writes only on success.
    fn tx(&mut self, from: &SecretKey, op: EhrOp) -> Result<(), ChaincodeError> {
        self.w.height += 1;
        self.w.time += 1_000;
        let tx = sha256(&self.w.height.to_le_bytes());
        let mut stub = MemStub {
            caller: from.public(),
            tx,
            writes: BTreeMap::new(),
            events: Vec::new(),
            w: &mut self.w,
        };
        let r = self.cc.execute(&mut stub, &Ehr::payload(&op));
        let (writes, events) = (stub.writes, stub.events);
        if r.is_ok() {
            for (k, v) in writes {
                match v {
                    Some(v) => self.w.state.insert(k, v),
                    None => self.w.state.remove(&k),
                };
            }
            self.w.events.extend(events);
        }
        r.map(|_| ())
    }

    fn q<R: serde::de::DeserializeOwned>(&self, q: EhrQuery) -> R {
        codec::decode(&self.cc.query(&self.w, &Ehr::request(&q)).unwrap()).unwrap()
    }
}

fn k(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn forbidden(r: Result<(), ChaincodeError>) -> bool {
    matches!(r, Err(ChaincodeError::Forbidden(_)))
}

fn profile(name: &str) -> HospitalProfile {
    HospitalProfile {
        name: name.into(),
        address: "1 Main St".into(),
        contact: "+1 555 0100".into(),
        treatments: vec!["Cardiology".into(), "Diabetes care".into()],
    }
}

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
    let until = t.w.time + 60_000;
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
            expires_ms: t.w.time + 5_000,
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
    t.w.time += 10_000;
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
        t.cc.execute(
            &mut MemStub {
                caller: pat.public(),
                tx: Hash::ZERO,
                writes: BTreeMap::new(),
                events: vec![],
                w: &mut t.w
            },
            b"\x01garbage"
        ),
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
    t.tx(&hosp, EhrOp::RegisterHospital(profile("St Mary")))
        .unwrap();
    t.tx(
        &admin,
        EhrOp::ApproveHospital {
            hospital: hosp.public(),
        },
    )
    .unwrap();
    t.tx(
        &hosp,
        EhrOp::RegisterDoctor {
            doctor: doc.public(),
            profile_commitment: sha256(b"d"),
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
    let now = t.w.time;
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
    t.tx(&doc, share("d-2", &link2, t.w.time + 5_000)).unwrap();
    t.tx(&link2, read("d-2")).unwrap();
    t.w.time += 10_000;
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
    t.tx(&pat, share("d-1", &link3, t.w.time + 3_600_000))
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
        forbidden(t.tx(&doc, share("d-2", &k(23), t.w.time + 3_600_000))),
        "revoked: no issuer share"
    );
    t.tx(&pat, share("d-2", &k(23), t.w.time + 3_600_000))
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
    t.tx(&hosp, EhrOp::RegisterHospital(profile("St Mary")))
        .unwrap();
    t.tx(
        &admin,
        EhrOp::ApproveHospital {
            hospital: hosp.public(),
        },
    )
    .unwrap();
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
    let last_profile_read = t.w.time - 1_000; // the second-to-last read was the profile's
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
    assert_eq!(all[0].at_ms, t.w.time);
}

/// Access ends when it should: break-glass reads and never writes; a doctor's share link dies
/// with the doctor's access; a removed doctor and a suspended hospital lose theirs; a hospital
/// that changes its profile is pending again; a document supersedes only its own hospital's.
#[test]
fn access_ends_when_it_should() {
    let (admin, hosp, hosp2, doc, doc2, pat, link, stranger) =
        (k(1), k(2), k(3), k(4), k(5), k(6), k(20), k(8));
    let mut t = T::new(&admin);
    for (h, name) in [(&hosp, "St Mary"), (&hosp2, "General")] {
        t.tx(h, EhrOp::RegisterHospital(profile(name))).unwrap();
        t.tx(
            &admin,
            EhrOp::ApproveHospital {
                hospital: h.public(),
            },
        )
        .unwrap();
    }
    for (h, d) in [(&hosp, &doc), (&hosp2, &doc2)] {
        t.tx(
            h,
            EhrOp::RegisterDoctor {
                doctor: d.public(),
                profile_commitment: sha256(b"d"),
            },
        )
        .unwrap();
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
    let now = t.w.time;
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
