//! Cases: `medchain ehr case record` and `get`.

use super::common::{commit_ehr, ehr_json, ehr_json_as, put_keys};
use super::small::{fetch_small, store_small, SmallRecord};
use anyhow::{bail, Context, Result};
use medchain_app::client::Client;
use medchain_ehr::records;
use rand::RngCore;

/// A case's contents: personal data, only ever stored encrypted in the vault (the chain holds
/// its SHA-256; the random salt makes that hash unguessable).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CaseContent {
    /// Random, hex.
    pub salt: String,
    /// The case's id (random, see `records::new_id`).
    pub case_id: String,
    /// Its title for people.
    #[serde(default)]
    pub title: String,
    /// The presenting problem.
    pub problem: String,
    /// Systolic blood pressure (mmHg).
    pub systolic_mmhg: u16,
    /// Diastolic blood pressure (mmHg).
    pub diastolic_mmhg: u16,
    /// Blood glucose (mmol/L).
    pub glucose_mmol_l: f64,
    /// Free notes.
    pub notes: String,
}

impl CaseContent {
    /// Refuses values no measurement gives (typos such as 1200 for 120).
    pub fn check(&self) -> Result<()> {
        if self.problem.trim().is_empty() || self.problem.len() > 2000 {
            bail!("--problem: 1 to 2000 bytes");
        }
        if !(40..=300).contains(&self.systolic_mmhg) {
            bail!("--systolic {}: expected 40 to 300 mmHg", self.systolic_mmhg);
        }
        if !(20..=200).contains(&self.diastolic_mmhg) || self.diastolic_mmhg >= self.systolic_mmhg {
            bail!(
                "--diastolic {}: expected 20 to 200 mmHg and below the systolic",
                self.diastolic_mmhg
            );
        }
        if !(self.glucose_mmol_l > 0.0 && self.glucose_mmol_l <= 100.0) {
            bail!(
                "--glucose {}: expected 0 to 100 mmol/L",
                self.glucose_mmol_l
            );
        }
        if self.notes.len() > 20_000 {
            bail!("--notes: at most 20000 bytes");
        }
        Ok(())
    }
}

/// `medchain ehr case record`: a hospital (or its doctor) with a write grant on the patient's
/// cases encrypts the case locally, stores the ciphertext, records the case on the chain (its
/// blob address and SHA-256 only) and leaves the key wrapped for the patient, the author and
/// the author's hospital.
pub async fn ehr_case_record(
    node: &str,
    key_file: &std::path::Path,
    patient: &str,
    mut content: CaseContent,
) -> Result<()> {
    let patient: medchain_types::PublicKey = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    if content.title.len() > 200 {
        bail!("--title: at most 200 bytes");
    }
    content.check()?;
    let signer = medchain_app::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    content.salt = hex::encode(salt);
    let plain = serde_json::to_vec(&content)?;
    let (key, stored) = store_small(&client, &chain, &signer, &plain, "the case").await?;
    let op = medchain_ehr::EhrOp::RecordCase {
        patient,
        case_id: content.case_id.clone(),
        blob: stored.blob,
        content_sha256: stored.plaintext_sha256,
    };
    let receipt = commit_ehr(&client, &chain, &signer, &op)
        .await
        .context("recording the case (is there a write grant on cases?)")?;
    let mut readers = vec![patient, signer.public()];
    let doctor = ehr_json(&client, &medchain_ehr::EhrQuery::Doctor(signer.public())).await?;
    if let Ok(h) = serde_json::from_value::<medchain_types::PublicKey>(doctor["hospital"].clone()) {
        readers.push(h);
    }
    readers.dedup();
    let id = records::case_id(&patient, &content.case_id);
    let keys = readers
        .iter()
        .map(|r| medchain_ehr::wrap_key(&key, r, id.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    put_keys(
        &client,
        &signer,
        &chain,
        &format!("/api/v1/ehr/cases/{patient}/{}/keys", content.case_id),
        &keys,
    )
    .await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "patient": patient,
            "case": content.case_id,
            "title": content.title,
            "blob": stored.blob,
            "content_sha256": stored.plaintext_sha256,
            "height": receipt["height"],
        }))?
    );
    Ok(())
}

/// `medchain ehr case get`: the case's contents, for the patient or a reader with a `Cases`
/// grant (the read is logged first), checked against the chain.
pub async fn ehr_case_get(
    node: &str,
    key_file: &std::path::Path,
    patient: &str,
    case_id: &str,
) -> Result<()> {
    let patient: medchain_types::PublicKey = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    let reader = medchain_app::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let case = ehr_json_as(
        &client,
        &chain,
        &reader,
        &medchain_ehr::EhrQuery::Case {
            patient,
            case_id: case_id.to_owned(),
        },
    )
    .await?;
    let case: Option<medchain_ehr::chaincode::CaseRecord> = serde_json::from_value(case)?;
    let case = case.ok_or_else(|| anyhow::anyhow!("no case {case_id:?} of patient {patient}"))?;
    let rec = SmallRecord {
        patient,
        object: format!("case/{case_id}"),
        base: format!("/api/v1/ehr/cases/{patient}/{case_id}"),
        context: records::case_id(&patient, case_id),
        blob: case.blob,
        sha256: case.content_sha256,
        what: "the case",
    };
    let (_, plain) = fetch_small(&client, &chain, &reader, &rec).await?;
    let content: CaseContent = serde_json::from_slice(&plain)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "case": case_id,
            "patient": patient,
            "hospital": case.hospital,
            "author": case.author,
            "recorded_ms": case.at_ms,
            "title": content.title,
            "problem": content.problem,
            "systolic_mmhg": content.systolic_mmhg,
            "diastolic_mmhg": content.diastolic_mmhg,
            "glucose_mmol_l": content.glucose_mmol_l,
            "notes": content.notes,
            "verified": true,
        }))?
    );
    Ok(())
}
