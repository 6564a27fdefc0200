//! `docs/cli.md` is the command reference generated from the command definitions: it must be
//! current, and each of its sections must be what the binary prints for that command's `--help`.
//! `MEDCHAIN_BLESS=1 cargo test -p medchain --test docs` writes it anew.

use std::path::PathBuf;
use std::process::Command;

fn reference_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md")
}

#[test]
fn the_command_reference_is_current_and_matches_the_help() {
    let expected = medchain_node::cli::markdown(medchain_node::cli::command(&medchain::apps()));
    let path = reference_path();
    if std::env::var_os("MEDCHAIN_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == expected,
        "docs/cli.md is not current: regenerate it with `MEDCHAIN_BLESS=1 cargo test -p medchain --test docs`"
    );
    // Each section is the binary's own `--help` of that command.
    let mut sections = 0;
    for part in have.split("\n## `").skip(1) {
        let (title, rest) = part.split_once("`\n\n```text\n").expect("a section");
        let body = rest.split_once("\n```\n").expect("a fenced help").0;
        let args: Vec<&str> = title.split(' ').skip(1).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_medchain"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{title} --help");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim_end(),
            body,
            "the section of `{title}` is its --help"
        );
        sections += 1;
    }
    assert!(sections >= 30, "{sections} sections");
    for must in [
        "medchain up",
        "medchain ehr doc upload",
        "medchain bench docs",
        "medchain kv get",
    ] {
        assert!(
            have.contains(&format!("## `{must}`")),
            "{must} is documented"
        );
    }
}

/// The validator `scripts/install-deps.sh --test` installs (`MEDCHAIN_OPENAPI_VALIDATOR` names
/// another), or one on the `PATH`.
fn openapi_validator() -> PathBuf {
    if let Some(v) = std::env::var_os("MEDCHAIN_OPENAPI_VALIDATOR") {
        return v.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/venv/bin/openapi-spec-validator");
    if venv.exists() {
        return venv;
    }
    let on_path = Command::new("openapi-spec-validator")
        .arg("--help")
        .output();
    assert!(
        on_path.is_ok_and(|o| o.status.success()),
        "openapi-spec-validator is not installed: run scripts/install-deps.sh --test \
         (it installs it into target/venv from PyPI)"
    );
    PathBuf::from("openapi-spec-validator")
}

/// The OpenAPI document a node of this build serves is valid for a validator this project did
/// not write, and one with a deliberate mistake is not (so the check can fail).
#[test]
fn the_openapi_document_is_valid_for_an_independent_validator() {
    let doc = medchain_node::api::openapi_document(&medchain::apps());
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("openapi.json");
    std::fs::write(&good, &doc).unwrap();
    let validator = openapi_validator();
    let out = Command::new(&validator).arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut broken: serde_json::Value = serde_json::from_str(&doc).unwrap();
    broken["paths"]["/api/v1/txs"]["post"]["requestBody"]["content"]["application/octet-stream"]
        ["description"] = "not allowed in a media type".into();
    let bad = dir.path().join("broken.json");
    std::fs::write(&bad, broken.to_string()).unwrap();
    let out = Command::new(&validator).arg(&bad).output().unwrap();
    assert!(!out.status.success(), "the validator finds the mistake");
}
