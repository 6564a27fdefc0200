//! The node's side of the app boundary, in process: a one-validator node started with a probe
//! app, which gets its `Host` and its genesis section, installs a chaincode, is mounted under
//! `/api/v1/probe/`, and sees each committed block of its chaincode on its hook, off the engine
//! thread; submit-and-wait, state views, signatures and members as an app sees them.

mod common;

use common::free_port_pair;
use medchain_app::{App, AppNode, CommittedBlock, Host, SubmitError};
use medchain_chaincode::{Chaincode, ChaincodeError, StateView, Stub};
use medchain_node::cluster::{testnet, TestnetSpec};
use medchain_node::config::NodeConfig;
use medchain_node::runtime::Node;
use medchain_types::{Domain, SecretKey, Transaction};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Writes its payload at key `last` and emits it as an event.
struct Echo;

impl Chaincode for Echo {
    fn name(&self) -> &str {
        "probe-echo"
    }
    fn execute(&self, stub: &mut dyn Stub, payload: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        stub.put(b"last", payload)?;
        stub.emit("echoed", payload)?;
        Ok(payload.to_vec())
    }
    fn query(&self, _view: &dyn StateView, _request: &[u8]) -> Result<Vec<u8>, ChaincodeError> {
        Ok(Vec::new())
    }
}

/// A block the hook saw: its height, its events' data, and the thread the hook ran on.
type SeenBlock = (u64, Vec<Vec<u8>>, String);

/// What the probe saw.
#[derive(Default)]
struct Seen {
    host: OnceLock<Arc<dyn Host>>,
    section: OnceLock<Option<toml::Value>>,
    blocks: Mutex<Vec<SeenBlock>>,
}

struct Probe(Arc<Seen>);

struct ProbeNode(Arc<Seen>);

impl AppNode for ProbeNode {
    fn routes(self: Arc<Self>) -> axum::Router {
        axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }))
    }
    fn committed(&self, block: &CommittedBlock) {
        let events = block
            .receipts
            .iter()
            .flat_map(|r| r.events.iter().map(|e| e.data.clone()))
            .collect();
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        self.0
            .blocks
            .lock()
            .unwrap()
            .push((block.height, events, thread));
    }
}

impl App for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn genesis_seal(&self, section: Option<&toml::Value>) -> Result<Vec<u8>, String> {
        Ok(section
            .map(|s| s.to_string().into_bytes())
            .unwrap_or_default())
    }
    fn chaincodes(
        &self,
        _section: Option<&toml::Value>,
    ) -> Result<Vec<Arc<dyn Chaincode>>, String> {
        Ok(vec![Arc::new(Echo)])
    }
    fn testnet(
        &self,
        _dir: &std::path::Path,
        _force: bool,
    ) -> anyhow::Result<medchain_app::TestnetPart> {
        Ok(medchain_app::TestnetPart {
            section: Some(toml::from_str("greeting = \"hello\"").unwrap()),
            notes: vec![],
        })
    }
    fn start(
        &self,
        host: Arc<dyn Host>,
        section: Option<&toml::Value>,
    ) -> anyhow::Result<Arc<dyn AppNode>> {
        let _ = self.0.host.set(host);
        let _ = self.0.section.set(section.cloned());
        Ok(Arc::new(ProbeNode(self.0.clone())))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_gets_its_host_its_section_its_chaincode_and_its_hook() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Seen::default());
    let apps: Vec<Arc<dyn App>> = vec![Arc::new(Probe(seen.clone()))];
    let (p2p, api) = free_port_pair();
    let spec = TestnetSpec::new(1, "pbft".into(), p2p, api, "host-test".into());
    testnet(&spec, dir.path(), false, &apps).unwrap();
    let config = NodeConfig::load(&dir.path().join("node0/node.toml")).unwrap();
    let node = Node::start(config, &apps).unwrap();

    let host = seen.host.get().expect("the app was started").clone();
    let section = seen
        .section
        .get()
        .unwrap()
        .clone()
        .expect("its genesis section");
    assert_eq!(section["greeting"].as_str(), Some("hello"));
    assert_eq!(host.chain_id(), "host-test");
    assert_eq!(host.members().len(), 1);
    assert_eq!(host.members()[0].key, host.node_id());
    assert_eq!(host.data_dir(), dir.path().join("node0/data"));
    // Signatures with the node key, which never leaves the node.
    let sig = host.sign(Domain::TEST, b"message");
    host.node_id()
        .verify(Domain::TEST, "host-test", b"message", &sig)
        .unwrap();
    assert_eq!(node.apps.len(), 1);
    assert_eq!(node.apps[0].chaincodes, vec!["probe-echo".to_owned()]);

    // Submit and wait: the receipts come back in order, and the state view sees the write.
    let key = SecretKey::from_seed([4; 32]);
    let txs: Vec<Transaction> = (0..3u8)
        .map(|i| Transaction::signed("host-test", "probe-echo", vec![i; 4], u64::from(i), &key))
        .collect();
    let receipts = host.submit(txs.clone()).await.unwrap();
    assert_eq!(receipts.len(), 3);
    for (r, t) in receipts.iter().zip(&txs) {
        assert!(r.is_success());
        assert_eq!(r.tx_hash, t.hash());
    }
    let last = host.state("probe-echo").get(b"last").unwrap();
    assert!(last.is_some());
    // A bad signature is refused, not waited for.
    let mut forged = Transaction::signed("host-test", "probe-echo", vec![9], 9, &key);
    forged.nonce = 10;
    assert!(matches!(
        host.submit(vec![forged]).await,
        Err(SubmitError::Invalid(_))
    ));

    // The hook sees every payload once, on its own thread.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let blocks = seen.blocks.lock().unwrap().clone();
        let payloads: Vec<Vec<u8>> = blocks.iter().flat_map(|(_, e, _)| e.clone()).collect();
        if payloads.len() >= 3 {
            let mut sorted = payloads.clone();
            sorted.sort();
            assert_eq!(
                sorted,
                vec![vec![0; 4], vec![1; 4], vec![2; 4]],
                "each once"
            );
            assert!(
                blocks.windows(2).all(|w| w[0].0 < w[1].0),
                "in height order"
            );
            assert!(
                blocks.iter().all(|(_, _, t)| t == "app-hooks"),
                "off the engine thread"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hook did not see the blocks: {blocks:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.stop().await;
    let cursor = std::fs::read_to_string(dir.path().join("node0/data/app-hooks.height")).unwrap();
    assert!(cursor.trim().parse::<u64>().unwrap() >= 1);
}
