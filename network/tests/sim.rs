//! The same transport over turmoil's simulated network: partitions stop delivery, repair
//! restores it, and a seed fixes the whole trace.

mod common;

use bytes::Bytes;
use common::key;
use medchain_network::{NetEvent, NetworkConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PORT: u16 = 7000;
const NODES: u8 = 3;

/// One line per event: `time_ms node event`.
type Trace = Arc<Mutex<Vec<String>>>;

fn host_name(i: u8) -> String {
    format!("n{i}")
}

fn record(trace: &Trace, line: String) {
    trace.lock().unwrap().push(line);
}

fn elapsed_ms() -> u128 {
    turmoil::sim_elapsed().unwrap_or_default().as_millis()
}

/// Runs 3 nodes that broadcast a numbered message every 100 ms; the driver partitions n0 from
/// n1 at 3 s for `partition` and then repairs. Returns the trace.
fn run(seed: u64, partition: Duration) -> Vec<String> {
    let trace: Trace = Arc::new(Mutex::new(Vec::new()));
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(10))
        .build();
    for i in 0..NODES {
        let trace = trace.clone();
        sim.host(host_name(i), move || {
            let trace = trace.clone();
            async move {
                let peers: BTreeMap<_, _> = (0..NODES)
                    .map(|j| {
                        let addr = SocketAddr::new(turmoil::lookup(host_name(j)), PORT);
                        (key(j).public(), addr.to_string())
                    })
                    .collect();
                let mut cfg = NetworkConfig::new(SocketAddr::from(([0, 0, 0, 0], PORT)), peers, 1);
                cfg.rng_seed = Some([i; 32]);
                cfg.idle_timeout = Duration::from_secs(2);
                cfg.keep_alive = Duration::from_millis(300);
                cfg.reconnect_backoff_min = Duration::from_millis(50);
                cfg.reconnect_backoff_max = Duration::from_millis(400);
                let keys: Vec<_> = (0..NODES).map(|j| key(j).public()).collect();
                let name = |k: &medchain_types::PublicKey| keys.iter().position(|x| x == k).unwrap();
                let (net, mut events) = medchain_network::sim::start(&key(i), cfg, PORT).await?;
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut seq = 0u32;
                loop {
                    tokio::select! {
                        biased;
                        ev = events.recv() => match ev {
                            Some(NetEvent::Message { from, bytes }) => record(&trace, format!(
                                "{} n{i} recv n{} {}", elapsed_ms(), name(&from), String::from_utf8_lossy(&bytes))),
                            Some(NetEvent::Connected(p)) => record(&trace, format!("{} n{i} connected n{}", elapsed_ms(), name(&p))),
                            Some(NetEvent::Disconnected(p)) => record(&trace, format!("{} n{i} disconnected n{}", elapsed_ms(), name(&p))),
                            None => return Ok(()),
                        },
                        _ = tick.tick() => {
                            seq += 1;
                            let _ = net.broadcast(Bytes::from(format!("m{seq}")));
                        }
                    }
                }
            }
        });
    }
    let trace_driver = trace.clone();
    sim.client("driver", async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        record(
            &trace_driver,
            format!("{} driver partition n0 n1", elapsed_ms()),
        );
        turmoil::partition(host_name(0), host_name(1));
        tokio::time::sleep(partition).await;
        record(
            &trace_driver,
            format!("{} driver repair n0 n1", elapsed_ms()),
        );
        turmoil::repair(host_name(0), host_name(1));
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(())
    });
    sim.run().unwrap();
    let t = trace.lock().unwrap().clone();
    t
}

fn time_of(line: &str) -> u128 {
    line.split_whitespace().next().unwrap().parse().unwrap()
}

fn deliveries<'a>(
    trace: &'a [String],
    to: &str,
    from: &str,
) -> impl Iterator<Item = &'a String> + 'a {
    let needle = format!(" {to} recv {from} ");
    trace.iter().filter(move |l| l.contains(&needle))
}

#[test]
fn a_partition_stops_delivery_and_repair_restores_it() {
    let trace = run(7, Duration::from_secs(6));
    let cut = time_of(
        trace
            .iter()
            .find(|l| l.contains("driver partition"))
            .unwrap(),
    );
    let heal = time_of(trace.iter().find(|l| l.contains("driver repair")).unwrap());
    // Everyone connected before the cut.
    for i in 0..NODES {
        let connected = trace
            .iter()
            .filter(|l| l.contains(&format!(" n{i} connected")) && time_of(l) < cut)
            .count();
        assert_eq!(
            connected,
            2,
            "n{i} connected to both peers before the partition:\n{}",
            trace.join("\n")
        );
    }
    for (to, from) in [("n0", "n1"), ("n1", "n0")] {
        let during: Vec<_> = deliveries(&trace, to, from)
            .filter(|l| time_of(l) > cut + 20 && time_of(l) < heal)
            .collect();
        assert!(
            during.is_empty(),
            "{to} received from {from} during the partition: {during:?}"
        );
        let after = deliveries(&trace, to, from)
            .filter(|l| time_of(l) > heal)
            .count();
        assert!(
            after >= 20,
            "{to} receives from {from} again after repair ({after} messages)"
        );
    }
    // The partition was long enough for the connection to time out, and it came back.
    assert!(trace
        .iter()
        .any(|l| l.contains("n0 disconnected n1") && time_of(l) > cut && time_of(l) < heal));
    assert!(trace
        .iter()
        .any(|l| l.contains("n0 connected n1") && time_of(l) > heal));
    // The other links never noticed.
    for (to, from) in [("n0", "n2"), ("n2", "n1")] {
        let during = deliveries(&trace, to, from)
            .filter(|l| time_of(l) > cut && time_of(l) < heal)
            .count();
        assert!(
            during >= 50,
            "{to} kept receiving from {from} during the partition ({during})"
        );
    }
}

#[test]
fn a_short_partition_is_bridged_without_losing_messages() {
    // Shorter than the idle timeout: QUIC retransmits, the connection survives, nothing is lost.
    let trace = run(11, Duration::from_millis(1500));
    for (to, from) in [("n0", "n1"), ("n1", "n0")] {
        let seqs: Vec<u32> = deliveries(&trace, to, from)
            .map(|l| l.rsplit('m').next().unwrap().parse().unwrap())
            .collect();
        let first = seqs[0];
        assert_eq!(
            seqs,
            (first..first + seqs.len() as u32).collect::<Vec<_>>(),
            "{to} from {from}: in order, no gap"
        );
    }
    assert!(
        !trace.iter().any(|l| l.contains("disconnected")),
        "no disconnect for a short partition"
    );
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let a = run(42, Duration::from_secs(4));
    let b = run(42, Duration::from_secs(4));
    assert!(a.len() > 200);
    assert_eq!(a, b, "same seed, same trace");
    let c = run(43, Duration::from_secs(4));
    assert_ne!(a, c, "another seed, another trace (latencies differ)");
}
