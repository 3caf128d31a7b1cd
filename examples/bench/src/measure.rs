//! The figures of one transport: latency, calls per second, bulk throughput, connect time.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use bytes::Bytes;

use crate::caller::{Caller, Target};
use crate::child::ChildProc;
use crate::cluster;
use crate::contract::payload;
use crate::procfs;
use crate::report::TransportFigures;

/// How much of everything one run measures.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Whether this is the short run.
    pub quick: bool,
    /// Calls before any measurement.
    pub warmup: usize,
    /// Sequential 64-byte calls timed one by one.
    pub latency_calls: usize,
    /// Calls in flight at once on one channel, for calls per second.
    pub in_flight: usize,
    /// How long calls per second are counted.
    pub concurrent_for: Duration,
    /// How long each bulk payload size is echoed, one call in flight.
    pub bulk_for: Duration,
    /// How long 1 MiB `Vec<u8>` payloads are echoed.
    pub bulk_vec_for: Duration,
    /// Fresh processes timed connecting; the median counts.
    pub connect_spawns: usize,
    /// Idle QUIC channels for the scale figures.
    pub channels: usize,
    /// Idle WebSocket channels for the scale figures.
    pub wss_channels: usize,
    /// Idle listeners (one host connection each) for the scale figures.
    pub listeners: usize,
}

impl Plan {
    /// The full run: a few minutes on 2 cores.
    pub fn full() -> Self {
        Self {
            quick: false,
            warmup: 1_000,
            latency_calls: 20_000,
            in_flight: 64,
            concurrent_for: Duration::from_secs(5),
            bulk_for: Duration::from_secs(2),
            bulk_vec_for: Duration::from_secs(1),
            connect_spawns: 5,
            channels: 10_000,
            wss_channels: 1_000,
            listeners: 1_000,
        }
    }

    /// The quick run, for CI: seconds.
    pub fn quick() -> Self {
        Self {
            quick: true,
            warmup: 200,
            latency_calls: 2_000,
            in_flight: 64,
            concurrent_for: Duration::from_secs(1),
            bulk_for: Duration::from_millis(500),
            bulk_vec_for: Duration::from_millis(300),
            connect_spawns: 3,
            channels: 1_000,
            wss_channels: 100,
            listeners: 100,
        }
    }
}

/// The size of a small call's payload.
pub const SMALL: usize = 64;
/// The sizes of bulk payloads.
pub const KIB_64: usize = 64 * 1024;
/// One MiB.
pub const MIB_1: usize = 1024 * 1024;

/// Measures everything for `target`, with a caller in this process; `relay_pid` is the relay
/// process whose CPU time is counted during the calls-per-second run (none for the baseline).
pub async fn transport(
    plan: &Plan,
    name: &str,
    target: &Target,
    relay_pid: Option<u32>,
) -> anyhow::Result<TransportFigures> {
    let caller = Caller::connect(target).await.with_context(|| format!("{name}: connecting"))?;
    let small = payload(SMALL);
    for _ in 0..plan.warmup {
        ensure!(caller.echo(small.clone()).await? == small, "{name}: the echo came back different");
    }
    progress(name, "latency");
    let latency = latency(&caller, plan.latency_calls).await.with_context(|| format!("{name}: latency"))?;
    progress(name, "calls per second");
    let (calls_per_s, cpu_us_per_call) = calls_per_second(&caller, plan.in_flight, plan.concurrent_for, relay_pid)
        .await
        .with_context(|| format!("{name}: calls per second"))?;
    progress(name, "bulk");
    let mbps_64k = bulk(&caller, KIB_64, plan.bulk_for).await.with_context(|| format!("{name}: 64 KiB echo"))?;
    let mbps_1m = bulk(&caller, MIB_1, plan.bulk_for).await.with_context(|| format!("{name}: 1 MiB echo"))?;
    let mbps_1m_vec =
        bulk_vec(&caller, MIB_1, plan.bulk_vec_for).await.with_context(|| format!("{name}: 1 MiB Vec<u8> echo"))?;
    drop(caller);
    progress(name, "connect");
    let connect_ms = connect_ms(target, plan.connect_spawns).await.with_context(|| format!("{name}: connect time"))?;
    Ok(TransportFigures {
        p50_us: latency.p50,
        p90_us: latency.p90,
        p99_us: latency.p99,
        p999_us: latency.p999,
        calls_per_s,
        mbps_64k,
        mbps_1m,
        mbps_1m_vec,
        connect_ms,
        cpu_us_per_call,
    })
}

/// Says on stderr what is being measured.
pub fn progress(name: &str, what: &str) {
    eprintln!("relay-bench: {name}: {what}");
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
}

async fn latency(caller: &Caller, calls: usize) -> anyhow::Result<Latency> {
    let small = payload(SMALL);
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls.max(1) {
        let start = Instant::now();
        let back = caller.echo(small.clone()).await?;
        samples.push(start.elapsed());
        ensure!(back.len() == SMALL, "the echo came back with {} bytes", back.len());
    }
    samples.sort_unstable();
    Ok(Latency {
        p50: percentile_us(&samples, 0.50),
        p90: percentile_us(&samples, 0.90),
        p99: percentile_us(&samples, 0.99),
        p999: percentile_us(&samples, 0.999),
    })
}

/// The nearest-rank percentile `q` of sorted `samples`, in microseconds.
fn percentile_us(samples: &[Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    // The tolerance keeps `0.999 * 1000` (999.0000000000001 in floating point) at rank 999.
    let rank = (q * samples.len() as f64 - 1e-9).ceil() as usize;
    let index = rank.clamp(1, samples.len()) - 1;
    samples[index].as_nanos() as f64 / 1000.0
}

/// Calls per second with `in_flight` 64-byte calls at once on one channel for `duration`, and
/// the relay's CPU time per call over that run.
async fn calls_per_second(
    caller: &Caller,
    in_flight: usize,
    duration: Duration,
    relay_pid: Option<u32>,
) -> anyhow::Result<(f64, Option<f64>)> {
    let small = payload(SMALL);
    let cpu_before = relay_pid.map(procfs::cpu_us).transpose()?;
    let start = Instant::now();
    let deadline = start + duration;
    let workers = (0..in_flight.max(1)).map(|_| {
        let small = small.clone();
        async move {
            let mut calls = 0u64;
            while Instant::now() < deadline {
                let back = caller.echo(small.clone()).await?;
                ensure!(back.len() == SMALL, "the echo came back with {} bytes", back.len());
                calls += 1;
            }
            anyhow::Ok(calls)
        }
    });
    let counts = futures::future::try_join_all(workers).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let calls: u64 = counts.iter().sum();
    let cpu_after = relay_pid.map(procfs::cpu_us).transpose()?;
    let cpu_per_call = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if calls > 0 => Some(after.saturating_sub(before) as f64 / calls as f64),
        _ => None,
    };
    Ok((calls as f64 / elapsed, cpu_per_call))
}

/// MB/s (10^6 bytes per second) of `size`-byte payloads, counted one way (the payload once per
/// call), echoed one call at a time for `duration` (and at least 3 calls).
async fn bulk(caller: &Caller, size: usize, duration: Duration) -> anyhow::Result<f64> {
    let data: Bytes = payload(size);
    ensure!(caller.echo(data.clone()).await? == data, "the echo came back different");
    let start = Instant::now();
    let mut calls = 0usize;
    while calls < 3 || start.elapsed() < duration {
        let back = caller.echo(data.clone()).await?;
        ensure!(back.len() == size, "the echo came back with {} bytes", back.len());
        calls += 1;
    }
    Ok((calls * size) as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// [`bulk`] with `Vec<u8>` payloads, which serde encodes byte by byte.
async fn bulk_vec(caller: &Caller, size: usize, duration: Duration) -> anyhow::Result<f64> {
    let data: Vec<u8> = payload(size).to_vec();
    ensure!(caller.echo_vec(data.clone()).await? == data, "the echo came back different");
    let start = Instant::now();
    let mut calls = 0usize;
    while calls < 3 || start.elapsed() < duration {
        let back = caller.echo_vec(data.clone()).await?;
        ensure!(back.len() == size, "the echo came back with {} bytes", back.len());
        calls += 1;
    }
    Ok((calls * size) as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// The median over `spawns` fresh processes of the time from the start of connecting to the
/// first answer, in milliseconds.
async fn connect_ms(target: &Target, spawns: usize) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(spawns);
    for _ in 0..spawns.max(1) {
        let mut args = vec!["connect-once".to_owned()];
        args.extend(target.to_args());
        let mut child = ChildProc::spawn("connect-once", &args)?;
        let ms: f64 = child.expect("connected", Duration::from_secs(90)).await?.parse_value("ms")?;
        cluster::stop(child).await;
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        assert_eq!(percentile_us(&samples, 0.5), 500.0);
        assert_eq!(percentile_us(&samples, 0.99), 990.0);
        assert_eq!(percentile_us(&samples, 0.999), 999.0);
        assert_eq!(percentile_us(&samples[..1], 0.999), 1.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }
}
