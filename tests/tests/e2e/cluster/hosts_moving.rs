//! A cluster node lost under its hosts, through real processes (a nats-server and three
//! `relay-server` nodes): a node killed with SIGKILL, whose hosts notice within their idle
//! timeout and move to another node of their list, and a node drained with SIGTERM, whose hosts
//! move at once; a caller on a third node sees its open channel keep working and, through a
//! failover stub, no failed call.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use relay_rpc::{Backoff, Connection, Host, HostStatus, OpenError, RelayUrls};
use relay_tests::cluster::{ClusterNode, settle};
use relay_tests::lab::{LabClient, LabHost, ServeLab};
use relay_tests::nats::TestNats;
use relay_tests::{SLACK, temp_dir};
use tokio::task::JoinHandle;

use super::{Heartbeats, ctx};

/// A host named `name` serving the lab on `address` through whichever node of `relays` answers,
/// moving when it loses it.
fn serve_online(node: &ClusterNode, relays: &[&ClusterNode], address: &str, name: &str) -> JoinHandle<()> {
    let urls = RelayUrls::new(relays.iter().map(|n| n.url.clone()));
    let (lab, _events) = LabHost::new(name);
    let (status, _) = tokio::sync::watch::channel(HostStatus::Connecting);
    let (options, address) = (node.options(), address.to_owned());
    tokio::spawn(async move {
        let error = Host::serve_online(urls, options, &address, ServeLab::new(lab), Backoff::default(), status).await;
        panic!("host gave up: {error}");
    })
}

/// Starts hosts on `address` over `relays` (random order each) until `target` has at least two
/// of them; returns the hosts' tasks and names.
async fn hosts_with_two_on(
    heartbeats: &Heartbeats,
    target: &ClusterNode,
    relays: &[&ClusterNode],
    address: &str,
) -> (Vec<JoinHandle<()>>, BTreeSet<String>) {
    let mut hosts = Vec::new();
    let mut names = BTreeSet::new();
    while hosts.len() < 16 {
        let name = format!("host-{}", hosts.len());
        hosts.push(serve_online(target, relays, address, &name));
        names.insert(name);
        if hosts.len() >= 4 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if heartbeats.next_from(&target.url).await.listeners >= 2 {
                return (hosts, names);
            }
        }
    }
    panic!("16 hosts over {} relays and fewer than two on {}", relays.len(), target.url);
}

/// Opens channels through `caller` until every host of `names` has answered one, within `within`.
async fn until_every_host_answers(caller: &Connection, address: &str, names: &BTreeSet<String>, within: Duration) {
    let deadline = Instant::now() + within;
    let mut answered = BTreeSet::new();
    while answered != *names {
        assert!(
            Instant::now() < deadline,
            "within {within:?} only {answered:?} of {names:?} answered (the others did not re-home)"
        );
        match LabClient::connect(caller, address).await {
            Ok(client) => {
                if let Ok(name) = client.whoami(ctx()).await {
                    answered.insert(name);
                }
            }
            Err(OpenError::NoListener { .. } | OpenError::Refused { .. }) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("unexpected open error: {e:?}"),
        }
    }
}

/// Three nodes: hosts on "lab" over nodes a and b (at least two on a), every one of them
/// answering a caller on node c.
struct Cluster {
    _nats: TestNats,
    a: ClusterNode,
    _b: ClusterNode,
    _c: ClusterNode,
    _hosts: Vec<JoinHandle<()>>,
    names: BTreeSet<String>,
    caller: Connection,
}

impl Cluster {
    async fn start(name: &str) -> Self {
        let nats = TestNats::start();
        let data = temp_dir("cluster-data");
        let a = ClusterNode::start(&nats.url(), name, &data);
        let b = ClusterNode::start(&nats.url(), name, &data);
        let c = ClusterNode::start(&nats.url(), name, &data);
        let heartbeats = Heartbeats::watch(&nats, name).await;
        let (hosts, names) = hosts_with_two_on(&heartbeats, &a, &[&a, &b], "lab").await;
        let caller = Connection::connect(&c.url, c.options()).await.expect("caller connects to node c");
        until_every_host_answers(&caller, "lab", &names, settle()).await;
        Self { _nats: nats, a, _b: b, _c: c, _hosts: hosts, names, caller }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_hosts_re_home_within_ten_seconds_and_channels_on_other_nodes_run_on() {
    let Cluster { _nats, mut a, _b, _c, _hosts, names, caller } = Cluster::start("kill").await;
    // Channels open now run on node c (their hosts dialled it), whichever node their host is on.
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(LabClient::connect(&caller, "lab").await.expect("a channel opens"));
    }

    a.kill();
    let killed = Instant::now();
    for client in &open {
        assert_eq!(client.check(ctx(), 7).await.unwrap(), Ok(7), "a channel on node c runs on");
    }
    // Hosts notice within their idle timeout (6 s by default) and register on node b.
    until_every_host_answers(&caller, "lab", &names, Duration::from_secs(10) + SLACK).await;
    eprintln!("every host callable again {:?} after the kill", killed.elapsed());
    for client in &open {
        assert_eq!(client.check(ctx(), 8).await.unwrap(), Ok(8), "still running after the re-homing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_nodes_hosts_move_and_a_failover_stub_calling_through_it_sees_no_failed_call() {
    let Cluster { _nats, mut a, _b, _c, _hosts, names, caller } = Cluster::start("drain").await;

    // Stubs calling without pause, each on its own channel (so some on hosts of node a), while
    // node a drains and exits.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for i in 0..8u64 {
        let client = LabClient::connect(&caller, "lab").await.expect("a channel opens");
        let stop = stop.clone();
        callers.push(tokio::spawn(async move {
            let mut calls = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n = i * 1_000_000 + calls;
                let answer = client.check(ctx(), n as i64).await.expect("no call fails through the drain");
                assert_eq!(answer, Ok(n));
                calls += 1;
            }
            calls
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.signal("-TERM");
    assert!(a.wait_exit(Duration::from_secs(30) + SLACK), "node a did not exit after draining");
    // Every host is callable on the nodes left, new channels included.
    until_every_host_answers(&caller, "lab", &names, settle()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in callers {
        let calls = task.await.expect("no caller failed");
        assert!(calls > 0);
    }
}
