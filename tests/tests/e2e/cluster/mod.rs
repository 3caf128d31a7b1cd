//! Cluster mode through real processes: a real nats-server and `relay-server` processes sharing
//! one data directory (so one set of keys).
//! - `reach`: a caller on one node reaches a host on another (QUIC and wss hosts, Azure's hyco-ws
//!   listener, forwarded ports, multicast subscribers, HTTP requests); the channel's bytes run
//!   through the caller's node only (the listener dials a rendezvous there); opens are spread over
//!   every node's listeners, and a host's channel limit counts them all.
//! - `outages`: a killed node's listeners fail fast, with a typed error; a stopped node costs an
//!   open at most one open timeout, and is routed to again once it resumes; NATS lost, or absent
//!   at start, costs only cross-node opens until it is back, and readiness (`/readyz`) says so
//!   meanwhile; a node whose keys differ is refused.
//! - `hosts_moving`: a node lost under its hosts, which move to another node.
//!
//! The fault tests run three nodes.

mod hosts_moving;
mod outages;
mod reach;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use relay_proto::cluster::{Heartbeat, Subjects};
use relay_rpc::{CallContext, Connection, Host, OpenError};
use relay_tests::SLACK;
use relay_tests::cluster::{ClusterNode, settle};
use relay_tests::lab::{LabClient, LabHost, ServeLab};
use relay_tests::nats::TestNats;

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(20))
}

/// Serves a lab named `name` on `address` from a host connected to `node`.
async fn serve_lab(node: &ClusterNode, address: &str, name: &str) -> Host {
    let host = Host::connect(&node.url, node.options()).await.expect("host connects");
    let (lab, _events) = LabHost::new(name);
    tokio::spawn(host.listen(address).await.expect("listens").serve(ServeLab::new(lab)));
    host
}

/// A lab client on `address` through `caller`, once the caller's node knows of a listener (its
/// view settles within a few heartbeats).
async fn lab_once_known(caller: &Connection, address: &str) -> LabClient {
    let deadline = Instant::now() + settle();
    loop {
        match LabClient::connect(caller, address).await {
            Ok(client) => return client,
            Err(OpenError::NoListener { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no channel to {address} within {:?}: {e:?}", settle()),
        }
    }
}

/// Reads the cluster's heartbeats, which carry each node's counters.
struct Heartbeats {
    client: async_nats::Client,
    subject: String,
}

impl Heartbeats {
    async fn watch(nats: &TestNats, cluster: &str) -> Self {
        let client = async_nats::connect(nats.url()).await.expect("test connects to nats");
        Self { client, subject: Subjects::new(cluster).unwrap().heartbeat() }
    }

    /// The next heartbeat of the node at `url`, sent from now on (a fresh subscription: none
    /// queued from before).
    async fn next_from(&self, url: &str) -> Heartbeat {
        let mut subscriber = self.client.subscribe(self.subject.clone()).await.expect("subscribes");
        let deadline = tokio::time::Instant::now() + SLACK;
        loop {
            let message = tokio::time::timeout_at(deadline, subscriber.next())
                .await
                .unwrap_or_else(|_| panic!("no heartbeat from {url} within {SLACK:?}"))
                .expect("subscription open");
            let heartbeat = Heartbeat::decode(&message.payload).expect("a well-formed heartbeat");
            if heartbeat.quic_url == url {
                return heartbeat;
            }
        }
    }
}
