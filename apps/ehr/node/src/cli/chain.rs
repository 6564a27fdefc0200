//! `medchain ehr tx`, `query`, `audit` and `doc verify`: operations, queries and verdicts.

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

/// `medchain ehr query`: a JSON `EhrQuery`, answered as JSON.
pub async fn ehr_query(node: &str, query_json: &str) -> Result<()> {
    let _: medchain_ehr::EhrQuery = serde_json::from_str(query_json)
        .context("the query is not an EhrQuery in JSON (see `medchain ehr query --help`)")?;
    let client = Client::new(node)?;
    let r = client
        .http()
        .post(format!("{}/api/v1/ehr/query", client.base()))
        .header("content-type", "application/json")
        .body(query_json.to_owned())
        .send()
        .await
        .with_context(|| format!("cannot reach {node}"))?;
    let code = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !code.is_success() {
        bail!("HTTP {code}: {}", error_text(&v));
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn short(key: &str) -> &str {
    &key[..key.len().min(16)]
}

/// `medchain ehr audit`: the node's vault re-hashed against the chain, a line per record
/// (intact in green, tampered in red on a terminal). `Ok(false)` if anything is tampered.
pub async fn ehr_audit(node: &str, json_out: bool) -> Result<bool> {
    use std::io::IsTerminal;
    let client = Client::new(node)?;
    let (code, v) = client.get("/api/v1/ehr/vault-audit").await?;
    if !code.is_success() {
        bail!("HTTP {code}: {}", error_text(&v));
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let color = std::io::stdout().is_terminal();
        for r in v["records"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let status = r["status"].as_str().unwrap_or("?");
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
        println!(
            "{} intact, {} tampered, {} missing on this node, {} erased",
            v["intact"], v["tampered"], v["missing"], v["erased"]
        );
    }
    Ok(v["tampered"] == 0)
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
