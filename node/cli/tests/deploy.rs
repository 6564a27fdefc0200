//! The deployment pieces in `deploy/`, checked with the tools that consume them: the Kubernetes
//! manifests as `kubectl kustomize` renders them, and the systemd unit as `systemd-analyze
//! verify` reads it. A tool that is not installed skips its check, saying so.

mod common;

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

/// The alert rules are YAML with Prometheus's layout (the ceremony test checks the metrics they
/// name against a running node).
#[test]
fn the_alert_rules_are_prometheus_rule_groups() {
    let text = std::fs::read_to_string(repo().join("deploy/monitoring/alerts.yml")).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let rules = doc["groups"][0]["rules"].as_sequence().expect("rules");
    assert!(rules.len() >= 6);
    for r in rules {
        assert!(r["alert"].is_string() && r["expr"].is_string(), "{r:?}");
        assert!(r["annotations"]["summary"].is_string(), "{r:?}");
    }
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

/// What a Docker test made, removed when it ends (also when it fails): the compose projects
/// with their networks and volumes, and the images.
struct DockerMade {
    projects: Vec<(String, Vec<(String, String)>)>,
    images: Vec<String>,
}

impl Drop for DockerMade {
    fn drop(&mut self) {
        for (project, env) in &self.projects {
            let _ = compose(project, env, &["down", "--volumes", "--remove-orphans"]);
        }
        for image in &self.images {
            let _ = Command::new("docker")
                .args(["rmi", "--force", image])
                .output();
        }
    }
}

fn compose(project: &str, env: &[(String, String)], args: &[&str]) -> std::process::Output {
    Command::new("docker-compose")
        .arg("--project-name")
        .arg(project)
        .arg("--file")
        .arg(repo().join("deploy/compose/docker-compose.yml"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node's height and last hash, or its readiness, through its published port.
fn node_get(port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    let out = Command::new("curl")
        .args(["-s", "-m", "3", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, serde_json::from_str(body).ok()?))
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) -> std::time::Duration {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(secs),
            "timed out after {secs} s: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    start.elapsed()
}

/// The compose consortium, from an image built here without a registry, under PBFT and proof of
/// stake: four containers on the consortium's own network find each other by name and commit
/// through their published ports; one is killed (`docker kill`) and started again and catches
/// up; another is paused while commits go on; at the end every chain is the same.
#[test]
fn the_compose_consortium_survives_a_kill_and_a_pause() {
    let docker = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !docker {
        println!("skipped: no Docker engine answers `docker info`");
        return;
    }
    if !have("docker-compose", &["version"]) || !have("curl", &["--version"]) {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_medchain");
    let id = std::process::id();
    let (image, base) = (
        format!("medchain-test-{id}:local"),
        format!("medchain-test-base-{id}:local"),
    );
    let mut made = DockerMade {
        projects: Vec::new(),
        images: vec![image.clone(), base.clone()],
    };
    let built = run_ok(
        Command::new(repo().join("deploy/docker/build-image.sh")).args([
            "--binary",
            bin,
            "--tag",
            &image,
            "--base-name",
            &base,
        ]),
    );
    println!("{}", built.trim());
    let members = ["st-mary", "riverside", "hillside", "northgate"];
    for engine in ["pbft", "pos"] {
        let dir = tempfile::tempdir().unwrap();
        run_ok(
            Command::new(repo().join("deploy/compose/consortium.sh"))
                .args(["init", "--engine", engine, "--dir"])
                .arg(dir.path())
                .env("MEDCHAIN_IMAGE", &image),
        );
        let ports: Vec<u16> = {
            let (_, api) = common::free_ports(4);
            (api..api + 4).collect()
        };
        // The nodes run as the invoking user, or as 10001 for root (as consortium.sh set up).
        let (uid, gid) = match run_ok(Command::new("id").arg("-u")).trim() {
            "0" => ("10001".to_owned(), "10001".to_owned()),
            uid => (
                uid.to_owned(),
                run_ok(Command::new("id").arg("-g")).trim().to_owned(),
            ),
        };
        let mut env: Vec<(String, String)> = vec![
            ("MEDCHAIN_DIR".into(), dir.path().display().to_string()),
            ("MEDCHAIN_UID".into(), uid),
            ("MEDCHAIN_GID".into(), gid),
            ("MEDCHAIN_IMAGE".into(), image.clone()),
        ];
        for (i, p) in ports.iter().enumerate() {
            env.push((format!("MEDCHAIN_API_PORT_{i}"), p.to_string()));
        }
        let project = format!("medchain-test-{id}-{engine}");
        made.projects.push((project.clone(), env.clone()));
        let up = compose(&project, &env, &["up", "--detach"]);
        assert!(
            up.status.success(),
            "{}",
            String::from_utf8_lossy(&up.stderr)
        );
        let ready = |i: usize| matches!(node_get(ports[i], "/readyz"), Some((200, _)));
        let took = wait_for("every node ready", 90, || (0..4).all(ready));
        println!(
            "{engine}: four containers ready {:.1} s after `up`",
            took.as_secs_f64()
        );
        let client = dir.path().join("client.json");
        run_ok(Command::new(bin).args(["keygen", "--out"]).arg(&client));
        let commit = |i: usize, key: &str| {
            run_ok(
                Command::new(bin)
                    .args(["kv", "put", key, engine, "--node"])
                    .arg(format!("http://127.0.0.1:{}", ports[i]))
                    .arg("--key-file")
                    .arg(&client),
            );
        };
        for i in 0..4 {
            commit(i, &format!("before-{i}"));
        }
        let container = |m: &str| compose(&project, &env, &["ps", "-q", m]).stdout;
        let container = |m: &str| String::from_utf8(container(m)).unwrap().trim().to_owned();
        // Killed, commits go on, started again: it catches up.
        let killed = container(members[3]);
        run_ok(Command::new("docker").args(["kill", &killed]));
        for n in 0..3 {
            commit(n % 3, &format!("while-killed-{n}"));
        }
        run_ok(Command::new("docker").args(["start", &killed]));
        let height =
            |i: usize| node_get(ports[i], "/api/v1/status").map(|(_, v)| v["height"].clone());
        let caught = wait_for("the restarted node catches up", 60, || {
            ready(3) && height(3).is_some() && height(3) == height(0)
        });
        println!(
            "{engine}: the killed node is back and caught up {:.1} s after `docker start`",
            caught.as_secs_f64()
        );
        // Paused, commits go on without it; resumed, it follows.
        let paused = container(members[2]);
        run_ok(Command::new("docker").args(["pause", &paused]));
        for n in 0..3 {
            commit([0, 1, 3][n], &format!("while-paused-{n}"));
        }
        run_ok(Command::new("docker").args(["unpause", &paused]));
        commit(2, "after");
        // Every chain the same.
        wait_for("the four chains agree", 60, || {
            let tips: Vec<_> = (0..4)
                .map(|i| {
                    node_get(ports[i], "/api/v1/status")
                        .map(|(_, v)| (v["height"].clone(), v["last_hash"].clone()))
                })
                .collect();
            tips.iter().all(|t| t.is_some() && *t == tips[0])
        });
        let (_, status) = node_get(ports[0], "/api/v1/status").unwrap();
        assert_eq!(status["engine"], engine);
        assert!(status["height"].as_u64().unwrap() >= 11, "{status}");
        let down = compose(&project, &env, &["down", "--volumes"]);
        assert!(down.status.success());
        for m in members {
            let ledger = dir.path().join(m).join("data/ledger");
            run_ok(
                Command::new(bin)
                    .arg("verify-chain")
                    .arg("--data")
                    .arg(ledger),
            );
        }
    }
}
