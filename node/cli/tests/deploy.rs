//! The deployment pieces in `deploy/`, checked with the tools that consume them: the Kubernetes
//! manifests as `kubectl kustomize` renders them, and the systemd unit as `systemd-analyze
//! verify` reads it. A tool that is not installed skips its check, saying so.

use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether `tool` runs here; prints why a check is skipped when it does not.
fn have(tool: &str, args: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("skipped: {tool} is not installed");
    }
    ok
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    s(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} in {v:?}"))
}

/// The four hospitals' objects render: each node a StatefulSet with its own key Secret, the
/// consortium's genesis, a volume claim, the probes and ports; Services that select that node
/// only; a disruption budget that keeps a quorum of the nodes.
#[test]
fn the_kubernetes_manifests_render_with_probes_volumes_and_ports() {
    if !have("kubectl", &["version", "--client"]) {
        return;
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join("deploy/k8s"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let of = |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };
    let hospitals = ["st-mary", "riverside", "hillside", "northgate"];
    let sets = of("StatefulSet");
    assert_eq!(sets.len(), hospitals.len());
    let config_maps: Vec<&str> = of("ConfigMap")
        .iter()
        .map(|c| text(c, &["metadata", "name"]))
        .collect();
    for h in hospitals {
        let set = sets
            .iter()
            .find(|d| text(d, &["metadata", "name"]) == format!("{h}-medchain"))
            .unwrap_or_else(|| panic!("{h}'s StatefulSet"));
        assert_eq!(text(set, &["metadata", "namespace"]), "medchain");
        assert_eq!(s(set, &["spec", "replicas"]).as_u64(), Some(1));
        let peers = text(set, &["spec", "serviceName"]);
        assert_eq!(peers, format!("{h}-medchain-peers"));
        let pod = s(set, &["spec", "template"]);
        let labels = s(pod, &["metadata", "labels"]);
        assert_eq!(labels["medchain/node"], h);
        assert_eq!(labels["app.kubernetes.io/part-of"], "medchain-consortium");
        let spec = s(pod, &["spec"]);
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        let c = &spec["containers"][0];
        assert_eq!(c["args"][2], "/config/node.toml");
        assert_eq!(text(c, &["readinessProbe", "httpGet", "path"]), "/readyz");
        assert_eq!(text(c, &["livenessProbe", "httpGet", "path"]), "/healthz");
        assert_eq!(text(c, &["startupProbe", "httpGet", "path"]), "/healthz");
        assert!(c["resources"]["requests"]["cpu"].is_string());
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        let ports: Vec<(String, u64, String)> = c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    text(p, &["name"]).to_owned(),
                    p["containerPort"].as_u64().unwrap(),
                    text(p, &["protocol"]).to_owned(),
                )
            })
            .collect();
        assert!(
            ports.contains(&("p2p".into(), 7700, "UDP".into())),
            "{ports:?}"
        );
        assert!(
            ports.contains(&("api".into(), 8700, "TCP".into())),
            "{ports:?}"
        );
        let mounts: Vec<&str> = c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| text(m, &["mountPath"]))
            .collect();
        assert_eq!(mounts, ["/data", "/keys", "/genesis", "/config"]);
        let volume = |name: &str| {
            spec["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("volume {name}"))
        };
        assert_eq!(
            text(volume("key"), &["secret", "secretName"]),
            format!("{h}-node-key"),
            "each hospital its own key"
        );
        assert_eq!(
            text(volume("genesis"), &["configMap", "name"]),
            "medchain-genesis",
            "one genesis for all"
        );
        let config = text(volume("config"), &["configMap", "name"]);
        assert!(config_maps.contains(&config), "{config} is rendered");
        let claim = &s(set, &["spec", "volumeClaimTemplates"])[0];
        assert_eq!(text(claim, &["metadata", "name"]), "data");
        // The Services of this hospital select its pod only.
        for svc in of("Service")
            .iter()
            .filter(|d| text(d, &["metadata", "name"]).starts_with(&format!("{h}-")))
        {
            assert_eq!(svc["spec"]["selector"]["medchain/node"], h);
        }
        let headless = of("Service")
            .into_iter()
            .find(|d| text(d, &["metadata", "name"]) == peers)
            .expect("the headless Service");
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    }
    let pdb = of("PodDisruptionBudget");
    assert_eq!(pdb.len(), 1);
    assert_eq!(pdb[0]["spec"]["minAvailable"], 3, "3 of 4: a quorum");
    assert_eq!(
        pdb[0]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/part-of"],
        "medchain-consortium"
    );
    // No key material in the manifests: keys come from Secrets the hospitals create.
    assert!(of("Secret").is_empty());
}

/// `systemd-analyze verify` accepts the unit (with ExecStart pointing at the binary built here,
/// since the check also looks for the executable).
#[test]
fn the_systemd_unit_verifies() {
    if !have("systemd-analyze", &["--version"]) {
        return;
    }
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/medchain.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/medchain node --config"));
    let dir = tempfile::tempdir().unwrap();
    let here = unit.replace("/usr/local/bin/medchain", env!("CARGO_BIN_EXE_medchain"));
    let path = dir.path().join("medchain.service");
    std::fs::write(&path, here).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
