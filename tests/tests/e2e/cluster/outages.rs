//! Nodes and NATS lost: a killed node, a stopped one, NATS down or absent at start, a node
//! with other keys.

use std::time::{Duration, Instant};

use relay_proto::ErrorCode;
use relay_rpc::{Connection, Host, OpenError};
use relay_tests::cluster::{ClusterNode, NODE_TIMEOUT_MS, OPEN_TIMEOUT_MS, settle};
use relay_tests::lab::{LabClient, LabHost, ServeLab};
use relay_tests::nats::TestNats;
use relay_tests::{SLACK, temp_dir};

use super::{ctx, lab_once_known, serve_lab};

/// A lab client on `address` through `caller` once NATS is back (started or restarted just
/// before): within 5 s and slack, cross-node opens refused meanwhile as no listener or
/// unreachable.
async fn once_nats_is_back(caller: &Connection, address: &str) -> LabClient {
    let back = Instant::now();
    let recovered = Duration::from_secs(5) + SLACK;
    loop {
        match LabClient::connect(caller, address).await {
            Ok(client) => return client,
            Err(OpenError::NoListener { .. } | OpenError::Refused { code: ErrorCode::Unreachable, .. })
                if back.elapsed() < recovered =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cross-node opens did not work within {recovered:?} of nats's return: {e:?}"),
        }
    }
}
/// Opens channels to `address` through `caller` until one is refused with `NoListener` (the
/// caller's node has dropped the listener's node from its view), within [`settle`]: every open
/// fails, each within the open timeout (plus slack) and with a typed error, never a hang.
async fn until_no_listener(caller: &Connection, address: &str) {
    let deadline = Instant::now() + settle();
    while Instant::now() < deadline {
        let started = Instant::now();
        let err = LabClient::connect(caller, address).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, OpenError::NoListener { .. } | OpenError::Refused { code: ErrorCode::Unreachable, .. }),
            "{err:?}"
        );
        assert!(took < Duration::from_millis(OPEN_TIMEOUT_MS) + Duration::from_secs(1), "refused after {took:?}");
        if matches!(err, OpenError::NoListener { .. }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the caller's node still routes to the lost node after {:?}", settle());
}

#[tokio::test]
async fn a_killed_listener_node_makes_opens_fail_fast_with_a_typed_error() {
    let nats = TestNats::start();
    let data = temp_dir("cluster-data");
    let mut a = ClusterNode::start(&nats.url(), "kill", &data);
    let b = ClusterNode::start(&nats.url(), "kill", &data);
    let _host = serve_lab(&a, "lab", "on-a").await;
    let caller = Connection::connect(&b.url, b.options()).await.expect("caller connects to node b");
    let client = lab_once_known(&caller, "lab").await;
    assert_eq!(client.whoami(ctx()).await.unwrap(), "on-a");

    a.kill();
    // The dead node's subject has no responders at once; its heartbeats stop, and after the
    // node timeout node b has dropped it.
    until_no_listener(&caller, "lab").await;
}

/// Waits until every one of `nodes` answers `/readyz` with `status`; panics after `within`.
async fn until_readiness(nodes: &[&ClusterNode], status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    for node in nodes {
        loop {
            let readyz = node.readyz().await;
            if readyz.status == status {
                if status == 503 {
                    assert!(readyz.body.contains("not connected to the cluster's NATS"), "{readyz:?}");
                }
                break;
            }
            assert!(Instant::now() < deadline, "{} not {status} within {within:?}: {readyz:?}", node.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_nats_is_down_same_node_calls_work_and_cross_node_opens_fail_fast_then_recover() {
    let mut nats = TestNats::start();
    let data = temp_dir("cluster-data");
    let a = ClusterNode::start(&nats.url(), "outage", &data);
    let b = ClusterNode::start(&nats.url(), "outage", &data);
    let c = ClusterNode::start(&nats.url(), "outage", &data);
    let _host = serve_lab(&a, "lab", "on-a").await;
    let caller_a = Connection::connect(&a.url, a.options()).await.expect("caller connects to node a");
    let callers = [&b, &c].map(|node| Connection::connect(&node.url, node.options()));
    let [caller_b, caller_c] = futures::future::join_all(callers).await.try_into().expect("two callers");
    let (caller_b, caller_c) = (caller_b.expect("caller connects to node b"), caller_c.expect("to node c"));
    let open_cross = lab_once_known(&caller_b, "lab").await;
    assert_eq!(open_cross.whoami(ctx()).await.unwrap(), "on-a");
    assert_eq!(lab_once_known(&caller_c, "lab").await.whoami(ctx()).await.unwrap(), "on-a");
    until_readiness(&[&a, &b, &c], 200, SLACK).await;

    nats.kill();
    let down = Instant::now();
    // Same-node channels never need NATS; a cross-node channel already open runs on, its data
    // never touching NATS either.
    let same = LabClient::connect(&caller_a, "lab").await.expect("same-node channel opens without nats");
    assert_eq!(same.whoami(ctx()).await.unwrap(), "on-a");
    assert_eq!(open_cross.check(ctx(), 5).await.unwrap(), Ok(5));
    // Every node tells its load balancer it is cut off (the client sees the closed socket at once).
    until_readiness(&[&a, &b, &c], 503, SLACK).await;
    let metrics = relay_tests::http::get(a.admin, "/metrics", &[]).await.body;
    assert!(metrics.lines().any(|line| line == "relay_cluster_linked 0"), "{metrics}");
    // New cross-node opens fail fast and typed until nodes b and c drop node a from their views.
    until_no_listener(&caller_b, "lab").await;
    until_no_listener(&caller_c, "lab").await;
    assert!(down.elapsed() < settle() + SLACK);

    nats.restart();
    for caller in [&caller_b, &caller_c] {
        let client = once_nats_is_back(caller, "lab").await;
        assert_eq!(client.whoami(ctx()).await.unwrap(), "on-a", "the same host, which never reconnected");
    }
    until_readiness(&[&a, &b, &c], 200, SLACK).await;
    // Its metrics say so too, once node b sees both others again.
    let deadline = Instant::now() + SLACK;
    loop {
        let metrics = relay_tests::http::get(b.admin, "/metrics", &[]).await.body;
        let has = |sample: &str| metrics.lines().any(|line| line == sample);
        if has("relay_cluster_linked 1") && has("relay_cluster_nodes 2") {
            break;
        }
        assert!(Instant::now() < deadline, "node b's metrics after nats came back: {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_node_with_other_keys_is_refused_loudly() {
    let nats = TestNats::start();
    let a = ClusterNode::start(&nats.url(), "keys", &temp_dir("cluster-data"));
    let stranger = ClusterNode::start(&nats.url(), "keys", &temp_dir("cluster-other-data"));
    let _host = serve_lab(&stranger, "lab", "stranger").await;
    let caller = Connection::connect(&a.url, a.options()).await.expect("caller connects to node a");
    // Long enough for several heartbeats and a snapshot, had the stranger been let in.
    tokio::time::sleep(Duration::from_millis(3 * relay_tests::cluster::HEARTBEAT_MS + OPEN_TIMEOUT_MS)).await;
    let err = LabClient::connect(&caller, "lab").await.unwrap_err();
    assert!(matches!(err, OpenError::NoListener { .. }), "{err:?}");
    assert!(
        a.log_text().contains("different keys"),
        "node a did not say why it refused the stranger; its log: {}",
        a.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_while_nats_is_unreachable_serve_their_own_listeners_and_join_when_it_appears() {
    // A port where no NATS listens yet, but where it will.
    let mut nats = TestNats::start();
    nats.kill();
    let data = temp_dir("cluster-data");
    let a = ClusterNode::start(&nats.url(), "late", &data);
    let b = ClusterNode::start(&nats.url(), "late", &data);
    let c = ClusterNode::start(&nats.url(), "late", &data);

    // Each node serves its own listeners meanwhile.
    let _host = serve_lab(&a, "lab", "on-a").await;
    let caller_a = Connection::connect(&a.url, a.options()).await.expect("caller connects to node a");
    let same = LabClient::connect(&caller_a, "lab").await.expect("same-node channel opens without nats");
    assert_eq!(same.whoami(ctx()).await.unwrap(), "on-a");
    let caller_b = Connection::connect(&b.url, b.options()).await.expect("caller connects to node b");
    let err = LabClient::connect(&caller_b, "lab").await.unwrap_err();
    assert!(matches!(err, OpenError::NoListener { .. }), "node b knows no other node yet: {err:?}");
    // Alive, but not ready: a load balancer sends callers to a node that reaches every host.
    until_readiness(&[&a, &b, &c], 503, SLACK).await;
    assert_eq!(relay_tests::http::get(a.admin, "/healthz", &[]).await.status, 200);

    // And says so, once (not once per retry), as a warning.
    let said = relay_tests::eventually(SLACK, || a.log_text().contains("NATS is not reachable yet")).await;
    assert!(said, "node a did not say that NATS is unreachable; its log: {}", a.log_text());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = a.log_text();
    let lines: Vec<_> = log.lines().filter(|line| line.contains("NATS is not reachable yet")).collect();
    assert_eq!(lines.len(), 1, "said once, not per retry; the log: {log}");
    assert!(lines[0].contains("WARN") && lines[0].contains("serves its own listeners"), "{}", lines[0]);

    nats.restart();
    let client = once_nats_is_back(&caller_b, "lab").await;
    assert_eq!(client.whoami(ctx()).await.unwrap(), "on-a", "the host that listened before nats was up");
    let caller_c = Connection::connect(&c.url, c.options()).await.expect("caller connects to node c");
    assert_eq!(once_nats_is_back(&caller_c, "lab").await.whoami(ctx()).await.unwrap(), "on-a");
    until_readiness(&[&a, &b, &c], 200, SLACK).await;
    for node in [&a, &b, &c] {
        let log = node.log_text();
        let joined = log.lines().filter(|line| line.contains("connected to NATS: joined the cluster")).count();
        assert_eq!(joined, 1, "one line when the node joins; its log: {log}");
    }
}

/// Serves a lab named `name` on each of `addresses` from one host on `node` that bears a relay
/// silent for 30 s (the default gives up after 6 s), so a stopped node keeps its hosts.
async fn patient_lab(node: &ClusterNode, addresses: &[&str], name: &str) -> Host {
    let options = node.options().with_keep_alive(Duration::from_secs(2), Duration::from_secs(30));
    let host = Host::connect(&node.url, options).await.expect("host connects");
    for address in addresses {
        let (lab, _events) = LabHost::new(name);
        tokio::spawn(host.listen(address).await.expect("listens").serve(ServeLab::new(lab)));
    }
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_costs_an_open_at_most_one_open_timeout_and_is_routed_to_again_once_continued() {
    let nats = TestNats::start();
    let data = temp_dir("cluster-data");
    let a = ClusterNode::start(&nats.url(), "resume", &data);
    let b = ClusterNode::start(&nats.url(), "resume", &data);
    let c = ClusterNode::start(&nats.url(), "resume", &data);
    // "lab" has a listener on nodes a and c; "only-a" on node a alone. Callers are on node b.
    let _host_a = patient_lab(&a, &["lab", "only-a"], "on-a").await;
    let _host_c = patient_lab(&c, &["lab"], "on-c").await;
    let caller = Connection::connect(&b.url, b.options()).await.expect("caller connects to node b");
    assert_eq!(lab_once_known(&caller, "only-a").await.whoami(ctx()).await.unwrap(), "on-a");
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        seen.insert(lab_once_known(&caller, "lab").await.whoami(ctx()).await.unwrap());
    }

    // While node a is stopped, an open that tries it waits one open timeout, then goes to node c;
    // node b skips node a from then on. An open only node a could take is refused, typed, as
    // unreachable within the open timeout, then as no listener once node b has dropped node a.
    a.signal("-STOP");
    let stopped = Instant::now();
    let open_timeout = Duration::from_millis(OPEN_TIMEOUT_MS);
    for _ in 0..6 {
        let started = Instant::now();
        let client = LabClient::connect(&caller, "lab").await.expect("node c takes the channel");
        let took = started.elapsed();
        assert_eq!(client.whoami(ctx()).await.unwrap(), "on-c");
        assert!(took < open_timeout + Duration::from_secs(1), "an open took {took:?}");
    }
    let started = Instant::now();
    let err = LabClient::connect(&caller, "only-a").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, OpenError::Refused { code: ErrorCode::Unreachable, .. }), "{err:?}");
    assert!(took < open_timeout + Duration::from_secs(1), "refused after {took:?}");
    until_no_listener(&caller, "only-a").await;
    // Stopped past the node timeout: NATS has cut it for missed pings, node b has dropped it.
    let held = Duration::from_millis(NODE_TIMEOUT_MS + 1000);
    tokio::time::sleep(held.saturating_sub(stopped.elapsed())).await;
    let err = LabClient::connect(&caller, "only-a").await.unwrap_err();
    assert!(matches!(err, OpenError::NoListener { .. }), "{err:?}");
    let started = Instant::now();
    assert_eq!(LabClient::connect(&caller, "lab").await.unwrap().whoami(ctx()).await.unwrap(), "on-c");
    assert!(started.elapsed() < open_timeout, "no open goes to a dropped node: {:?}", started.elapsed());

    // Resumed, node a reconnects to NATS and node b routes to it again: the same host, whose
    // QUIC connection to node a outlived the stop.
    a.signal("-CONT");
    let was_stopped = stopped.elapsed();
    let client = lab_once_known(&caller, "only-a").await;
    assert_eq!(client.whoami(ctx()).await.unwrap(), "on-a", "after {was_stopped:?} stopped");
    assert_eq!(client.check(ctx(), 7).await.unwrap(), Ok(7));
}
