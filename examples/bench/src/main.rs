//! The relay's benchmark: what going through the relay costs, against tarpc straight from the
//! caller to the host, over plain TCP and over TLS over TCP.
//!
//! How to run, from the repository root:
//! ```text
//! cargo run --release -p relay-bench                 # full run, a minute or two; writes BENCHMARKS.svg
//! cargo run --release -p relay-bench -- --runs 3     # three full runs, medians; writes BENCHMARKS.svg
//! cargo run --release -p relay-bench -- --quick      # seconds, for CI; writes no chart
//! cargo run --release -p relay-bench -- --quick --json --svg /tmp/bench.svg
//! cargo run --release -p relay-bench -- --json-file bench.json  # the table, and the JSON in a file
//! ```
//!
//! Everything runs on loopback, with the relay, the host and the caller in separate processes:
//! the bench starts itself with hidden subcommands (`relay`, `host`, `hosts`, `connect-once`)
//! and is itself the caller. For each of four subjects,
//! - **tcp** (baseline): tarpc over one plain TCP connection, served by the host process with
//!   the same contract, framing and bincode codec as a relay channel (see `baseline.rs`),
//! - **tls** (baseline): the same over TLS 1.3 on one TCP connection, with a self-signed
//!   certificate made by the host as the relay makes its own,
//! - **quic**: through the relay over `quic://`, one channel (a QUIC stream) per client,
//! - **wss**: through the relay over `wss://` (Hybrid Connections: a WebSocket per channel),
//!
//! it measures the p50/p90/p99/p99.9 latency of sequential 64-byte echo calls; calls per second
//! with 64 calls in flight on one channel, and the CPU time per call over that run of the relay
//! process and of each end, the caller (this process) and the host (`/proc/<pid>/stat`); MB/s
//! of 64 KiB and 1 MiB echoes one at a time (the payload counted once per call), and of 1 MiB
//! `Vec<u8>` echoes; and the time a freshly started process takes from the start of connecting
//! to its first answer (median of several). The subjects take turns, in rounds, so that other
//! load on the machine falls on all four alike.
//!
//! A relayed call crosses two encrypted hops (caller to relay, relay to host), so the relay's
//! figures over the `tls` baseline's say what the relay itself costs; over the `tcp` baseline's
//! they say what the relay and encryption cost together. The table gives both (`x tls`,
//! `x tcp`), and the `tls` column's `x tcp` is what TLS alone costs (see `report.rs`).
//!
//! Then, against relays of their own, the relay's resident memory (`VmRSS`): with one host
//! registered; per idle QUIC channel (10,000 in the full run), each then called once; after
//! closing them, and after a second batch as large (growth there would be a leak); the same over
//! WebSocket (1,000); and per idle listener (1,000), each registered by a host connection of its
//! own, on a relay with the default configuration.
//!
//! With `--cluster`, it measures a cluster instead (`cluster/`): a nats-server, two relay nodes
//! joined through it and the bench host on node A; a caller on node A (same-node) and one on
//! node B (cross-node) time channel opens on an existing connection and calls on an open
//! channel, beside a NATS request-reply round trip and a listener round trip, against the
//! targets of issue #13. It needs a nats-server (`$NATS_SERVER`, or `nats-server` on `PATH`):
//! ```text
//! NATS_SERVER=/path/to/nats-server cargo run --release -p relay-bench -- --cluster --runs 3
//! ```
//!
//! With `--forward`, it measures port forwarding instead (`forward/`): tarpc over one TCP
//! connection straight to the host (`tcp`), through a plain one-hop forwarder (`one-hop`, the
//! ideal), and through `relay connect` -> relay -> `relay forward` over QUIC and over wss, each
//! tool in a process of its own: latency, calls/s, bulk echoes, connect time, CPU per call of the
//! relay and of the tools, and each process's memory per idle connection, against issue #17's
//! targets:
//! ```text
//! cargo run --release -p relay-bench -- --forward --runs 3
//! ```
//!
//! With `--wan`, it measures the WAN profile instead (`wan/`, issue #16): userspace impairment
//! proxies in the bench process on both legs (caller-relay, relay-host) delay every UDP
//! datagram and TCP chunk by `--delay-ms` one way (default 10: a path RTT of 40 ms) and drop
//! UDP datagrams with probability `--loss` (default 0.01; TCP runs without loss). For QUIC at
//! 0% and at `--loss`, WSS and direct TCP it times channel opens on an existing connection and
//! a fresh process's first answer (in path RTTs too), the p50/p99 of 64-byte calls idle and
//! beside 1 MiB echoes on another channel, and those echoes' MB/s, against the goals of the
//! issue; a full run writes BENCHMARKS-wan.svg:
//! ```text
//! cargo run --release -p relay-bench -- --wan [--delay-ms 10] [--loss 0.01] [--quick]
//! ```
//!
//! `--runs N` repeats all of that N times (relays and host started afresh each time) and
//! reports every figure as the median of the N runs, every ratio as the median of the runs'
//! ratios (each within its own run), with each ratio's range over the runs.
//!
//! Output: a table with each subject's figures and their ratios to the baselines, or with
//! `--json` one object `{"runs", "tcp", "tls", "quic", "wss", "scale", "ratios",
//! "load_averages", "each_run"}` (with `--cluster`: `{"runs", "cluster", "ratios", "targets",
//! "load_averages", "each_run"}`; with `--wan`: `{"runs", "wan", "ratios", "goals",
//! "load_averages", "each_run"}`). Progress goes to stderr.

mod baseline;
mod caller;
mod child;
mod cluster;
mod contract;
mod forward;
mod measure;
mod procfs;
mod procs;
mod report;
mod roles;
mod scale;
mod svg;
mod wan;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use crate::cluster::report::ClusterSummary;
use crate::forward::report::ForwardSummary;
use crate::measure::{Plan, Subject};
use crate::procs::RelayProc;
use crate::report::{Figures, Summary, TransportFigures};

#[derive(Debug, Parser)]
#[command(about = "Benchmark the relay over QUIC and WebSocket against direct tarpc over plain TCP and over TLS")]
struct Args {
    /// A short run (seconds) with fewer calls, channels and listeners; writes no chart unless `--svg` says where.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON object to this file (whatever is printed).
    #[arg(long)]
    json_file: Option<PathBuf>,
    /// Where to write the SVG chart (default: BENCHMARKS.svg for a full run, none for `--quick`).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Measure a cluster instead: two relay nodes joined through NATS, a caller on the host's
    /// node and one on the other (needs a nats-server: `$NATS_SERVER`, or on `PATH`).
    #[arg(long, conflicts_with = "svg")]
    cluster: bool,
    /// Measure port forwarding instead: `relay connect` -> relay -> `relay forward` over QUIC and
    /// wss, against direct TCP and a plain one-hop forwarder.
    #[arg(long, conflicts_with_all = ["svg", "cluster"])]
    forward: bool,
    /// With `--forward`: the tools' `--threads` (1, their default, runs each on one thread).
    #[arg(long, default_value_t = 1, requires = "forward", value_parser = clap::value_parser!(u16).range(1..))]
    tool_threads: u16,
    /// The main figures' relay's `--threads` (default: one worker per core, the relay's own
    /// default).
    #[arg(long, conflicts_with_all = ["cluster", "forward"], value_parser = clap::value_parser!(u16).range(1..))]
    relay_threads: Option<u16>,
    /// Repeat the whole measurement this many times and report the medians.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    #[command(flatten)]
    wan: wan::WanArgs,
    #[command(subcommand)]
    role: Option<roles::Role>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,tarpc=error".into()),
        )
        .init();
    // The relay and the relay tools run on the runtime their binaries give them for `--threads`.
    let threads = match &args.role {
        Some(roles::Role::ForwardTool(tool)) => Some(tool.tool.threads),
        Some(roles::Role::ConnectTool(tool)) => Some(tool.tool.threads),
        Some(roles::Role::Relay(relay)) => relay.threads,
        _ => None,
    };
    let runtime = relay_process::runtime(threads);
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match args.role {
            Some(role) => roles::run(role).await,
            None => bench(args).await,
        }
    });
    // A child's read of its stdin may still be blocked in a thread of the runtime: don't wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The benchmark itself: every figure of every run, then the report and the chart.
async fn bench(args: Args) -> anyhow::Result<()> {
    let plan = if args.quick { Plan::quick() } else { Plan::full() };
    if args.cluster {
        return bench_cluster(args, &plan).await;
    }
    if args.forward {
        return bench_forward(args, &plan).await;
    }
    if args.wan.wan {
        return bench_wan(args).await;
    }
    let started = Instant::now();
    let (runs, loads) = repeat(args.runs, "run", || run(&plan, args.relay_threads)).await?;
    let summary = Summary::new(runs, loads)?;
    let took = started.elapsed();
    measure::progress("relay-bench", "done");

    output(&args, &summary.json(), &summary.table(plan.quick, took))?;
    let svg = args.svg.or_else(|| (!plan.quick).then(|| PathBuf::from("BENCHMARKS.svg")));
    if let Some(path) = svg {
        std::fs::write(&path, svg::render(&summary.rounded()))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("relay-bench: chart written to {}", path.display());
    }
    Ok(())
}

/// The cluster figures of every run, then their report. A missed target is reported, not an
/// error: figures vary with the machine (a loaded CI runner misses what a quiet one meets).
async fn bench_cluster(args: Args, plan: &Plan) -> anyhow::Result<()> {
    let started = Instant::now();
    let (runs, loads) = repeat(args.runs, "cluster run", || cluster::run(plan)).await?;
    let summary = ClusterSummary::new(runs, loads)?;
    let took = started.elapsed();
    measure::progress("relay-bench", "done");
    if !summary.targets_met() {
        eprintln!("relay-bench: the cluster figures miss a target (see the table)");
    }
    output(&args, &summary.json(), &summary.table(plan.quick, took))
}

/// The port-forwarding figures of every run, then their report. A missed target is reported,
/// not an error.
async fn bench_forward(args: Args, plan: &Plan) -> anyhow::Result<()> {
    let started = Instant::now();
    let (runs, loads) = repeat(args.runs, "forward run", || forward::run(plan, args.tool_threads)).await?;
    let summary = ForwardSummary::new(runs, loads)?;
    let took = started.elapsed();
    measure::progress("relay-bench", "done");
    if !summary.targets_met() {
        eprintln!("relay-bench: the forwarding figures miss a target (see the table)");
    }
    output(&args, &summary.json(), &summary.table(plan.quick, took))
}

/// The WAN profile's figures of every run, then their report and chart. A missed goal is
/// reported, not an error, as with `--cluster`.
async fn bench_wan(args: Args) -> anyhow::Result<()> {
    let plan = if args.quick { wan::WanPlan::quick() } else { wan::WanPlan::full() };
    let started = Instant::now();
    let (runs, loads) = repeat(args.runs, "wan run", || wan::run(&plan, &args.wan)).await?;
    let summary = wan::report::WanSummary::new(runs, loads)?;
    let took = started.elapsed();
    measure::progress("relay-bench", "done");
    if !summary.goals_met() {
        eprintln!("relay-bench: the WAN figures miss a goal (see the table)");
    }
    output(&args, &summary.json(), &summary.table(plan.quick, took))?;
    let svg = args.svg.clone().or_else(|| (!plan.quick).then(|| PathBuf::from("BENCHMARKS-wan.svg")));
    if let Some(path) = svg {
        std::fs::write(&path, wan::chart(&summary.rounded())).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("relay-bench: chart written to {}", path.display());
    }
    Ok(())
}

/// Runs `one` `runs` times, noting the load average before each run; the figures of every run
/// and those load averages.
async fn repeat<T, F: std::future::Future<Output = anyhow::Result<T>>>(
    runs: u32,
    what: &str,
    mut one: impl FnMut() -> F,
) -> anyhow::Result<(Vec<T>, Vec<Option<String>>)> {
    let mut figures = Vec::new();
    let mut loads = Vec::new();
    for n in 1..=runs {
        loads.push(procfs::load_average());
        if runs > 1 {
            measure::progress("relay-bench", &format!("{what} {n} of {runs}"));
        }
        figures.push(one().await?);
    }
    Ok((figures, loads))
}

/// Prints the table, or the JSON with `--json`, and writes the JSON to `--json-file`.
fn output(args: &Args, json: &str, table: &str) -> anyhow::Result<()> {
    if args.json {
        println!("{json}");
    } else {
        print!("{table}");
    }
    if let Some(path) = &args.json_file {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One full run: every subject's figures (through a relay on `relay_threads`), then the scale
/// figures, each against relays started for it.
async fn run(plan: &Plan, relay_threads: Option<u16>) -> anyhow::Result<Figures> {
    measure::progress("relay-bench", "starting the relay and the host");
    let relay = RelayProc::start("transports", None, relay_threads).await?;
    let host = relay.start_host(true, true, true).await?;
    let (tcp, tls) = host.baselines().context("the host serves no baselines")?;
    let subjects = [
        Subject { name: "tcp", target: tcp, relay_pid: None, tool_pids: Vec::new() },
        Subject { name: "tls", target: tls, relay_pid: None, tool_pids: Vec::new() },
        Subject { name: "quic", target: relay.quic_target(), relay_pid: Some(relay.pid()), tool_pids: Vec::new() },
        Subject { name: "wss", target: relay.wss_target(), relay_pid: Some(relay.pid()), tool_pids: Vec::new() },
    ];
    let [tcp, tls, quic, wss]: [TransportFigures; 4] = measure::transports(plan, host.pid(), &subjects)
        .await?
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected the figures of four subjects"))?;
    measure::progress("relay-bench", "stopping the relay and the host");
    host.stop().await;
    relay.stop().await;

    let scale = scale::run(plan).await.context("scale")?;
    Ok(Figures { tcp, tls, quic, wss, scale })
}
