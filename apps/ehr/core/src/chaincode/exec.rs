//! The `ehr` chaincode's transactions: every `EhrOp`, checked against its sender's role and the
//! patient's grants, with its state writes, audit entries and events.

use super::*;

impl Ehr {
    pub(super) fn exec(&self, stub: &mut dyn Stub, op: EhrOp) -> Result<(), ChaincodeError> {
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
                    // A new profile goes back to the administrators: an approved hospital
                    // cannot rename itself into another.
                    Some(h) => h.approved && h.profile == profile,
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
            EhrOp::RemoveDoctor { doctor } => {
                let d = Self::doctor(stub, &doctor)?
                    .ok_or_else(|| ChaincodeError::NotFound(format!("doctor {doctor}")))?;
                if d.hospital != me && !self.admins.contains(&me) {
                    return Err(forbidden(
                        "only the doctor's hospital or an administrator removes a doctor",
                    ));
                }
                stub.delete(&key(&[b"doctor", hex(&doctor).as_bytes()]))?;
                stub.emit("doctor_removed", doctor.as_bytes())
            }
            EhrOp::SuspendHospital { hospital } => {
                if !self.admins.contains(&me) {
                    return Err(forbidden("only administrators suspend hospitals"));
                }
                let k = key(&[b"hospital", hex(&hospital).as_bytes()]);
                let mut h: Hospital = get(stub, &k)?
                    .ok_or_else(|| ChaincodeError::NotFound(format!("hospital {hospital}")))?;
                h.approved = false;
                put(stub, &k, &h)?;
                stub.emit("hospital_suspended", hospital.as_bytes())
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
                let before = get::<Patient>(stub, &k)?;
                // A profile replaced by a new registration leaves the vault: its blob is no
                // longer anchored (nodes delete it when this commits).
                if let Some(old) = before.as_ref().and_then(|p| p.profile_blob) {
                    if Some(old) != profile_blob {
                        stub.delete(&key(&[b"blob", old.to_hex().as_bytes()]))?;
                        stub.emit(PROFILE_REPLACED, old.to_hex().as_bytes())?;
                    }
                }
                let registered_ms = before.map_or(now, |p| p.registered_ms);
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
            } => Self::request_access(stub, patient, scopes, || {
                check_text("the purpose", &purpose)?;
                Ok(purpose)
            }),
            EhrOp::RequestAccessSealed {
                patient,
                purpose,
                scopes,
            } => Self::request_access(stub, patient, scopes, || {
                Self::sealed_for(&patient, "the purpose", &purpose)
            }),
            EhrOp::AddVerifier { verifier } => {
                if !self.admins.contains(&me) {
                    return Err(forbidden("only administrators appoint verifiers"));
                }
                stub.put(&key_of_verifier(&verifier), b"")?;
                stub.emit("verifier_added", verifier.as_bytes())
            }
            EhrOp::RemoveVerifier { verifier } => {
                if !self.admins.contains(&me) {
                    return Err(forbidden("only administrators dismiss verifiers"));
                }
                stub.delete(&key_of_verifier(&verifier))?;
                stub.emit("verifier_removed", verifier.as_bytes())
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
                    if old.hospital != doctor.hospital {
                        return Err(forbidden(
                            "a document supersedes only one its own hospital issued",
                        ));
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
                put(stub, &last_read_key(&patient, &me, &object), &now)?;
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
                Self::break_glass(stub, patient, || Ok(reason))
            }
            EhrOp::BreakGlassSealed { patient, reason } => Self::break_glass(stub, patient, || {
                Self::sealed_for(&patient, "the reason", &reason)
            }),
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
                stub.emit(ERASED, doc_id.as_bytes())
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

    /// `RequestAccess` and its sealed form: `purpose` checks and gives the text field after the
    /// sender and the patient are checked.
    fn request_access(
        stub: &mut dyn Stub,
        patient: PublicKey,
        scopes: Vec<Scope>,
        purpose: impl FnOnce() -> Result<String, ChaincodeError>,
    ) -> Result<(), ChaincodeError> {
        let (me, now) = (*stub.caller(), stub.time_ms());
        Self::approved_hospital(stub, &me)?;
        Self::patient(stub, &patient)?;
        let purpose = purpose()?;
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

    /// `BreakGlass` and its sealed form: `reason` checks and gives the audit note after the
    /// sender and the patient are checked.
    fn break_glass(
        stub: &mut dyn Stub,
        patient: PublicKey,
        reason: impl FnOnce() -> Result<String, ChaincodeError>,
    ) -> Result<(), ChaincodeError> {
        let (me, now) = (*stub.caller(), stub.time_ms());
        let d = Self::doctor(stub, &me)?
            .ok_or_else(|| forbidden("only doctors can break the glass"))?;
        Self::approved_hospital(stub, &d.hospital)?;
        Self::patient(stub, &patient)?;
        let note = reason()?;
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
                note,
                at_ms: now,
            },
        )
    }

    /// A sealed note's text field, if the patient can open it.
    fn sealed_for(
        patient: &PublicKey,
        what: &str,
        note: &SealedNote,
    ) -> Result<String, ChaincodeError> {
        if !note.readers().contains(patient) {
            return Err(ChaincodeError::BadRequest(format!(
                "{what} must be sealed for the patient too"
            )));
        }
        Ok(note.to_field())
    }
}
