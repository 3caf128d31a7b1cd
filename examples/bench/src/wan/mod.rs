//! The WAN profile (`--wan`, issue #16): the relay over a wide-area path, made on loopback by
//! impairment proxies in the bench process (`proxy.rs`).
//!
//! One run starts a relay and the bench host, and puts a proxy on each leg: the caller reaches
//! the relay through one, the host reaches it through another (the host is told the proxy's
//! address as the relay's; the relay's development certificate is for 127.0.0.1, so it still
//! validates). QUIC goes through UDP proxies with a one-way delay and a loss probability each
//! way; WSS through TCP proxies with the delay and no loss (see `proxy.rs` for why). Direct
//! tarpc over TCP (the host's `tcp` baseline) goes through one TCP proxy with twice the delay:
//! the same one-way delay as the two legs through the relay, as one TCP connection whose
//! handshake is one round trip of the whole path (two proxies in series would each answer their
//! own handshake, as two connections).
//!
//! For QUIC at 0% loss, QUIC at `--loss`, WSS and TCP in turn (see `report.rs` for the columns
//! and the goals), it times channel opens on an existing connection, a fresh process's connect
//! and first answer (the `connect-once` role), the same for a process connecting a second time
//! (its TLS session resumed: 0-RTT over QUIC), sequential 64-byte calls on one channel idle and
//! while 1 MiB echoes run on another channel of the same caller connection and host (a second
//! connection to the host for TCP), and the bulk rate of those echoes.

mod chart;
pub mod proxy;
pub mod report;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use relay_rpc::Connection;

use crate::caller::{Caller, RelayTarget, Target};
use crate::contract::{QUIC_ADDRESS, WSS_ADDRESS, payload};
use crate::measure::{self, MIB_1, SMALL, progress};
use crate::procs::RelayProc;
use proxy::{Lateness, Loss, TcpProxy, UdpCounts, UdpProxy};
use report::{Column, Timed, WanFigures};

pub use chart::render as chart;

/// The WAN profile's options (flattened into the bench's own).
#[derive(Debug, Clone, clap::Args)]
pub struct WanArgs {
    /// Measure the WAN profile instead: the relay behind userspace proxies that delay every
    /// packet (UDP and TCP) and drop UDP datagrams; writes BENCHMARKS-wan.svg for a full run.
    #[arg(long, conflicts_with_all = ["cluster", "forward"])]
    pub wan: bool,
    /// With `--wan`: the one-way delay of each leg (caller-relay, relay-host), in ms.
    #[arg(long, default_value_t = 10, requires = "wan", value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub delay_ms: u64,
    /// With `--wan`: the probability that a UDP datagram is dropped, each way, on each leg.
    #[arg(long, default_value_t = 0.01, requires = "wan", value_parser = parse_loss)]
    pub loss: f64,
    /// With `--wan`: 1 MiB echoes in flight at once on the bulk channel (each must come back
    /// within the bench's call timeout, 10 s, at `--loss` too).
    #[arg(long, default_value_t = 2, requires = "wan", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub bulk_in_flight: u64,
}

fn parse_loss(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..1.0).contains(&p) => Ok(p),
        Ok(p) => Err(format!("{p} is not a probability below 1")),
        Err(e) => Err(e.to_string()),
    }
}

/// How much one WAN run measures.
#[derive(Debug, Clone)]
pub struct WanPlan {
    /// Whether this is the short run.
    pub quick: bool,
    /// Channel opens timed on an existing connection, per column.
    pub opens: usize,
    /// Fresh processes timed to their first answer, per column; the median counts.
    pub fresh: usize,
    /// Sequential 64-byte calls timed with nothing else running, per column.
    pub idle_calls: usize,
    /// Sequential 64-byte calls to time at least while bulk echoes run, per column.
    pub busy_calls: usize,
    /// One bulk transfer: this many 1 MiB echoes (MiB each way).
    pub bulk_mib: usize,
    /// 1 MiB echoes in flight at once on the bulk channel (`--bulk-in-flight` replaces it).
    pub in_flight: usize,
    /// The most the bulk transfers of one column may take, however few calls were timed.
    pub busy_for: Duration,
}

impl WanPlan {
    /// The full run: a few minutes.
    pub fn full() -> Self {
        Self {
            quick: false,
            opens: 100,
            fresh: 5,
            idle_calls: 300,
            busy_calls: 200,
            bulk_mib: 64,
            in_flight: 2,
            busy_for: Duration::from_secs(60),
        }
    }

    /// The quick run: seconds.
    pub fn quick() -> Self {
        Self {
            quick: true,
            opens: 10,
            fresh: 2,
            idle_calls: 30,
            busy_calls: 20,
            bulk_mib: 16,
            in_flight: 2,
            busy_for: Duration::from_secs(20),
        }
    }
}

/// One WAN run: a relay and a host started afresh, the proxies, every column, all stopped.
pub async fn run(plan: &WanPlan, args: &WanArgs) -> anyhow::Result<WanFigures> {
    let plan = &WanPlan { in_flight: args.bulk_in_flight as usize, ..plan.clone() };
    let delay = Duration::from_millis(args.delay_ms);
    progress("wan", "starting the relay, the proxies and the host");
    let relay = RelayProc::start("wan", None, None).await?;
    let relay_quic = socket_of(&relay.quic_url, "quic://")?;
    let relay_wss = socket_of(&relay.wss_url, "wss://")?;
    let loss = Loss::new(0.0);
    let seed = 0x5EED_0000 + u64::from(std::process::id());
    let caller_udp = UdpProxy::start(relay_quic, delay, loss.clone(), seed).await?;
    let host_udp = UdpProxy::start(relay_quic, delay, loss.clone(), seed.rotate_left(32)).await?;
    let caller_tcp = TcpProxy::start(relay_wss, delay).await?;
    let host_tcp = TcpProxy::start(relay_wss, delay).await?;
    let host_quic = format!("quic://{}", host_udp.addr());
    let host_wss = format!("wss://{}", host_tcp.addr());
    let host = relay.start_host_at(Some(&host_quic), Some(&host_wss), true).await?;
    let (direct, _) = host.baselines().context("the host serves no baselines")?;
    let Target::Tcp(direct) = direct else { anyhow::bail!("the tcp baseline is not a TCP address") };
    let direct_tcp = TcpProxy::start(direct, 2 * delay).await?;

    let via = |url: String, address: &str| Target::Relay(RelayTarget { url, ..relay.target("", address) });
    let quic = via(format!("quic://{}", caller_udp.addr()), QUIC_ADDRESS);
    let wss = via(format!("wss://{}", caller_tcp.addr()), WSS_ADDRESS);
    let tcp = Target::Tcp(direct_tcp.addr());
    let udp = [caller_udp.counts(), host_udp.counts()];
    let udp_path = Path { crossings: 4, proxies: vec![&caller_udp.counts().late, &host_udp.counts().late] };
    let wss_path = Path { crossings: 4, proxies: vec![caller_tcp.late(), host_tcp.late()] };
    let tcp_path = Path { crossings: 2, proxies: vec![direct_tcp.late()] };
    let rtt = 4 * delay;

    let measured = async {
        let at = |p: f64| {
            loss.set(p);
            p
        };
        let quic_clean = column(plan, "quic 0%", &quic, at(0.0), Some(&udp), &udp_path, rtt).await?;
        let quic_lossy = column(plan, "quic loss", &quic, at(args.loss), Some(&udp), &udp_path, rtt).await?;
        let wss = column(plan, "wss", &wss, 0.0, None, &wss_path, rtt).await?;
        let tcp = column(plan, "tcp", &tcp, 0.0, None, &tcp_path, rtt).await?;
        anyhow::Ok(WanFigures::new(delay, args.loss, quic_clean, quic_lossy, wss, tcp))
    };
    let figures = measured.await;
    progress("wan", "stopping the host, the proxies and the relay");
    host.stop().await;
    relay.stop().await;
    figures
}

/// The socket address of `url`, which starts with `scheme`.
fn socket_of(url: &str, scheme: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix(scheme).with_context(|| format!("{url} does not start with {scheme}"))?;
    rest.trim_end_matches('/').parse().with_context(|| format!("the address of {url}"))
}

/// The proxies a subject's round trip crosses, and how many crossings a round trip makes.
struct Path<'a> {
    crossings: u32,
    proxies: Vec<&'a Lateness>,
}

impl Path<'_> {
    /// The proxies' lateness counts now, summed.
    fn lateness(&self) -> (u64, u64) {
        self.proxies.iter().map(|p| p.snapshot()).fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    /// The latest delivery of the proxies since the last call, ms, and starts over.
    fn take_max_ms(&self) -> f64 {
        self.proxies.iter().map(|p| p.take_max()).max().unwrap_or(0) as f64 / 1e6
    }
}

/// Where one column's channels come from: a relay connection (channels are opened on it) or
/// the direct TCP target (each "channel" a connection of its own).
enum Link {
    Relay(Connection, String),
    Direct,
}

impl Link {
    async fn caller(&self, target: &Target) -> anyhow::Result<Caller> {
        match self {
            Self::Relay(connection, address) => Caller::open(connection, address).await,
            Self::Direct => Caller::connect(target).await,
        }
    }
}

/// Every figure of one column: `target` through the proxies of `path`, whose nominal round
/// trip is `rtt`, with `loss` (as set now) on the UDP proxies whose counts are `udp` (none for
/// the TCP subjects).
async fn column(
    plan: &WanPlan,
    name: &'static str,
    target: &Target,
    loss: f64,
    udp: Option<&[&UdpCounts; 2]>,
    path: &Path<'_>,
    rtt: Duration,
) -> anyhow::Result<Column> {
    let counted_before = udp.map(|counts| counts.map(UdpCounts::snapshot));
    let kernel_before = udp.and_then(|_| kernel_udp_drops());
    progress(name, "connecting and warming up");
    let link = match target {
        Target::Relay(relay) => Link::Relay(relay.connect().await?, relay.address.clone()),
        _ => Link::Direct,
    };
    let small = link.caller(target).await.with_context(|| format!("{name}: the calls' channel"))?;
    let bulk = link.caller(target).await.with_context(|| format!("{name}: the bulk channel"))?;
    let probe = payload(SMALL);
    for _ in 0..5 {
        ensure!(small.echo(probe.clone()).await? == probe, "{name}: the echo came back different");
    }
    let big = payload(MIB_1);
    ensure!(bulk.echo(big.clone()).await? == big, "{name}: the 1 MiB echo came back different");

    let late_before = path.lateness();
    path.take_max_ms();
    let open = match &link {
        Link::Relay(connection, address) => {
            progress(name, &format!("{} channel opens on the connection", plan.opens));
            let mut opens = Vec::with_capacity(plan.opens);
            for _ in 0..plan.opens {
                let start = Instant::now();
                let channel = Caller::open(connection, address).await.with_context(|| format!("{name}: an open"))?;
                opens.push(start.elapsed());
                drop(channel);
            }
            Some(Timed::of(opens))
        }
        Link::Direct => None,
    };

    progress(name, &format!("{} fresh processes to their first answer", plan.fresh));
    let mut fresh = Vec::with_capacity(plan.fresh);
    for _ in 0..plan.fresh.max(1) {
        fresh.push(measure::connect_ms(target).await.with_context(|| format!("{name}: a fresh process"))?);
    }
    progress(name, &format!("{} processes connecting again to their first answer", plan.fresh));
    let mut again = Vec::with_capacity(plan.fresh);
    for _ in 0..plan.fresh.max(1) {
        again.push(measure::reconnect_ms(target).await.with_context(|| format!("{name}: connecting again"))?);
    }

    progress(name, &format!("{} calls, idle", plan.idle_calls));
    let mut idle = Vec::with_capacity(plan.idle_calls);
    measure::time_calls(&small, plan.idle_calls, &mut idle).await.with_context(|| format!("{name}: idle calls"))?;
    let late_after = path.lateness();
    let late_max_ms = path.take_max_ms();
    let late_ms = mean_ms(late_before, late_after);

    progress(name, &format!("calls beside {} MiB transfers, until {} calls", plan.bulk_mib, plan.busy_calls));
    let (busy, bulk_mbps) = busy(plan, &small, &bulk).await.with_context(|| format!("{name}: calls beside bulk"))?;
    let busy_late_ms = mean_ms(late_after, path.lateness());
    let busy_late_max_ms = path.take_max_ms();

    let lost = counted_before.and_then(|before| {
        let after = udp?.map(UdpCounts::snapshot);
        let received: u64 = (0..2).map(|i| after[i].0 - before[i].0).sum();
        let dropped: u64 = (0..2).map(|i| after[i].1 + after[i].2 - before[i].1 - before[i].2).sum();
        (received > 0).then(|| dropped as f64 / received as f64)
    });
    let kernel_drops = kernel_before.zip(kernel_udp_drops()).map(|(before, after)| after.saturating_sub(before));
    if let Link::Relay(connection, _) = link {
        connection.close();
    }
    Ok(Column {
        loss,
        open,
        fresh_ms: measure::median(fresh),
        again_ms: measure::median(again),
        idle: Timed::of(idle),
        busy_calls: busy.len(),
        busy: Timed::of(busy),
        bulk_mbps,
        bulk_in_flight: plan.in_flight,
        datagrams_dropped: lost,
        kernel_udp_drops: kernel_drops,
        late_ms,
        busy_late_ms,
        late_max_ms,
        busy_late_max_ms,
        realised_rtt_ms: rtt.as_secs_f64() * 1000.0 + f64::from(path.crossings) * late_ms,
    })
}

/// The mean lateness between two `(total ns, deliveries)` counts, ms.
fn mean_ms(before: (u64, u64), after: (u64, u64)) -> f64 {
    let (late_ns, deliveries) = (after.0 - before.0, after.1 - before.1);
    if deliveries > 0 { late_ns as f64 / deliveries as f64 / 1e6 } else { 0.0 }
}

/// The system's count of UDP datagrams dropped because a socket's receive buffer was full
/// (`RcvbufErrors` in `/proc/net/snmp`), if it can be read.
fn kernel_udp_drops() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|line| line.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let at = names.split_whitespace().position(|name| name == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Times sequential 64-byte calls on `small` while [`WanPlan::bulk_mib`] 1 MiB echoes run on
/// `bulk` ([`WanPlan::in_flight`] at a time), transfer after transfer until
/// [`WanPlan::busy_calls`] calls were timed (or [`WanPlan::busy_for`] passed). Returns the
/// calls' times and the echoes' rate in MB/s (10^6 bytes of payload, counted one way).
async fn busy(plan: &WanPlan, small: &Caller, bulk: &Caller) -> anyhow::Result<(Vec<Duration>, f64)> {
    let mut calls = Vec::new();
    let (mut bytes, mut secs) = (0usize, 0.0);
    let started = Instant::now();
    while calls.len() < plan.busy_calls && (calls.is_empty() || started.elapsed() < plan.busy_for) {
        let done = AtomicBool::new(false);
        let transfer = async {
            let start = Instant::now();
            let result = transfer(plan, bulk).await;
            done.store(true, Ordering::Relaxed);
            result.map(|()| start.elapsed())
        };
        let beside = async {
            let mut timed = Vec::new();
            while !done.load(Ordering::Relaxed) {
                measure::time_calls(small, 1, &mut timed).await?;
            }
            anyhow::Ok(timed)
        };
        let (took, timed) = tokio::try_join!(transfer, beside)?;
        calls.extend(timed);
        bytes += plan.bulk_mib * MIB_1;
        secs += took.as_secs_f64();
    }
    Ok((calls, if secs > 0.0 { bytes as f64 / secs / 1e6 } else { 0.0 }))
}

/// [`WanPlan::bulk_mib`] 1 MiB echoes on `bulk`, [`WanPlan::in_flight`] at a time.
async fn transfer(plan: &WanPlan, bulk: &Caller) -> anyhow::Result<()> {
    let left = AtomicUsize::new(plan.bulk_mib);
    let big = payload(MIB_1);
    let worker = || async {
        while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
            let back = bulk.echo(big.clone()).await?;
            ensure!(back.len() == MIB_1, "the 1 MiB echo came back with {} bytes", back.len());
        }
        anyhow::Ok(())
    };
    futures::future::try_join_all((0..plan.in_flight.max(1)).map(|_| worker())).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_name_socket_addresses() {
        assert_eq!(socket_of("quic://127.0.0.1:7443", "quic://").unwrap(), SocketAddr::from(([127, 0, 0, 1], 7443)));
        assert!(socket_of("wss://127.0.0.1:1", "quic://").is_err());
    }

    #[test]
    fn the_kernel_counts_udp_drops_here() {
        assert!(kernel_udp_drops().is_some(), "no RcvbufErrors in /proc/net/snmp");
    }

    #[test]
    fn loss_must_be_a_probability_below_one() {
        assert_eq!(parse_loss("0.01"), Ok(0.01));
        assert!(parse_loss("1").is_err());
        assert!(parse_loss("-0.1").is_err());
        assert!(parse_loss("lots").is_err());
    }
}
