//! Keeps the dependency rules of DESIGN.md / ARCHITECTURE.md honest, from `cargo metadata`:
//! nothing depends on the node or benchmarks, and only they use the simulator; only the ledger store knows RocksDB;
//! only the network crate knows QUIC; consensus engines and chaincode stay free of async
//! runtimes, clocks and storage.

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

/// Workspace package name → its normal (non-dev) dependency names.
fn workspace_deps() -> BTreeMap<String, Vec<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null()) // normal dependencies only
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

#[test]
fn dependency_rules_hold() {
    let deps = workspace_deps();
    assert!(deps.contains_key("medchain-types") && deps.contains_key("medchain-ledger"));
    let mut broken = Vec::new();
    for (pkg, ds) in &deps {
        for d in ds {
            let rule = match d.as_str() {
                "medchain-node" | "medchain-bench" => Some("nothing depends on node or benches"),
                // The binary runs the simulator (`medchain sim`); no library may.
                "medchain-sim" if pkg != "medchain-node" && pkg != "medchain-bench" => {
                    Some("only the binary and the benchmarks use the simulator")
                }
                "rocksdb" if pkg != "medchain-ledger" => Some("only ledger/store knows RocksDB"),
                "quinn" | "rustls" if pkg != "medchain-network" => Some("only network knows QUIC"),
                "tokio" | "rocksdb" | "quinn"
                    if pkg == "medchain-types"
                        || pkg == "medchain-chaincode"
                        || pkg == "medchain-consensus"
                        || pkg.starts_with("medchain-pbft")
                        || pkg.starts_with("medchain-pow")
                        || pkg.starts_with("medchain-pos") =>
                {
                    Some("types, chaincode and engines do no I/O")
                }
                "config" if pkg != "medchain-node" => Some("only node reads config files"),
                _ => None,
            };
            if let Some(rule) = rule {
                broken.push(format!("{pkg} depends on {d}: {rule}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut missing = Vec::new();
    for dir in [
        "ledger",
        "apps",
        "node/src",
        "benches/src",
        "benches/benches",
        "consensus",
        "network",
    ] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    if !p.ends_with("tests") && !p.ends_with("target") {
                        stack.push(p);
                    }
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    if !text.trim_start().starts_with("//!") {
                        missing.push(p.display().to_string());
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a //! header:\n{}",
        missing.join("\n")
    );
}
