//! Fault injection, over QUIC and `wss://`: a host blackholed mid-call (its process stopped with
//! SIGSTOP, so it neither answers nor says goodbye) and a relay restarted with calls in flight.
//! Every call ends, answered or with a typed error, within a bound set by the relay's idle
//! timeout, its shutdown grace or the call's deadline; no call hangs; a healthy host on the same
//! address keeps answering; after a restart hosts come back online and callers call them again;
//! no task or file descriptor is left behind.
//!
//! (Killing a host with SIGKILL mid-call is in `failover.rs` and `stub_failover.rs`.)
//!
//! - `blackholed_host`: a host stopped mid-call, and listeners lost as channels are offered.
//! - `relay_restart`: a relay restarted with calls in flight.

mod blackholed_host;
mod relay_restart;

use std::future::Future;
use std::time::Duration;

use relay_rpc::{CallContext, CallError, Connection};
use relay_tests::lab::{LabClient, LabEvent};
use relay_tests::{alive_tasks, next_event, open_fds};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio::time::Instant;

const TEST_HOST: &str = env!("CARGO_BIN_EXE_test-host");

/// The relay's keep-alive interval and idle timeout here: a host silent this long is dead.
const KEEP_ALIVE_MS: u64 = 200;
const IDLE_TIMEOUT_MS: u64 = 1_000;

/// The relay's shutdown grace here: how long calls in flight may go on after a restart begins.
/// Long enough that the test sees the drain begin before the grace is over.
const GRACE_MS: u64 = 2_000;

/// A call not ended this long after it started is counted as hung: past every bound below (a
/// relay timer + [`SLACK`]), short of [`ctx`]'s deadline.
const HANG: Duration = Duration::from_secs(20);

/// A deadline far past every bound, so that no deadline stands in for a prompt typed error.
fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(30))
}

/// Asserts that the task and file-descriptor counts come back to `baseline` (within 2).
async fn assert_no_leak(what: &str, (fds, tasks): (usize, usize)) {
    let settled = relay_tests::eventually(Duration::from_secs(5), || alive_tasks() <= tasks + 2).await;
    assert!(settled, "{what}: tasks: {tasks} before, {} after", alive_tasks());
    let settled = relay_tests::eventually(Duration::from_secs(5), || open_fds() <= fds + 2).await;
    assert!(settled, "{what}: fds: {fds} before, {} after", open_fds());
}

/// How one call ended: its label, its result (`None` if still running after [`HANG`]), and when.
#[derive(Debug)]
struct Ending<T> {
    label: String,
    result: Option<Result<T, CallError>>,
    at: Instant,
}

impl<T> Ending<T> {
    fn after(&self, fault: Instant) -> Duration {
        self.at.saturating_duration_since(fault)
    }
}

/// Calls, each on its own task, each given up on as hung after [`HANG`].
struct Calls<T>(JoinSet<Ending<T>>);

impl<T: Send + 'static> Calls<T> {
    fn new() -> Self {
        Self(JoinSet::new())
    }

    fn spawn(&mut self, label: String, call: impl Future<Output = Result<T, CallError>> + Send + 'static) {
        self.0.spawn(async move {
            let result = tokio::time::timeout(HANG, call).await.ok();
            Ending { label, result, at: Instant::now() }
        });
    }

    /// Waits for every call to end; asserts that none hung.
    async fn ended(mut self) -> Vec<Ending<T>> {
        let mut endings = Vec::new();
        while let Some(ending) = self.0.join_next().await {
            endings.push(ending.expect("call task"));
        }
        let hung: Vec<_> = endings.iter().filter(|e| e.result.is_none()).map(|e| e.label.as_str()).collect();
        assert!(hung.is_empty(), "{} hung calls: {hung:?}", hung.len());
        endings
    }
}

/// Asserts that each call failed with an error `expected` accepts, at most `bound` after `fault`;
/// returns when the last one failed.
fn assert_failed_within<T: std::fmt::Debug>(
    endings: &[Ending<T>],
    fault: Instant,
    bound: Duration,
    expected: impl Fn(&CallError) -> bool,
) -> Duration {
    for ending in endings {
        match &ending.result {
            Some(Err(e)) if expected(e) => {}
            other => panic!("{}: {other:?}", ending.label),
        }
        let after = ending.after(fault);
        assert!(after <= bound, "{}: typed error {after:?} after the fault, past {bound:?}", ending.label);
    }
    endings.iter().map(|e| e.after(fault)).max().unwrap_or_default()
}

/// Waits for `count` events `Started(tag)` from a lab: that many of its `sleep` calls are running.
async fn started(events: &mut UnboundedReceiver<LabEvent>, count: usize, tag: u64) {
    for _ in 0..count {
        assert_eq!(next_event(events).await, LabEvent::Started(tag));
    }
}

/// Opens channels to `lab` until `per_host` stubs land on each of `names` (round-robin
/// alternates between them).
async fn stubs_on(caller: &Connection, names: [&str; 2], per_host: usize) -> [Vec<LabClient>; 2] {
    let mut stubs = [Vec::new(), Vec::new()];
    for _ in 0..4 * per_host + 8 {
        if stubs.iter().all(|s| s.len() == per_host) {
            return stubs;
        }
        let stub = LabClient::connect(caller, "lab").await.unwrap();
        let name = stub.whoami(ctx()).await.unwrap();
        let i = names.iter().position(|n| *n == name).unwrap_or_else(|| panic!("unexpected host {name}"));
        if stubs[i].len() < per_host {
            stubs[i].push(stub);
        }
    }
    panic!("channels did not spread over {names:?}");
}

/// Which host answers on each of `channels` new channels.
async fn who_answers(caller: &Connection, channels: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..channels {
        let stub = LabClient::connect(caller, "lab").await.unwrap();
        names.push(stub.whoami(ctx()).await.unwrap());
    }
    names
}
