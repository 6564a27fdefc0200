//! The `medchain` binary as a user runs it: exit codes, output and error messages.

use std::path::Path;
use std::process::{Command, Output};

fn medchain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medchain"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_command_has_help() {
    let top = medchain(&["--help"]);
    assert!(top.status.success());
    for cmd in [
        "up",
        "testnet",
        "node",
        "status",
        "kv",
        "load",
        "sim",
        "keygen",
        "pubkey",
        "verify-chain",
        "demo",
        "genesis",
        "probe",
    ] {
        assert!(stdout(&top).contains(cmd), "top-level help lists {cmd}");
        let o = medchain(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help");
        assert!(
            stdout(&o).contains("Usage: medchain"),
            "{cmd} --help prints usage"
        );
    }
    for sub in ["new", "add-validator", "add-admin", "show", "hash"] {
        let o = medchain(&["genesis", sub, "--help"]);
        assert!(o.status.success(), "genesis {sub} --help");
    }
    let o = medchain(&["probe", "http://127.0.0.1:1/readyz", "--timeout-secs", "1"]);
    assert!(!o.status.success(), "nothing answers");
    assert!(stderr(&o).contains("cannot reach"), "{}", stderr(&o));
    let o = medchain(&["no-such-command"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unrecognized subcommand"));
}

#[test]
fn keygen_writes_a_key_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys/node.json");
    let o = medchain(&["keygen", "--out", path(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let public = stdout(&o).trim().to_owned();
    assert_eq!(public.len(), 64, "prints the hex public key");
    let o = medchain(&["pubkey", "--key", path(&key)]);
    assert_eq!(stdout(&o).trim(), public);

    let again = medchain(&["keygen", "--out", path(&key)]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    let forced = medchain(&["keygen", "--out", path(&key), "--force"]);
    assert!(forced.status.success());
    assert_ne!(stdout(&forced).trim(), public);
}

#[test]
fn a_missing_or_broken_key_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let o = medchain(&["pubkey", "--key", path(&missing)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("medchain keygen"),
        "says how to make one"
    );
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "not json").unwrap();
    let o = medchain(&["pubkey", "--key", path(&broken)]);
    assert!(
        stderr(&o).contains("is not a medchain key file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn demo_writes_a_chain_that_verify_chain_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let o = medchain(&[
        "demo",
        "--data",
        path(&data),
        "--blocks",
        "12",
        "--txs",
        "25",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("verify-chain: OK, 12 blocks, 300 transactions"),
        "{out}"
    );
    assert!(out.contains("Merkle proof verifies"), "{out}");

    // Run again: the chain is extended, not rewritten.
    let o = medchain(&["demo", "--data", path(&data), "--blocks", "3", "--txs", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("starting at height 12"));

    let o = medchain(&["verify-chain", "--data", path(&data)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("OK, 15 blocks, 315 transactions"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn verify_chain_refuses_what_is_not_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let o = medchain(&["verify-chain", "--data", path(&dir.path().join("absent"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not a medchain ledger: no such directory"),
        "{}",
        stderr(&o)
    );

    std::fs::write(dir.path().join("CURRENT"), "MANIFEST-000001\n").unwrap();
    let o = medchain(&["verify-chain", "--data", path(dir.path())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not a medchain ledger"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn sim_prints_a_summary_and_refuses_bad_arguments() {
    let o = medchain(&[
        "sim",
        "--engine",
        "pbft",
        "--nodes",
        "4",
        "--seeds",
        "3",
        "--faults",
        "crash,drop",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "runs            3",
        "violations      0",
        "simulated time",
        "real time",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let o = medchain(&["sim", "--engine", "nope"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown engine"), "{}", stderr(&o));
    let o = medchain(&["sim", "--faults", "flood"]);
    assert!(stderr(&o).contains("unknown fault"), "{}", stderr(&o));
}

#[test]
fn node_refuses_a_missing_config_and_testnet_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let o = medchain(&["node", "--config", path(&dir.path().join("none.toml"))]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let out = dir.path().join("net");
    let args = [
        "testnet",
        "--nodes",
        "4",
        "--out",
        path(&out),
        "--p2p-port",
        "39000",
        "--api-port",
        "39100",
    ];
    assert!(medchain(&args).status.success());
    for i in 0..4 {
        assert!(out.join(format!("node{i}/node.toml")).is_file());
    }
    // Node i is validator i of the key-sorted set, so node 0 is the primary of view 0.
    let genesis: toml::Value =
        toml::from_str(&std::fs::read_to_string(out.join("genesis.toml")).unwrap()).unwrap();
    let validators = genesis["validators"].as_array().unwrap();
    let names: Vec<&str> = validators
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["node0", "node1", "node2", "node3"]);
    let keys: Vec<&str> = validators
        .iter()
        .map(|v| v["key"].as_str().unwrap())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    let again = medchain(&args);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already holds a testnet"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn load_refuses_bad_settings_before_reaching_a_node() {
    // Port 9 on loopback: nothing listens there, and these must fail before any request.
    let node = "http://127.0.0.1:9";
    for (args, needle) in [
        (vec!["--senders", "0"], "must be positive"),
        (vec!["--senders", "100001"], "more than 100000"),
        (vec!["--rate", "0"], "must be positive"),
        (vec!["--chaincode", "ehr"], "noop or kv"),
        // 18 quintillion transactions overflow; 40 million of 512 bytes exceed the memory bound.
        (
            vec!["--rate", "18446744073709551615", "--duration", "2"],
            "GiB",
        ),
        (vec!["--rate", "4000000", "--duration", "10"], "GiB"),
    ] {
        let mut all = vec!["load", "--node", node];
        all.extend(args.iter().copied());
        let o = medchain(&all);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}
