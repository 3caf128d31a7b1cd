//! Soak: a million calls through one relay, with churn everywhere, leave no task, file descriptor
//! or memory behind.
//!
//! How to run (about two minutes on two cores; `SOAK_CALLS` sets the number of calls):
//!
//! ```text
//! cargo test --release -p relay-tests --test isolated soak -- --ignored --nocapture
//! SOAK_CALLS=20000 cargo test --release -p relay-tests --test isolated soak -- --ignored --nocapture
//! ```
//!
//! Everything runs in this process: the relay, four hosts that stay (two over QUIC, two over
//! wss), two hosts that rotate (each leaves every [`ROTATE`] and comes back on the other
//! transport), all on one address, and [`CALLERS`] callers (half QUIC, half wss), each making
//! [`PER_CONNECTION`] calls, [`CONCURRENCY`] at a time, over [`CHANNELS`] channels of a connection
//! of its own, then closing it and connecting again. Every answer is checked. The methods are `#[idempotent]`, so a call
//! in flight on a host that rotates out is sent again to another host: every call must succeed.
//! Tasks, open file descriptors and resident memory are counted before and after.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use relay_rpc::{CallContext, CallError, ConnectOptions, Connection, Host};
use relay_tests::{TestRelay, alive_tasks, open_fds};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The test contract.
#[relay_rpc::relay_service(name = "soak.Soak")]
pub trait Soak {
    /// [`mix`] of `a` and `b`.
    #[idempotent]
    async fn mix(a: u64, b: u64) -> u64;
    /// The bytes, reversed.
    #[idempotent]
    async fn reverse(bytes: Vec<u8>) -> Vec<u8>;
}

/// What `mix` answers.
fn mix(a: u64, b: u64) -> u64 {
    a.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ b
}

/// A soak host: counts the calls it serves.
#[derive(Clone)]
struct Service {
    served: Arc<AtomicU64>,
}

impl Soak for Service {
    async fn mix(&self, a: u64, b: u64) -> u64 {
        self.served.fetch_add(1, Ordering::Relaxed);
        mix(a, b)
    }

    async fn reverse(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        self.served.fetch_add(1, Ordering::Relaxed);
        bytes.reverse();
        bytes
    }
}

const ADDRESS: &str = "soak";
/// Caller tasks, each on its own connection at a time; half over QUIC, half over wss.
const CALLERS: usize = 8;
/// Calls per caller connection before it is closed and a new one made.
const PER_CONNECTION: u64 = 2_000;
/// Calls in flight at once per caller connection.
const CONCURRENCY: usize = 8;
/// Channels (stubs) per caller connection; the relay spreads them over the hosts.
const CHANNELS: u64 = 4;
/// How long a rotating host stays before it leaves and comes back.
const ROTATE: Duration = Duration::from_secs(1);
/// A call not ended this long after it started is counted as hung.
const HANG: Duration = Duration::from_secs(30);
/// The number of calls, unless `SOAK_CALLS` says otherwise.
const DEFAULT_CALLS: u64 = 1_000_000;
/// How much resident memory may grow, start to end, and over the second half of the load.
const RSS_GROWTH_MIB: f64 = 64.0;
const RSS_LATE_GROWTH_MIB: f64 = 16.0;

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(10))
}

/// Resident memory, in MiB (`VmRSS` of `/proc/self/status`).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status is readable (Linux)");
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .expect("a VmRSS line");
    kib / 1024.0
}

/// Tasks, file descriptors and memory at one moment.
#[derive(Debug, Clone, Copy)]
struct Gauges {
    tasks: usize,
    fds: usize,
    rss_mib: f64,
}

impl Gauges {
    fn now() -> Self {
        Self { tasks: alive_tasks(), fds: open_fds(), rss_mib: rss_mib() }
    }
}

impl std::fmt::Display for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tasks {}, fds {}, rss {:.1} MiB", self.tasks, self.fds, self.rss_mib)
    }
}

/// How a phase's calls went, shared by its callers and rotating hosts.
#[derive(Default)]
struct Tally {
    /// Calls to make.
    total: u64,
    /// The next call to claim.
    next: AtomicU64,
    /// Calls answered correctly.
    correct: AtomicU64,
    /// Calls answered wrongly.
    wrong: AtomicU64,
    /// Calls not ended within [`HANG`].
    hung: AtomicU64,
    /// Calls that failed, by error; and failed connects, listens and opens.
    errors: Mutex<BTreeMap<String, u64>>,
    /// Caller connections made.
    connections: AtomicU64,
    /// Times a rotating host left and came back.
    rotations: AtomicU64,
}

impl Tally {
    fn error(&self, what: String) {
        *self.errors.lock().unwrap().entry(what).or_default() += 1;
    }

    fn failed(&self) -> u64 {
        self.errors.lock().unwrap().iter().filter(|(what, _)| what.starts_with("call: ")).map(|(_, n)| n).sum()
    }

    /// Asserts that every call was answered correctly: none wrong, none hung, none failed.
    fn assert_all_answered(&self, what: &str) {
        assert_eq!(self.wrong.load(Ordering::Relaxed), 0, "{what}: wrong answers");
        assert_eq!(self.hung.load(Ordering::Relaxed), 0, "{what}: hung calls");
        let errors = self.errors.lock().unwrap().clone();
        let correct = self.correct.load(Ordering::Relaxed);
        assert_eq!(correct, self.total, "{what}: every call answered correctly: {errors:?}");
    }

    fn ended(&self) -> u64 {
        self.correct.load(Ordering::Relaxed)
            + self.wrong.load(Ordering::Relaxed)
            + self.hung.load(Ordering::Relaxed)
            + self.failed()
    }
}

/// Where hosts and callers connect.
#[derive(Clone)]
struct Relay {
    urls: [String; 2],
    options: ConnectOptions,
}

/// Call number `n`: mostly `mix`, every 32nd a `reverse` of up to 4 KiB.
async fn call(stub: &SoakClient, n: u64, tally: &Tally) {
    let checked = async {
        match n % 32 {
            0 => {
                let bytes: Vec<u8> = (0..256 + n % 3_840).map(|i| (i ^ n) as u8).collect();
                let mut expected = bytes.clone();
                expected.reverse();
                Ok::<_, CallError>(stub.reverse(ctx(), bytes).await? == expected)
            }
            _ => {
                let b = n.rotate_left(7);
                Ok(stub.mix(ctx(), n, b).await? == mix(n, b))
            }
        }
    };
    match tokio::time::timeout(HANG, checked).await {
        Ok(Ok(true)) => tally.correct.fetch_add(1, Ordering::Relaxed),
        Ok(Ok(false)) => tally.wrong.fetch_add(1, Ordering::Relaxed),
        Ok(Err(e)) => {
            tally.error(format!("call: {e:?}"));
            0
        }
        Err(_) => tally.hung.fetch_add(1, Ordering::Relaxed),
    };
}

/// A caller: claims [`PER_CONNECTION`] calls at a time and makes them on a new connection.
async fn caller(relay: Relay, url: String, tally: Arc<Tally>) {
    loop {
        let first = tally.next.fetch_add(PER_CONNECTION, Ordering::Relaxed);
        if first >= tally.total {
            return;
        }
        let last = (first + PER_CONNECTION).min(tally.total);
        let (connection, stubs) = loop {
            let opened = async {
                let connection = Connection::connect(&url, relay.options.clone()).await.map_err(|e| e.to_string())?;
                let mut stubs = Vec::new();
                for _ in 0..CHANNELS {
                    stubs.push(SoakClient::connect(&connection, ADDRESS).await.map_err(|e| e.to_string())?);
                }
                Ok::<_, String>((connection, stubs))
            };
            match opened.await {
                Ok(opened) => break opened,
                Err(e) => {
                    tally.error(format!("caller connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        futures::stream::iter(first..last)
            .for_each_concurrent(CONCURRENCY, |n| call(&stubs[(n % CHANNELS) as usize], n, &tally))
            .await;
        drop(stubs);

        connection.close();
        tally.connections.fetch_add(1, Ordering::Relaxed);
    }
}

/// Serves [`ADDRESS`] over `url` until the host closes; returns the host and its serving task.
async fn serve(
    relay: &Relay,
    url: &str,
    served: Arc<AtomicU64>,
) -> Result<(Host, tokio::task::JoinHandle<()>), String> {
    let host = Host::connect(url, relay.options.clone()).await.map_err(|e| e.to_string())?;
    let listener = host.listen(ADDRESS).await.map_err(|e| e.to_string())?;
    let serving = tokio::spawn(async move {
        let _ = listener.serve(ServeSoak::new(Service { served })).await;
    });
    Ok((host, serving))
}

/// A host that leaves every [`ROTATE`] and comes back on the other transport, until `stop`.
async fn rotating_host(
    relay: Relay,
    first: usize,
    served: Arc<AtomicU64>,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) {
    for turn in first.. {
        let (host, serving) = match serve(&relay, &relay.urls[turn % 2], served.clone()).await {
            Ok(serving) => serving,
            Err(e) => {
                tally.error(format!("rotating host: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let stopped = tokio::time::timeout(ROTATE, stop.wait_for(|stop| *stop)).await.is_ok();
        host.close();
        if tokio::time::timeout(Duration::from_secs(5), serving).await.is_err() {
            tally.error("rotating host: serving did not end within 5 s of close".into());
        }
        tally.rotations.fetch_add(1, Ordering::Relaxed);
        if stopped {
            return;
        }
    }
}

/// Makes `calls` calls with the callers and rotating hosts; prints progress every tenth if
/// `report`; returns the tally and the memory at 30% and at 100% of the calls.
async fn phase(relay: &Relay, calls: u64, served: &[Arc<AtomicU64>], report: bool) -> (Arc<Tally>, f64, f64) {
    let tally = Arc::new(Tally { total: calls, ..Tally::default() });
    let (stop, stopping) = watch::channel(false);
    let mut rotors = JoinSet::new();
    for (first, served) in served.iter().enumerate() {
        rotors.spawn(rotating_host(relay.clone(), first, served.clone(), tally.clone(), stopping.clone()));
    }
    let mut callers = JoinSet::new();
    for i in 0..CALLERS {
        callers.spawn(caller(relay.clone(), relay.urls[i % 2].clone(), tally.clone()));
    }
    let started = Instant::now();
    let (mut rss_at_30, mut rss_at_100) = (0.0, 0.0);
    let (mut tenth, mut last_calls, mut last_at) = (1, 0, started);
    loop {
        let done = tokio::select! {
            joined = callers.join_next() => match joined {
                Some(joined) => { joined.expect("caller task"); false }
                None => true,
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => false,
        };
        let ended = tally.ended();
        while ended >= calls * tenth / 10 && tenth <= 10 {
            let gauges = Gauges::now();
            if tenth == 3 {
                rss_at_30 = gauges.rss_mib;
            }
            if tenth == 10 {
                rss_at_100 = gauges.rss_mib;
            }
            if report {
                let rate = (ended - last_calls) as f64 / last_at.elapsed().as_secs_f64();
                println!(
                    "soak: {:>3}%  {ended:>9} calls  {rate:>7.0} calls/s  {gauges}  connections {}  rotations {}  \
                     failed {}",
                    tenth * 10,
                    tally.connections.load(Ordering::Relaxed),
                    tally.rotations.load(Ordering::Relaxed),
                    tally.failed(),
                );
            }
            (last_calls, last_at) = (ended, Instant::now());
            tenth += 1;
        }
        if done {
            break;
        }
    }
    let _ = stop.send(true);
    while let Some(rotor) = rotors.join_next().await {
        rotor.expect("rotating host task");
    }
    (tally, rss_at_30, rss_at_100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with cargo test --release -p relay-tests --test isolated soak -- --ignored --nocapture"]
async fn a_million_calls_with_churn_leak_nothing() {
    let _alone = crate::ALONE.lock().await;
    let calls: u64 =
        std::env::var("SOAK_CALLS").ok().map(|v| v.parse().expect("SOAK_CALLS is a number")).unwrap_or(DEFAULT_CALLS);
    let test_relay = TestRelay::start().await;
    let relay = Relay { urls: [test_relay.url.clone(), test_relay.ws_url.clone()], options: test_relay.options() };
    // The hosts that stay: two over QUIC, two over wss.
    let mut hosts = Vec::new();
    let mut served = Vec::new();
    for i in 0..4 {
        let count = Arc::new(AtomicU64::new(0));
        hosts.push(serve(&relay, &relay.urls[i % 2], count.clone()).await.expect("host serves"));
        served.push(count);
    }
    let rotating: Vec<_> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();

    // Warm up with the same churn, so that lazily made things (pools, caches) exist; then take
    // the baseline with only the hosts that stay.
    let warm_up = (calls / 50).max(2_000);
    let (tally, _, _) = phase(&relay, warm_up, &rotating, false).await;
    tally.assert_all_answered("warm-up");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Gauges::now();
    println!("soak: start: {calls} calls; {warm_up} warm-up calls made; {start}");

    let began = Instant::now();
    let (tally, rss_at_30, rss_at_100) = phase(&relay, calls, &rotating, true).await;
    let took = began.elapsed();
    let rate = calls as f64 / took.as_secs_f64();

    // Closed connections and hosts wind down in the background: give them a moment.
    relay_tests::eventually(Duration::from_secs(10), || {
        alive_tasks() <= start.tasks + 2 && open_fds() <= start.fds + 2
    })
    .await;
    let end = Gauges::now();
    let errors = tally.errors.lock().unwrap().clone();
    let served: Vec<u64> = served.iter().chain(&rotating).map(|s| s.load(Ordering::Relaxed)).collect();
    println!("soak: end: {end}");
    println!(
        "soak: {calls} calls in {took:.1?}: {rate:.0} calls/s; {} correct, {} wrong, {} hung, {} failed; \
         {} caller connections; {} host rotations",
        tally.correct.load(Ordering::Relaxed),
        tally.wrong.load(Ordering::Relaxed),
        tally.hung.load(Ordering::Relaxed),
        tally.failed(),
        tally.connections.load(Ordering::Relaxed),
        tally.rotations.load(Ordering::Relaxed),
    );
    println!("soak: served per host (4 that stay, 2 that rotate), warm-up included: {served:?}");
    println!("soak: errors: {errors:?}");
    println!(
        "soak: growth: tasks {:+}, fds {:+}, rss {:+.1} MiB (30%→100% of the load: {:+.1} MiB)",
        end.tasks as i64 - start.tasks as i64,
        end.fds as i64 - start.fds as i64,
        end.rss_mib - start.rss_mib,
        rss_at_100 - rss_at_30,
    );

    tally.assert_all_answered("soak");
    assert!(end.tasks <= start.tasks + 4, "tasks: {} at the start, {} at the end", start.tasks, end.tasks);
    assert!(end.fds <= start.fds + 4, "fds: {} at the start, {} at the end", start.fds, end.fds);
    assert!(
        end.rss_mib <= start.rss_mib + RSS_GROWTH_MIB,
        "rss: {:.1} MiB at the start, {:.1} MiB at the end",
        start.rss_mib,
        end.rss_mib
    );
    assert!(
        rss_at_100 <= rss_at_30 + RSS_LATE_GROWTH_MIB,
        "rss still growing under load: {rss_at_30:.1} MiB at 30%, {rss_at_100:.1} MiB at 100%"
    );
    drop((hosts, test_relay));
}
