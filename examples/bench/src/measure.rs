//! The figures of each subject (the two baselines and the relay's two transports): latency, calls
//! per second, bulk throughput, connect time.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};

use crate::caller::{Caller, Target};
use crate::child::ChildProc;
use crate::contract::payload;
use crate::procfs;
use crate::procs;
use crate::report::TransportFigures;

/// How much of everything one run measures.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Whether this is the short run.
    pub quick: bool,
    /// Calls before any measurement.
    pub warmup: usize,
    /// Sequential 64-byte calls timed one by one, per subject.
    pub latency_calls: usize,
    /// Calls in flight at once on one channel, for calls per second.
    pub in_flight: usize,
    /// How long calls per second are counted, per subject.
    pub concurrent_for: Duration,
    /// How long each bulk payload size is echoed, one call in flight, per subject.
    pub bulk_for: Duration,
    /// How long 1 MiB `Vec<u8>` payloads are echoed.
    pub bulk_vec_for: Duration,
    /// How many turns the subjects take at each measurement (see [`transports`]).
    pub rounds: usize,
    /// Fresh processes timed connecting; the median counts.
    pub connect_spawns: usize,
    /// Idle QUIC channels for the scale figures.
    pub channels: usize,
    /// Idle WebSocket channels for the scale figures.
    pub wss_channels: usize,
    /// Idle listeners (one host connection each) for the scale figures.
    pub listeners: usize,
    /// Channels opened one after the other on one connection, per side, for the cluster figures.
    pub cluster_opens: usize,
    /// NATS request-reply round trips timed for the cluster figures.
    pub nats_round_trips: usize,
    /// Idle connections opened through each path for the forwarding figures' memory.
    pub forward_connections: usize,
}

impl Plan {
    /// The full run: a minute or two on 2 cores.
    pub fn full() -> Self {
        Self {
            quick: false,
            warmup: 1_000,
            latency_calls: 20_000,
            in_flight: 64,
            concurrent_for: Duration::from_secs(5),
            bulk_for: Duration::from_secs(2),
            bulk_vec_for: Duration::from_secs(1),
            rounds: 5,
            connect_spawns: 5,
            channels: 10_000,
            wss_channels: 1_000,
            listeners: 1_000,
            cluster_opens: 1_000,
            nats_round_trips: 2_000,
            forward_connections: 1_000,
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
            rounds: 2,
            connect_spawns: 3,
            channels: 1_000,
            wss_channels: 100,
            listeners: 100,
            cluster_opens: 200,
            nats_round_trips: 200,
            forward_connections: 100,
        }
    }
}

/// The size of a small call's payload.
pub const SMALL: usize = 64;
/// The sizes of bulk payloads.
pub const KIB_64: usize = 64 * 1024;
/// One MiB.
pub const MIB_1: usize = 1024 * 1024;

/// One subject to measure: its name, where its caller connects, and the processes whose CPU
/// time counts besides the ends' (the caller, this process, and the host): the relay's (none for
/// the baselines) and, with `--forward`, the tools'.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `tcp`, `tls`, `quic` or `wss`; with `--forward`, `tcp`, `one-hop`, `quic` or `wss`.
    pub name: &'static str,
    /// Where the caller connects.
    pub target: Target,
    /// The relay's process id.
    pub relay_pid: Option<u32>,
    /// The forwarding tools' process ids, whose CPU time is summed.
    pub tool_pids: Vec<u32>,
}

/// Measures every subject, with a caller in this process for each, all served by the host whose
/// process id is `host_pid`.
///
/// The subjects take turns: each measurement is split into [`Plan::rounds`] slices, and every
/// round runs one slice of each subject, one subject at a time. Whatever else loads the machine
/// then falls on all of them alike, and the ratios to the baselines stay meaningful.
pub async fn transports(plan: &Plan, host_pid: u32, subjects: &[Subject]) -> anyhow::Result<Vec<TransportFigures>> {
    let rounds = plan.rounds.max(1);
    let mut runs = Vec::with_capacity(subjects.len());
    for subject in subjects {
        let name = subject.name;
        progress(name, "connecting and warming up");
        let caller = Caller::connect(&subject.target).await.with_context(|| format!("{name}: connecting"))?;
        let small = payload(SMALL);
        for _ in 0..plan.warmup {
            ensure!(caller.echo(small.clone()).await? == small, "{name}: the echo came back different");
        }
        runs.push(Run::new(subject, host_pid, caller));
    }

    progress("all", &format!("latency, {} calls each, in {rounds} rounds", plan.latency_calls));
    for _ in 0..rounds {
        for run in &mut runs {
            let calls = plan.latency_calls.div_ceil(rounds);
            run.latency(calls).await.with_context(|| format!("{}: latency", run.name))?;
        }
    }
    progress("all", &format!("calls per second, {} in flight", plan.in_flight));
    for _ in 0..rounds {
        for run in &mut runs {
            run.concurrent(plan.in_flight, plan.concurrent_for / rounds as u32)
                .await
                .with_context(|| format!("{}: calls per second", run.name))?;
        }
    }
    progress("all", "bulk echoes");
    for _ in 0..rounds {
        for run in &mut runs {
            let slice = plan.bulk_for / rounds as u32;
            let name = run.name;
            run.bulk_64k.add(bulk(&run.caller, KIB_64, slice).await.with_context(|| format!("{name}: 64 KiB echo"))?);
            run.bulk_1m.add(bulk(&run.caller, MIB_1, slice).await.with_context(|| format!("{name}: 1 MiB echo"))?);
            let slice = plan.bulk_vec_for / rounds as u32;
            let vec = bulk_vec(&run.caller, MIB_1, slice).await.with_context(|| format!("{name}: 1 MiB Vec echo"))?;
            run.bulk_1m_vec.add(vec);
        }
    }
    progress("all", &format!("connect time, {} fresh processes each", plan.connect_spawns));
    let mut connects: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    for _ in 0..plan.connect_spawns.max(1) {
        for (subject, times) in subjects.iter().zip(&mut connects) {
            times.push(connect_ms(&subject.target).await.with_context(|| format!("{}: connect time", subject.name))?);
        }
    }
    Ok(runs.into_iter().zip(connects).map(|(run, times)| run.figures(median(times))).collect())
}

/// Says on stderr what is being measured, and when (seconds since the first call).
pub fn progress(name: &str, what: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("relay-bench [{elapsed:6.1} s] {name}: {what}");
}

/// Bytes or calls over time, summed over slices.
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    amount: f64,
    secs: f64,
}

impl Rate {
    fn add(&mut self, other: Rate) {
        self.amount += other.amount;
        self.secs += other.secs;
    }

    fn per_second(&self) -> f64 {
        if self.secs > 0.0 { self.amount / self.secs } else { 0.0 }
    }
}

/// What has been measured of one subject so far.
struct Run {
    name: &'static str,
    caller: Caller,
    host_pid: u32,
    relay_pid: Option<u32>,
    tool_pids: Vec<u32>,
    latencies: Vec<Duration>,
    calls: Rate,
    relay_cpu_us: u64,
    tool_cpu_us: u64,
    /// The caller's (this process's) and the host's CPU time over the calls/s runs, µs.
    ends_cpu_us: [u64; 2],
    bulk_64k: Rate,
    bulk_1m: Rate,
    bulk_1m_vec: Rate,
}

impl Run {
    fn new(subject: &Subject, host_pid: u32, caller: Caller) -> Self {
        Self {
            name: subject.name,
            caller,
            host_pid,
            relay_pid: subject.relay_pid,
            tool_pids: subject.tool_pids.clone(),
            latencies: Vec::new(),
            calls: Rate::default(),
            relay_cpu_us: 0,
            tool_cpu_us: 0,
            ends_cpu_us: [0; 2],
            bulk_64k: Rate::default(),
            bulk_1m: Rate::default(),
            bulk_1m_vec: Rate::default(),
        }
    }

    /// Times `calls` sequential 64-byte calls, one by one.
    async fn latency(&mut self, calls: usize) -> anyhow::Result<()> {
        time_calls(&self.caller, calls, &mut self.latencies).await
    }

    /// Counts 64-byte calls with `in_flight` at once on one channel for `duration`, and the CPU
    /// time of every process on the path meanwhile.
    async fn concurrent(&mut self, in_flight: usize, duration: Duration) -> anyhow::Result<()> {
        let small = payload(SMALL);
        let cpu_before = self.relay_pid.map(procfs::cpu_us).transpose()?;
        let tools_before = tools_cpu_us(&self.tool_pids)?;
        let ends = [std::process::id(), self.host_pid];
        let ends_before = ends.map(procfs::cpu_us);
        let start = Instant::now();
        let deadline = start + duration;
        let caller = &self.caller;
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
        let secs = start.elapsed().as_secs_f64();
        if let (Some(before), Some(pid)) = (cpu_before, self.relay_pid) {
            self.relay_cpu_us += procfs::cpu_us(pid)?.saturating_sub(before);
        }
        self.tool_cpu_us += tools_cpu_us(&self.tool_pids)?.saturating_sub(tools_before);
        for ((sum, pid), before) in self.ends_cpu_us.iter_mut().zip(ends).zip(ends_before) {
            *sum += procfs::cpu_us(pid)?.saturating_sub(before?);
        }
        self.calls.add(Rate { amount: counts.iter().sum::<u64>() as f64, secs });
        Ok(())
    }

    fn figures(mut self, connect_ms: f64) -> TransportFigures {
        self.latencies.sort_unstable();
        let calls = self.calls.amount;
        let cpu_us_per_call = self.relay_pid.filter(|_| calls > 0.0).map(|_| self.relay_cpu_us as f64 / calls);
        let tool_cpu_us_per_call = (!self.tool_pids.is_empty() && calls > 0.0).then(|| self.tool_cpu_us as f64 / calls);
        let [caller_cpu_us_per_call, host_cpu_us_per_call] =
            self.ends_cpu_us.map(|us| (calls > 0.0).then(|| us as f64 / calls));
        TransportFigures {
            p50_us: percentile_us(&self.latencies, 0.50),
            p90_us: percentile_us(&self.latencies, 0.90),
            p99_us: percentile_us(&self.latencies, 0.99),
            p999_us: percentile_us(&self.latencies, 0.999),
            calls_per_s: self.calls.per_second(),
            mbps_64k: self.bulk_64k.per_second() / 1e6,
            mbps_1m: self.bulk_1m.per_second() / 1e6,
            mbps_1m_vec: self.bulk_1m_vec.per_second() / 1e6,
            connect_ms,
            cpu_us_per_call,
            tool_cpu_us_per_call,
            caller_cpu_us_per_call,
            host_cpu_us_per_call,
        }
    }
}

/// The CPU time the processes `pids` have used so far, summed, µs.
fn tools_cpu_us(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|pid| procfs::cpu_us(*pid)).sum()
}

/// Times `calls` sequential 64-byte calls on `caller`, one by one, into `latencies`.
pub async fn time_calls(caller: &Caller, calls: usize, latencies: &mut Vec<Duration>) -> anyhow::Result<()> {
    let small = payload(SMALL);
    for _ in 0..calls {
        let start = Instant::now();
        let back = caller.echo(small.clone()).await?;
        latencies.push(start.elapsed());
        ensure!(back.len() == SMALL, "the echo came back with {} bytes", back.len());
    }
    Ok(())
}

/// The nearest-rank percentile `q` of sorted `samples`, in microseconds.
pub fn percentile_us(samples: &[Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    // The tolerance keeps `0.999 * 1000` (999.0000000000001 in floating point) at rank 999.
    let rank = (q * samples.len() as f64 - 1e-9).ceil() as usize;
    let index = rank.clamp(1, samples.len()) - 1;
    samples[index].as_nanos() as f64 / 1000.0
}

/// The median of `values` (the upper one of an even count); 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Bytes of `size`-byte payloads, counted one way (the payload once per call), echoed one call
/// at a time for `duration` (and at least 3 calls), after one untimed call that checks the echo.
async fn bulk(caller: &Caller, size: usize, duration: Duration) -> anyhow::Result<Rate> {
    bulk_of(payload(size), duration, |data| caller.echo(data)).await
}

/// [`bulk`] with `Vec<u8>` payloads, which the generated stubs encode as one byte string.
async fn bulk_vec(caller: &Caller, size: usize, duration: Duration) -> anyhow::Result<Rate> {
    bulk_of(payload(size).to_vec(), duration, |data| caller.echo_vec(data)).await
}

/// [`bulk`] of `data`, echoed by `echo`.
async fn bulk_of<P, F, Fut>(data: P, duration: Duration, echo: F) -> anyhow::Result<Rate>
where
    P: Clone + PartialEq + AsRef<[u8]>,
    F: Fn(P) -> Fut,
    Fut: Future<Output = anyhow::Result<P>>,
{
    let size = data.as_ref().len();
    ensure!(echo(data.clone()).await? == data, "the echo came back different");
    let start = Instant::now();
    let mut calls = 0usize;
    while calls < 3 || start.elapsed() < duration {
        let back = echo(data.clone()).await?;
        ensure!(back.as_ref().len() == size, "the echo came back with {} bytes", back.as_ref().len());
        calls += 1;
    }
    Ok(Rate { amount: (calls * size) as f64, secs: start.elapsed().as_secs_f64() })
}

/// The time a fresh process takes from the start of connecting to `target` to its first answer,
/// in milliseconds.
pub async fn connect_ms(target: &Target) -> anyhow::Result<f64> {
    spawn_connect_once(target, false).await
}

/// The time a process that has connected to `target` once (and closed) takes to connect again
/// and get its first answer, ms: what a session to resume saves.
pub async fn reconnect_ms(target: &Target) -> anyhow::Result<f64> {
    spawn_connect_once(target, true).await
}

async fn spawn_connect_once(target: &Target, again: bool) -> anyhow::Result<f64> {
    let mut args = vec!["connect-once".to_owned()];
    args.extend(target.to_args());
    if again {
        args.push("--again".to_owned());
    }
    let mut child = ChildProc::spawn("connect-once", &args)?;
    let ms: f64 = child.expect("connected", Duration::from_secs(90)).await?.parse_value("ms")?;
    procs::stop(child).await;
    Ok(ms)
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

    #[test]
    fn medians_and_rates() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(Vec::new()), 0.0);
        let mut rate = Rate { amount: 10.0, secs: 1.0 };
        rate.add(Rate { amount: 30.0, secs: 1.0 });
        assert_eq!(rate.per_second(), 20.0);
        assert_eq!(Rate::default().per_second(), 0.0);
    }
}
