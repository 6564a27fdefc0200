//! Keeps the dependency rules of ARCHITECTURE.md honest, from `cargo metadata` and the sources:
//! nothing depends on the node or the benchmarks but the binary; the node depends on no app;
//! only the binary composes apps; apps' cores, engines, types and the chaincode API do no I/O
//! of their own (no async runtime, HTTP, QUIC or storage); only the ledger store knows RocksDB
//! and only the network crate QUIC; no two modules of a crate use each other, directly or
//! through others; every source file says what it is for.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).to_path_buf()
}

/// A workspace package: its normal (non-dev) dependencies and its directory, relative to the
/// workspace root.
struct Package {
    deps: Vec<String>,
    dir: PathBuf,
}

fn workspace() -> BTreeMap<String, Package> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = std::fs::canonicalize(root()).unwrap();
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
            let manifest = Path::new(p["manifest_path"].as_str().unwrap());
            let dir = manifest
                .parent()
                .unwrap()
                .strip_prefix(&root)
                .unwrap()
                .to_path_buf();
            (
                p["name"].as_str().unwrap().to_owned(),
                Package { deps, dir },
            )
        })
        .collect()
}

/// Apps: the packages under `apps/` but the app boundary and the chaincode API.
fn is_app(name: &str, p: &Package) -> bool {
    p.dir.starts_with("apps") && name != "medchain-app" && name != "medchain-chaincode"
}

/// Every workspace package `name` depends on, directly or not.
fn closure(ws: &BTreeMap<String, Package>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![name.to_owned()];
    while let Some(n) = stack.pop() {
        for d in ws.get(&n).map(|p| p.deps.as_slice()).unwrap_or_default() {
            if ws.contains_key(d) && seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn dependency_rules_hold() {
    let ws = workspace();
    for must in [
        "medchain-types",
        "medchain-ledger",
        "medchain-node",
        "medchain",
        "medchain-app",
    ] {
        assert!(ws.contains_key(must), "{must} is a workspace package");
    }
    let apps: BTreeSet<&str> = ws
        .iter()
        .filter(|(n, p)| is_app(n, p))
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        apps.contains("medchain-ehr") && apps.contains("medchain-ehr-node") && apps.len() >= 3,
        "apps found: {apps:?}"
    );
    let mut broken = Vec::new();
    for (pkg, p) in &ws {
        let app_core = is_app(pkg, p) && !p.deps.iter().any(|d| d == "medchain-app");
        let pure = pkg == "medchain-types"
            || pkg == "medchain-chaincode"
            || pkg == "medchain-consensus"
            || ["medchain-pbft", "medchain-pow", "medchain-pos"].contains(&pkg.as_str());
        for d in &p.deps {
            let rule = match d.as_str() {
                "medchain-node" | "medchain-bench" if pkg != "medchain" => {
                    Some("nothing depends on node or benches but the binary")
                }
                // The node runs the simulator (`medchain sim`); no other library may.
                "medchain-sim" if pkg != "medchain-node" && pkg != "medchain-bench" => {
                    Some("only the node and the benchmarks use the simulator")
                }
                "rocksdb" if pkg != "medchain-ledger" => Some("only ledger/store knows RocksDB"),
                "quinn" if pkg != "medchain-network" => Some("only network knows QUIC"),
                // TLS: the transport's, and https for the API (the node serves it, the app
                // boundary's client speaks it).
                "rustls" | "tokio-rustls"
                    if !["medchain-network", "medchain-node", "medchain-app"]
                        .contains(&pkg.as_str()) =>
                {
                    Some("only network, node and the app boundary know TLS")
                }
                "tokio" | "rocksdb" | "quinn" | "axum" | "reqwest" if pure || app_core => {
                    Some("types, the chaincode API, engines and apps' cores do no I/O")
                }
                "config" if pkg != "medchain-node" => Some("only node reads config files"),
                d if apps.contains(d)
                    && !is_app(pkg, p)
                    && pkg != "medchain"
                    && pkg != "medchain-bench" =>
                {
                    Some("only the binary composes apps (and the benchmarks measure their cores)")
                }
                d if apps.contains(d)
                    && pkg == "medchain-bench"
                    && ws[d].deps.iter().any(|x| x == "medchain-app") =>
                {
                    Some("the benchmarks use apps' cores, not their node sides")
                }
                _ => None,
            };
            if let Some(rule) = rule {
                broken.push(format!("{pkg} depends on {d}: {rule}"));
            }
        }
    }
    // The node knows no app, not even through another crate (what `cargo tree -p
    // medchain-node` shows).
    for d in closure(&ws, "medchain-node") {
        if apps.contains(d.as_str()) {
            broken.push(format!("medchain-node depends on the app {d}"));
        }
    }
    for d in closure(&ws, "medchain-app") {
        if apps.contains(d.as_str()) || d == "medchain-node" {
            broken.push(format!("the app boundary depends on {d}"));
        }
    }
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

/// Every `.rs` file under `dir`, tests and build output aside.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("target") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let mut missing = Vec::new();
    for (_, p) in workspace() {
        for src in sources(&root().join(&p.dir).join("src")) {
            let text = std::fs::read_to_string(&src).unwrap();
            if !text.trim_start().starts_with("//!") {
                missing.push(src.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a //! header:\n{}",
        missing.join("\n")
    );
}

/// Most lines in a source file: a file has one concern.
const FILE_LINES_MAX: usize = 800;

#[test]
fn source_files_stay_small() {
    let mut long = Vec::new();
    for dir in ["apps", "benches", "consensus", "ledger", "network", "node"] {
        for src in sources(&root().join(dir)) {
            let lines = std::fs::read_to_string(&src).unwrap().lines().count();
            if lines > FILE_LINES_MAX {
                long.push(format!("{} ({lines} lines)", src.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {FILE_LINES_MAX} lines (split them along their seams):\n{}",
        long.join("\n")
    );
}

/// A crate's modules (`a::b` for `src/a/b.rs` or `src/a/b/mod.rs`; the root is `""`) and, for
/// each, the modules its source names through `crate::` or `super::` paths.
fn module_references(src_dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    for f in sources(src_dir) {
        let rel = f.strip_prefix(src_dir).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        // A binary's extra roots (`src/bin/`) are crates of their own: left out.
        if parts.first().is_some_and(|p| p == "bin") {
            continue;
        }
        modules.insert(parts.join("::"), std::fs::read_to_string(&f).unwrap());
    }
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    // The longest known module that `path` (components) starts with.
    let resolve = |path: &[String]| -> Option<String> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].join("::"))
            .find(|m| known.contains(m))
    };
    let mut refs = BTreeMap::new();
    for (module, text) in &modules {
        let here: Vec<String> = if module.is_empty() {
            Vec::new()
        } else {
            module.split("::").map(str::to_owned).collect()
        };
        let mut targets = BTreeSet::new();
        for (base, anchor) in [
            (Vec::new(), "crate::"),
            (here[..here.len().saturating_sub(1)].to_vec(), "super::"),
        ] {
            for piece in text.split(anchor).skip(1) {
                for path in first_paths(piece) {
                    let mut full = base.clone();
                    full.extend(path);
                    if let Some(t) = resolve(&full) {
                        targets.insert(t);
                    }
                }
            }
        }
        refs.insert(module.clone(), targets);
    }
    refs
}

/// The module paths at the start of `text` (what follows `crate::`): `a::b::C` gives `a::b::C`,
/// `{a::X, b::{Y, Z}}` gives `a::X` and `b`.
fn first_paths(text: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut items = vec![String::new()];
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(String::new());
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                items.last_mut().unwrap().push(c);
            }
        }
        items.iter().map(|i| ident(i.trim())).collect()
    } else {
        vec![ident(text)]
    }
}

/// Edges between sibling modules: `a::x` naming `b::y` is an edge `a -> b` (their ancestors
/// diverge there); naming an ancestor or a descendant is not one (a module and its children
/// share their parent's items by design).
fn sibling_edges(refs: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<(String, String)> {
    let split = |m: &str| -> Vec<String> {
        if m.is_empty() {
            Vec::new()
        } else {
            m.split("::").map(str::to_owned).collect()
        }
    };
    let mut edges = BTreeSet::new();
    for (from, targets) in refs {
        let a = split(from);
        for to in targets {
            let b = split(to);
            let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            if common == a.len() || common == b.len() {
                continue;
            }
            edges.insert((a[..=common].join("::"), b[..=common].join("::")));
        }
    }
    edges
}

/// A cycle in `edges`, if any.
fn cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    fn visit<'a>(
        n: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == n) {
            return Some(
                path[i..]
                    .iter()
                    .map(|s| s.to_string())
                    .chain([n.to_owned()])
                    .collect(),
            );
        }
        if !done.insert(n) {
            return None;
        }
        path.push(n);
        for m in next.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for start in next.keys() {
        if let Some(c) = visit(start, &next, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_cycle_between_modules() {
    let mut found = Vec::new();
    for (name, p) in workspace() {
        let refs = module_references(&root().join(&p.dir).join("src"));
        if let Some(c) = cycle(&sibling_edges(&refs)) {
            found.push(format!("{name}: {}", c.join(" -> ")));
        }
    }
    assert!(
        found.is_empty(),
        "modules that use each other:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_cycle_check_finds_cycles() {
    let refs: BTreeMap<String, BTreeSet<String>> = [
        ("store", vec!["tx_index"]),
        ("tx_index", vec!["store"]),
        ("runtime::engine", vec!["runtime", "runtime::hooks"]),
        ("runtime", vec!["runtime::engine"]),
        ("runtime::hooks", vec![]),
    ]
    .into_iter()
    .map(|(m, t)| (m.to_owned(), t.into_iter().map(str::to_owned).collect()))
    .collect();
    let edges = sibling_edges(&refs);
    assert!(edges.contains(&("runtime::engine".into(), "runtime::hooks".into())));
    assert!(
        !edges.iter().any(|(a, _)| a == "runtime"),
        "parent and child are not an edge"
    );
    let c = cycle(&edges).expect("store and tx_index use each other");
    assert_eq!(c.first(), c.last());
    assert_eq!(
        first_paths("{a::X, b::{Y, Z}, c}"),
        vec![
            vec!["a".to_owned(), "X".to_owned()],
            vec!["b".to_owned()],
            vec!["c".to_owned()]
        ]
    );
}
