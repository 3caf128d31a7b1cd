//! The relay's memory at scale: per idle channel (QUIC and WebSocket), after closing them and
//! after a second batch, and per idle listener, read from `VmRSS` of relay processes started for
//! this alone.

use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};

use relay_rpc::Connection;

use crate::caller::{Caller, RelayTarget};
use crate::contract::{QUIC_ADDRESS, WSS_ADDRESS, payload};
use crate::measure::{Plan, SMALL, progress};
use crate::procfs;
use crate::procs::{self, RelayProc};
use crate::report::ScaleFigures;

/// How long the relay gets to settle before its memory is read.
const SETTLE: Duration = Duration::from_secs(1);
/// How long channels may take to open or close, all of them.
const CHANNELS_TIMEOUT: Duration = Duration::from_secs(120);
/// QUIC channels opened at once.
const OPEN_QUIC_AT_ONCE: usize = 64;
/// WebSocket channels (a TLS handshake each, on the caller's and on the host's side) opened at once.
const OPEN_WSS_AT_ONCE: usize = 16;

/// The relay's default limit of channels per connection and per listener.
const DEFAULT_MAX_CHANNELS: usize = 10_000;

/// Runs the scale figures: channels against one relay, listeners against a fresh one with the
/// default configuration.
pub async fn run(plan: &Plan) -> anyhow::Result<ScaleFigures> {
    // Room for every channel on one connection and one listener, with some to spare.
    let needed = plan.channels.max(plan.wss_channels) + 1_000;
    let max_channels = (needed > DEFAULT_MAX_CHANNELS).then(|| u32::try_from(needed).unwrap_or(u32::MAX));
    let mut relay = RelayProc::start("scale", max_channels, None).await?;

    progress("scale", &format!("{} idle QUIC channels", plan.channels));
    let quic_host = relay.start_host(true, false, false).await?;
    let quic = relay.target(&relay.quic_url, QUIC_ADDRESS);
    let idle = idle_channels(&mut relay, &quic, plan.channels, OPEN_QUIC_AT_ONCE).await.context("QUIC channels")?;
    quic_host.stop().await;

    progress("scale", "stopping that relay");
    relay.stop().await;

    // A fresh relay for WebSocket channels: memory the QUIC channels left free in the first one
    // would take their allocations without growing the process, and hide what they cost.
    progress("scale", &format!("{} idle WebSocket channels", plan.wss_channels));
    let mut relay = RelayProc::start("scale-wss", max_channels, None).await?;
    let wss_host = relay.start_host(false, true, false).await?;
    let wss = relay.target(&relay.wss_url, WSS_ADDRESS);
    let idle_wss =
        idle_channels(&mut relay, &wss, plan.wss_channels, OPEN_WSS_AT_ONCE).await.context("WebSocket channels")?;
    wss_host.stop().await;
    progress("scale", "stopping that relay");
    relay.stop().await;

    progress("scale", &format!("{} idle listeners", plan.listeners));
    let relay = RelayProc::start("listeners", None, None).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_before_listeners_kib = procfs::rss_kib(relay.pid())?;
    let (hosts, hosts_rss_before_kib) = relay.start_idle_hosts(plan.listeners).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_with_listeners_kib = procfs::rss_kib(relay.pid())?;
    let hosts_rss_kib = procfs::rss_kib(hosts.pid())?;
    procs::stop(hosts).await;
    relay.stop().await;

    Ok(ScaleFigures {
        channels: plan.channels,
        max_channels_per_connection: max_channels.map_or(DEFAULT_MAX_CHANNELS, |m| m as usize),
        rss_idle_start_kib: idle.rss_before_kib,
        rss_with_channels_kib: idle.rss_with_kib,
        rss_per_channel_kib: per(idle.rss_with_kib, idle.rss_before_kib, plan.channels),
        channels_answered: idle.answered,
        rss_after_close_kib: idle.rss_after_close_kib,
        rss_after_second_close_kib: idle.rss_after_second_close_kib,
        wss_channels: plan.wss_channels,
        rss_before_wss_kib: idle_wss.rss_before_kib,
        rss_with_wss_kib: idle_wss.rss_with_kib,
        rss_per_channel_kib_wss: per(idle_wss.rss_with_kib, idle_wss.rss_before_kib, plan.wss_channels),
        channels_answered_wss: idle_wss.answered,
        rss_after_close_wss_kib: idle_wss.rss_after_close_kib,
        rss_after_second_close_wss_kib: idle_wss.rss_after_second_close_kib,
        listeners: plan.listeners,
        rss_before_listeners_kib,
        rss_with_listeners_kib,
        rss_per_listener_kib: per(rss_with_listeners_kib, rss_before_listeners_kib, plan.listeners),
        host_rss_per_connection_kib: per(hosts_rss_kib, hosts_rss_before_kib, plan.listeners),
    })
}

/// KiB per item, to a tenth.
fn per(with: u64, without: u64, count: usize) -> f64 {
    let kib = (with as f64 - without as f64) / count.max(1) as f64;
    (kib * 10.0).round() / 10.0
}

/// What the relay's memory did around two batches of idle channels, one after the other.
#[derive(Debug)]
struct IdleChannels {
    /// With the caller's connection open, before any channel.
    rss_before_kib: u64,
    /// With the first batch open.
    rss_with_kib: u64,
    /// Channels of the first batch that answered a call.
    answered: usize,
    /// Once the first batch is closed.
    rss_after_close_kib: u64,
    /// Once a second batch as large has been opened, called and closed.
    rss_after_second_close_kib: u64,
}

/// Opens `count` channels to `target` over one caller connection, reads the relay's memory with
/// them idle, calls once on each, closes them and reads the memory again; then does the same
/// again, which tells memory kept for reuse (no growth) from memory lost (growth).
async fn idle_channels(
    relay: &mut RelayProc,
    target: &RelayTarget,
    count: usize,
    at_once: usize,
) -> anyhow::Result<IdleChannels> {
    let connection = target.connect().await?;
    relay.wait_open_channels(0, CHANNELS_TIMEOUT).await?;
    tokio::time::sleep(SETTLE).await;
    let pid = relay.pid();
    let rss_before_kib = procfs::rss_kib(pid)?;
    let (rss_with_kib, answered) = batch(relay, &connection, &target.address, count, at_once).await?;
    let rss_after_close_kib = procfs::rss_kib(pid)?;
    batch(relay, &connection, &target.address, count, at_once).await.context("the second batch")?;
    let rss_after_second_close_kib = procfs::rss_kib(pid)?;
    connection.close();
    Ok(IdleChannels { rss_before_kib, rss_with_kib, answered, rss_after_close_kib, rss_after_second_close_kib })
}

/// Opens `count` channels to `address`, `at_once` at a time; once the relay has them all and has
/// settled, reads its memory; calls once on each; closes them all and waits until the relay has
/// and has settled. Returns the memory with the channels open and how many answered.
async fn batch(
    relay: &mut RelayProc,
    connection: &Connection,
    address: &str,
    count: usize,
    at_once: usize,
) -> anyhow::Result<(u64, usize)> {
    let open = futures::stream::iter(0..count)
        .map(|_| Caller::open(connection, address))
        .buffer_unordered(at_once)
        .try_collect::<Vec<Caller>>();
    let callers = tokio::time::timeout(CHANNELS_TIMEOUT, open).await.context("opening channels timed out")??;
    relay.wait_open_channels(count, CHANNELS_TIMEOUT).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_with_kib = procfs::rss_kib(relay.pid())?;

    let small = payload(SMALL);
    let answers = futures::stream::iter(&callers)
        .map(|caller| {
            let small = small.clone();
            async move { matches!(caller.echo(small.clone()).await, Ok(back) if back == small) }
        })
        .buffer_unordered(256)
        .collect::<Vec<bool>>();
    let answered = tokio::time::timeout(CHANNELS_TIMEOUT, answers)
        .await
        .context("calling every channel timed out")?
        .into_iter()
        .filter(|ok| *ok)
        .count();

    drop(callers);
    relay.wait_open_channels(0, CHANNELS_TIMEOUT).await?;
    tokio::time::sleep(SETTLE).await;
    Ok((rss_with_kib, answered))
}
