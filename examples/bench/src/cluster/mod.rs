//! The cluster figures (`--cluster`): what reaching a host through another relay node costs.
//!
//! One run starts a nats-server, two relay nodes joined through it (sharing one data directory
//! for their keys), and the bench host, registered over QUIC on node A. A caller connects to
//! each node: on A it is on the host's node (same-node), on B its node asks A over NATS to have
//! the host dial a one-time rendezvous on B (cross-node). Then, in rounds that take turns as the
//! main figures' subjects do, it times channel opens on each connection, opens node A refuses
//! itself (for the listener round trip), 64-byte echo calls on an open channel of each, and NATS
//! request-reply round trips (see `report.rs` for what the targets compare).

mod nats_server;
mod probe;
pub mod report;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use relay_rpc::Connection;

use crate::caller::Caller;
use crate::child::TempDir;
use crate::contract::QUIC_ADDRESS;
use crate::measure::{self, Plan, SMALL, progress};
use crate::procs::RelayProc;
use nats_server::NatsServer;
use probe::NatsProbe;
use report::{ClusterFigures, Samples};

/// How long node B may take to learn of the host on node A (a heartbeat or a delta, and a
/// snapshot: about a second with the default timers).
const ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Channel opens on each side before any is timed: the host's pooled connection to node B is
/// made by the first cross-node open, not timed.
const WARMUP_OPENS: usize = 20;

/// One cluster run: its processes started afresh, every figure, its processes stopped.
pub async fn run(plan: &Plan) -> anyhow::Result<ClusterFigures> {
    progress("cluster", "starting nats-server, two relay nodes and the host on node A");
    let nats = NatsServer::start().await?;
    let data = TempDir::new("cluster")?;
    // One after the other: the first makes the keys in the shared directory.
    let a = RelayProc::start_node("node A", data.path(), &nats.url).await.context("starting node A")?;
    let b = RelayProc::start_node("node B", data.path(), &nats.url).await.context("starting node B")?;
    let host = a.start_host(true, false, false).await?;

    let figures = measure_cluster(plan, &a, &b, &nats.url).await;

    progress("cluster", "stopping the host, the nodes and nats-server");
    host.stop().await;
    a.stop().await;
    b.stop().await;
    nats.stop().await;
    figures
}

/// Connects the callers, waits for node B to route to the host, and times everything.
async fn measure_cluster(plan: &Plan, a: &RelayProc, b: &RelayProc, nats: &str) -> anyhow::Result<ClusterFigures> {
    let same = a.target(&a.quic_url, QUIC_ADDRESS).connect().await.context("connecting to node A")?;
    let cross = b.target(&b.quic_url, QUIC_ADDRESS).connect().await.context("connecting to node B")?;
    progress("cluster", "waiting for node B to learn of the host on node A");
    let cross_caller = wait_for_route(&cross).await?;
    let same_caller = Caller::open(&same, QUIC_ADDRESS).await.context("same-node channel")?;
    let nats = NatsProbe::start(nats).await?;

    progress("cluster", "warming up");
    let mut warm = Samples::default();
    for (connection, caller) in [(&same, &same_caller), (&cross, &cross_caller)] {
        probe::time_opens(connection, WARMUP_OPENS, &mut warm.same_opens).await?;
        measure::time_calls(caller, plan.warmup, &mut warm.same_calls).await?;
    }
    probe::time_refused_opens(&same, WARMUP_OPENS, &mut warm.refused_opens).await?;
    nats.time_round_trips(plan.warmup.min(plan.nats_round_trips), &mut warm.nats).await?;

    let rounds = plan.rounds.max(1);
    progress(
        "cluster",
        &format!(
            "{} opens and {} calls a side, {} NATS round trips, in {rounds} rounds",
            plan.cluster_opens, plan.latency_calls, plan.nats_round_trips
        ),
    );
    let mut timed = Samples::default();
    let (opens, calls, round_trips) = (
        plan.cluster_opens.div_ceil(rounds),
        plan.latency_calls.div_ceil(rounds),
        plan.nats_round_trips.div_ceil(rounds),
    );
    for _ in 0..rounds {
        probe::time_opens(&same, opens, &mut timed.same_opens).await.context("same-node opens")?;
        probe::time_opens(&cross, opens, &mut timed.cross_opens).await.context("cross-node opens")?;
        probe::time_refused_opens(&same, opens, &mut timed.refused_opens).await.context("refused opens")?;
        measure::time_calls(&same_caller, calls, &mut timed.same_calls).await.context("same-node calls")?;
        measure::time_calls(&cross_caller, calls, &mut timed.cross_calls).await.context("cross-node calls")?;
        nats.time_round_trips(round_trips, &mut timed.nats).await.context("NATS round trips")?;
    }
    same.close();
    cross.close();
    Ok(ClusterFigures::new(timed))
}

/// Opens a channel to the host through node B, again and again until node B knows of it or
/// [`ROUTE_TIMEOUT`] has passed.
async fn wait_for_route(cross: &Connection) -> anyhow::Result<Caller> {
    let deadline = Instant::now() + ROUTE_TIMEOUT;
    // Node A refuses (and logs) an open from a node it has not heard of yet: few tries, spaced.
    let mut pause = Duration::from_millis(100);
    loop {
        let attempt = tokio::time::timeout(ROUTE_TIMEOUT, Caller::open(cross, QUIC_ADDRESS)).await;
        match attempt {
            Ok(Ok(caller)) => {
                let small = crate::contract::payload(SMALL);
                anyhow::ensure!(caller.echo(small.clone()).await? == small, "the echo came back different");
                return Ok(caller);
            }
            Ok(Err(e)) if Instant::now() >= deadline => {
                return Err(e.context(format!("node B cannot reach the host on node A after {ROUTE_TIMEOUT:?}")));
            }
            Err(_) => anyhow::bail!("a channel open through node B took over {ROUTE_TIMEOUT:?}"),
            Ok(Err(_)) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}
