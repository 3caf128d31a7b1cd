//! The port-forwarding figures (`--forward`): what carrying a TCP connection through the relay
//! with `relay connect` and `relay forward` costs, against the same tarpc echo over direct TCP
//! and through a plain one-hop forwarder.
//!
//! One run starts a relay, the bench host (serving the contract on a plain TCP port only), a
//! plain forwarder to that port, and, per transport (QUIC, wss), `relay forward` registered on
//! an address of its own and forwarding to that port, and `relay connect` carrying its local
//! port's connections to that address. Each tool is in a process of its own. The caller (this
//! process) then measures four subjects exactly as the main figures do (`measure.rs`), each one
//! tarpc over one TCP connection: `tcp` straight to the host, `one-hop` through the plain
//! forwarder, `quic` and `wss` through `relay connect` → relay → `relay forward`. CPU per call is
//! counted for the relay and for the tools. Last, each path's memory per idle connection: RSS of
//! each process before and after `connections` connections are opened through it and each has
//! carried one call.

pub mod report;
pub mod tools;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;

use crate::caller::{Caller, Target};
use crate::contract::payload;
use crate::measure::{self, Plan, SMALL, Subject, progress};
use crate::procfs;
use crate::procs::{HostProc, RelayProc};
use crate::report::TransportFigures;
use report::{ForwardFigures, ForwardMemory, ToolsMemory};
use tools::ToolProc;

/// The addresses `relay forward` registers on.
const QUIC_ADDRESS: &str = "forward-quic";
const WSS_ADDRESS: &str = "forward-wss";
/// How long after the last connection opened memory is read: what the tools and the relay do
/// for a new connection in the background (a stream's end of setup, a log line) is done by then.
const SETTLE: Duration = Duration::from_millis(500);

/// One forwarding run: its processes started afresh, every figure, its processes stopped. The
/// tools run with `--threads threads`.
pub async fn run(plan: &Plan, threads: u16) -> anyhow::Result<ForwardFigures> {
    progress("forward", "starting the relay, the host, the plain forwarder and the relay tools");
    // Channel limits and open rates well above the idle connections opened at once.
    let max_channels = u32::try_from(plan.forward_connections * 2).unwrap_or(u32::MAX).max(10_000);
    let relay = RelayProc::start("forward", Some(max_channels), None).await?;
    let host = relay.start_host(false, false, true).await?;
    let Some((Target::Tcp(service), _)) = host.baselines() else { anyhow::bail!("the host serves no tcp baseline") };
    let one_hop = ToolProc::plain(service).await?;
    let quic_forward = ToolProc::forward(&relay, &relay.quic_url, QUIC_ADDRESS, service, threads).await?;
    let quic_connect = ToolProc::connect(&relay, &relay.quic_url, QUIC_ADDRESS, threads).await?;
    let wss_forward = ToolProc::forward(&relay, &relay.wss_url, WSS_ADDRESS, service, threads).await?;
    let wss_connect = ToolProc::connect(&relay, &relay.wss_url, WSS_ADDRESS, threads).await?;

    let figures = measure_paths(
        plan,
        &relay,
        &host,
        service,
        &one_hop,
        [(&quic_forward, &quic_connect), (&wss_forward, &wss_connect)],
    )
    .await;

    progress("forward", "stopping the tools, the host and the relay");
    for tool in [one_hop, quic_forward, quic_connect, wss_forward, wss_connect] {
        tool.stop().await;
    }
    host.stop().await;
    relay.stop().await;
    figures
}

/// The figures of the four subjects, then the memory per idle connection of each path.
async fn measure_paths(
    plan: &Plan,
    relay: &RelayProc,
    host: &HostProc,
    service: SocketAddr,
    one_hop: &ToolProc,
    [(quic_forward, quic_connect), (wss_forward, wss_connect)]: [(&ToolProc, &ToolProc); 2],
) -> anyhow::Result<ForwardFigures> {
    let through = |connect: &ToolProc| connect.local_addr().map(Target::Tcp);
    let subjects = [
        Subject { name: "tcp", target: Target::Tcp(service), relay_pid: None, tool_pids: Vec::new() },
        Subject { name: "one-hop", target: through(one_hop)?, relay_pid: None, tool_pids: vec![one_hop.pid()] },
        Subject {
            name: "quic",
            target: through(quic_connect)?,
            relay_pid: Some(relay.pid()),
            tool_pids: vec![quic_forward.pid(), quic_connect.pid()],
        },
        Subject {
            name: "wss",
            target: through(wss_connect)?,
            relay_pid: Some(relay.pid()),
            tool_pids: vec![wss_forward.pid(), wss_connect.pid()],
        },
    ];
    let [tcp, one_hop_figures, quic, wss]: [TransportFigures; 4] = measure::transports(plan, host.pid(), &subjects)
        .await?
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected the figures of four subjects"))?;

    let connections = plan.forward_connections;
    progress("forward", &format!("memory, {connections} idle connections through each path"));
    let [one_hop_kib] = per_connection_kib(one_hop.local_addr()?, connections, [one_hop.pid()]).await?;
    let mut tools = Vec::new();
    for (forward, connect) in [(quic_forward, quic_connect), (wss_forward, wss_connect)] {
        let pids = [relay.pid(), forward.pid(), connect.pid()];
        let [relay_kib, forward_kib, connect_kib] =
            per_connection_kib(connect.local_addr()?, connections, pids).await?;
        tools.push(ToolsMemory { relay_kib, forward_kib, connect_kib });
    }
    let [quic_memory, wss_memory]: [ToolsMemory; 2] = tools.try_into().map_err(|_| anyhow::anyhow!("two paths"))?;
    let memory = ForwardMemory { connections, one_hop_kib, quic: quic_memory, wss: wss_memory };
    Ok(ForwardFigures { tcp, one_hop: one_hop_figures, quic, wss, memory })
}

/// Each of `pids`' resident memory per idle connection, KiB: read before and after `count`
/// connections to `addr` are opened and each has carried one call (so that every process on the
/// path holds its part of it), then the connections are closed.
async fn per_connection_kib<const N: usize>(
    addr: SocketAddr,
    count: usize,
    pids: [u32; N],
) -> anyhow::Result<[f64; N]> {
    let rss = || -> anyhow::Result<[u64; N]> {
        let mut read = [0; N];
        for (kib, pid) in read.iter_mut().zip(pids) {
            *kib = procfs::rss_kib(pid)?;
        }
        Ok(read)
    };
    tokio::time::sleep(SETTLE).await;
    let before = rss()?;
    let small = payload(SMALL);
    let mut callers = Vec::with_capacity(count);
    for i in 0..count {
        let caller = Caller::connect(&Target::Tcp(addr)).await.with_context(|| format!("idle connection {i}"))?;
        anyhow::ensure!(caller.echo(small.clone()).await? == small, "the echo came back different");
        callers.push(caller);
    }
    tokio::time::sleep(SETTLE).await;
    let after = rss()?;
    drop(callers);
    let mut per_connection = [0.0; N];
    for ((kib, before), after) in per_connection.iter_mut().zip(before).zip(after) {
        *kib = after.saturating_sub(before) as f64 / count.max(1) as f64;
    }
    Ok(per_connection)
}
