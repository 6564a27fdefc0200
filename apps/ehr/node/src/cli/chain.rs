//! `medchain ehr tx`, `query`, `audit`, `request`, `break-glass` and `doc verify`: operations,
//! queries and verdicts.

use super::common::{commit_ehr, ehr_json, ehr_json_as, open_notes, TRANSFER_TIMEOUT};
use anyhow::{bail, Context, Result};
use medchain_app::client::{error_text, signed_tx, Client};
use serde_json::Value;

/// `medchain ehr tx`: signs an `ehr` operation (JSON), submits it and waits for its commit.
/// Fails unless the receipt says success.
pub async fn ehr_tx(node: &str, key_file: &std::path::Path, op_json: &str) -> Result<()> {
    let op: medchain_ehr::EhrOp = serde_json::from_str(op_json)
        .context("the operation is not an EhrOp in JSON (see `medchain ehr tx --help`)")?;
    let signer = medchain_app::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let tx = signed_tx(
        &chain,
        medchain_ehr::chaincode::NAME,
        medchain_ehr::Ehr::payload(&op),
        &signer,
    );
    let (code, v) = client.submit(&[tx], true).await?;
    if !code.is_success() {
        bail!("HTTP {code}: {}", error_text(&v));
    }
    let r = &v["receipts"][0];
    println!("{}", serde_json::to_string_pretty(r)?);
    if r["status"] != "success" {
        bail!("the transaction committed but failed: {}", r["status"]);
    }
    Ok(())
}

/// `medchain ehr query`: a JSON `EhrQuery`, answered as JSON; signed with `key_file` when
/// given (queries about people are answered to their parties only), and then every sealed
/// note in the answer that key can open is shown opened.
pub async fn ehr_query(
    node: &str,
    query_json: &str,
    key_file: Option<&std::path::Path>,
) -> Result<()> {
    let q: medchain_ehr::EhrQuery = serde_json::from_str(query_json)
        .context("the query is not an EhrQuery in JSON (see `medchain ehr query --help`)")?;
    let client = Client::new(node)?;
    let v = match key_file {
        Some(k) => {
            let me = medchain_app::keyfile::read(k)?;
            let chain = client.chain_id().await?;
            let mut v = ehr_json_as(&client, &chain, &me, &q).await?;
            open_notes(&mut v, &me);
            v
        }
        None => ehr_json(&client, &q).await?,
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn short(key: &str) -> &str {
    &key[..key.len().min(16)]
}

/// `medchain ehr audit`: the node's vault re-hashed against the chain, page by page to the
/// end, a line per record (intact in green, tampered in red on a terminal), or with `json_out`
/// a JSON object per record and one for the counts (JSON Lines). Signed by a verifier or an
/// administrator. `Ok(false)` if anything is tampered.
pub async fn ehr_audit(node: &str, key_file: &std::path::Path, json_out: bool) -> Result<bool> {
    use std::io::IsTerminal;
    let me = medchain_app::keyfile::read(key_file)?;
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let color = !json_out && std::io::stdout().is_terminal();
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    let mut after: Option<String> = None;
    let mut pages = 0u64;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/ehr/vault-audit?limit=100&after={a}"),
            None => "/api/v1/ehr/vault-audit?limit=100".to_owned(),
        };
        let r = client
            .signed(reqwest::Method::GET, &path, &me, &chain)
            .timeout(TRANSFER_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("cannot reach {node}"))?;
        let code = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !code.is_success() {
            bail!("HTTP {code}: {}", error_text(&v));
        }
        for r in v["records"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let status = r["status"].as_str().unwrap_or("?");
            *counts.entry(status.to_owned()).or_default() += 1;
            if json_out {
                println!("{}", serde_json::to_string(r)?);
                continue;
            }
            let paint = match (color, status) {
                (true, "intact") => "\x1b[32m",
                (true, "tampered") => "\x1b[31m",
                (true, _) => "\x1b[33m",
                (false, _) => "",
            };
            let reset = if color { "\x1b[0m" } else { "" };
            println!(
                "{paint}{status:<9}{reset} {:<40} patient {} blob {}",
                r["record"].as_str().unwrap_or("?"),
                short(r["patient"].as_str().unwrap_or("?")),
                r["blob"].as_str().unwrap_or("?"),
            );
        }
        pages += 1;
        if pages % 10 == 0 {
            eprintln!("audited {} records...", counts.values().sum::<u64>());
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    if json_out {
        println!(
            "{}",
            serde_json::json!({
                "intact": n("intact"), "tampered": n("tampered"), "missing": n("missing"),
                "erased": n("erased"), "unreadable": n("unreadable"),
            })
        );
    } else {
        println!(
            "{} intact, {} tampered, {} missing on this node, {} erased, {} unreadable",
            n("intact"),
            n("tampered"),
            n("missing"),
            n("erased"),
            n("unreadable")
        );
    }
    Ok(n("tampered") == 0)
}

/// `medchain ehr request`: an approved hospital asks a patient for access, its purpose sealed
/// for the patient and the hospital (never on the chain in clear).
pub async fn ehr_request(
    node: &str,
    key_file: &std::path::Path,
    patient: &str,
    purpose: &str,
    scopes: &[String],
) -> Result<()> {
    use medchain_ehr::chaincode::Scope;
    let patient: medchain_types::PublicKey = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    let scopes = scopes
        .iter()
        .map(|s| match s.as_str() {
            "profile" => Ok(Scope::Profile),
            "cases" => Ok(Scope::Cases),
            "documents" => Ok(Scope::Documents),
            other => bail!("--scope {other:?}: one of profile, cases, documents"),
        })
        .collect::<Result<Vec<_>>>()?;
    let me = medchain_app::keyfile::read(key_file)?;
    let purpose = medchain_ehr::SealedNote::seal(purpose, &[patient, me.public()])
        .map_err(|e| anyhow::anyhow!("--purpose: {e}"))?;
    let op = medchain_ehr::EhrOp::RequestAccessSealed {
        patient,
        purpose,
        scopes,
    };
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let receipt = commit_ehr(&client, &chain, &me, &op).await?;
    println!("access requested (height {})", receipt["height"]);
    Ok(())
}

/// `medchain ehr break-glass`: a doctor takes emergency read access to a patient's record for
/// 24 hours, flagged to the patient; the reason is sealed for the patient and the doctor.
pub async fn ehr_break_glass(
    node: &str,
    key_file: &std::path::Path,
    patient: &str,
    reason: &str,
) -> Result<()> {
    let patient: medchain_types::PublicKey = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    if reason.trim().is_empty() {
        bail!("--reason: break-glass needs a reason");
    }
    let me = medchain_app::keyfile::read(key_file)?;
    let reason = medchain_ehr::SealedNote::seal(reason, &[patient, me.public()])
        .map_err(|e| anyhow::anyhow!("--reason: {e}"))?;
    let op = medchain_ehr::EhrOp::BreakGlassSealed { patient, reason };
    let client = Client::new(node)?;
    let chain = client.chain_id().await?;
    let receipt = commit_ehr(&client, &chain, &me, &op).await?;
    println!(
        "emergency read access to {patient} for 24 hours (height {}); the patient sees it flagged",
        receipt["height"]
    );
    Ok(())
}

/// `medchain ehr doc verify`: re-hashes a file (streaming SHA-256) and asks the chain. Prints
/// the verdict as JSON; `Ok(true)` only for `authentic`.
pub async fn ehr_verify(node: &str, file: &std::path::Path, doc: Option<&str>) -> Result<bool> {
    let path = file.to_owned();
    let sha = tokio::task::spawn_blocking(move || -> Result<medchain_types::Hash> {
        let f = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut w = medchain_types::Sha256Writer::new();
        std::io::copy(&mut std::io::BufReader::with_capacity(1 << 20, f), &mut w)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(w.finish())
    })
    .await??;
    let client = Client::new(node)?;
    let q = match doc {
        Some(d) => format!("?doc={d}"),
        None => String::new(),
    };
    let (code, v) = client.get(&format!("/api/v1/ehr/verify/{sha}{q}")).await?;
    if !code.is_success() {
        bail!("HTTP {code}: {}", error_text(&v));
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(v["verdict"] == "authentic")
}
