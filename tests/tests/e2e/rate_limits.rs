//! A caller flooding the relay with channel opens (each dropped at once: open and cancel) is
//! refused past its rate with a typed error before any host hears of it, while another caller's
//! channels and calls carry on. Over QUIC the bucket is per connection; over WebSocket, where
//! every channel is a connection of its own, per source IP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use calculator::{Calc, CalculatorClient, ServeCalculator};
use relay_rpc::ErrorCode;
use relay_rpc::{CallContext, Connection, OpenError};
use relay_tests::{SLACK, TestRelay};
use tokio::task::JoinSet;

const RATE: u32 = 50;
const BURST: u32 = 20;

/// Opens `total` channels to `flood`, `concurrency` at a time, dropping each at once. Returns
/// how many opened and how many were refused as rate-limited; any other outcome fails the test.
async fn flood(caller: &Connection, total: usize, concurrency: usize) -> (usize, usize) {
    let (mut opened, mut limited) = (0, 0);
    let mut opens = JoinSet::new();
    for _ in 0..total {
        let caller = caller.clone();
        opens.spawn(async move { caller.open_channel("flood", None).await.map(drop) });
        if opens.len() >= concurrency {
            tally(opens.join_next().await, &mut opened, &mut limited);
        }
    }
    while let Some(done) = opens.join_next().await {
        tally(Some(done), &mut opened, &mut limited);
    }
    (opened, limited)
}

fn tally(done: Option<Result<Result<(), OpenError>, tokio::task::JoinError>>, opened: &mut usize, limited: &mut usize) {
    match done.expect("an open is running").expect("open task") {
        Ok(()) => *opened += 1,
        Err(OpenError::Refused { code: ErrorCode::RateLimited, .. }) => *limited += 1,
        Err(e) => panic!("unexpected open error: {e}"),
    }
}

/// The most opens a bucket lets through in `elapsed`, with a little slack for timing.
fn allowed(elapsed: Duration) -> usize {
    BURST as usize + (f64::from(RATE) * elapsed.as_secs_f64()).ceil() as usize + 5
}

/// Serves `flood` by accepting and counting channels (then dropping them), and the calculator
/// on `calc`.
async fn start(relay: &TestRelay) -> (relay_rpc::Host, Arc<AtomicUsize>) {
    let host = relay.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    let mut listener = host.listen("flood").await.unwrap();
    let reached_host = Arc::new(AtomicUsize::new(0));
    let counter = reached_host.clone();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(incoming.accept());
        }
    });
    (host, reached_host)
}

/// Another caller opens channels and calls while the flood goes on; none is refused.
async fn bystander(caller: Connection, until: Arc<AtomicUsize>) -> usize {
    let mut calls = 0;
    while until.load(Ordering::SeqCst) == 0 || calls < 5 {
        let calc = CalculatorClient::connect(&caller, "calc").await.expect("bystander opens");
        let sum = calc.add(CallContext::with_timeout(Duration::from_secs(5)), calls, 1).await.expect("bystander calls");
        assert_eq!(sum, calls + 1);
        calls += 1;
        // Well under the rate, as a well-behaved caller is.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    calls as usize
}

async fn flood_and_check(url_of_flooder: &str) {
    let relay = TestRelay::start_with(|c| {
        c.channel_opens_per_sec = RATE;
        c.channel_open_burst = BURST;
    })
    .await;
    let (_host, reached_host) = start(&relay).await;
    let url = if url_of_flooder == "quic" { relay.url.clone() } else { relay.ws_url.clone() };
    let flooder = relay.caller_on(&url).await;
    let done = Arc::new(AtomicUsize::new(0));
    let bystander = tokio::spawn(bystander(relay.caller().await, done.clone()));

    let started = Instant::now();
    let (opened, limited) = flood(&flooder, 400, 32).await;
    let elapsed = started.elapsed();
    done.store(1, Ordering::SeqCst);
    let calls = bystander.await.expect("bystander");

    assert_eq!(opened + limited, 400);
    assert!(limited > 0, "{url_of_flooder}: nothing was rate-limited ({opened} opened in {elapsed:?})");
    assert!(
        opened <= allowed(elapsed),
        "{url_of_flooder}: {opened} opened in {elapsed:?}, more than the bucket allows ({})",
        allowed(elapsed)
    );
    // Refused opens never reach the host. Every open that succeeded did: the host counts a
    // channel before it accepts it. One more open, from another connection, comes after all of
    // them: once the host has counted it, it has counted any refused open that reached it too.
    assert!(reached_host.load(Ordering::SeqCst) >= opened, "opened channels reached the host");
    relay.caller().await.open_channel("flood", None).await.expect("another connection opens");
    assert_eq!(reached_host.load(Ordering::SeqCst), opened + 1, "{url_of_flooder}: refused opens reached the host");
    assert!(calls >= 5, "the bystander made {calls} calls");

    // Once the bucket has refilled, the flooder may open channels again.
    tokio::time::sleep(Duration::from_secs_f64(f64::from(BURST) / f64::from(RATE))).await;
    flooder.open_channel("flood", None).await.expect("opens again after a pause");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_flood_of_opens_is_refused_past_the_rate_and_others_carry_on() {
    flood_and_check("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_flood_of_opens_is_refused_past_the_rate_and_others_carry_on() {
    flood_and_check("wss").await;
}

/// Opens a channel to `calc` and makes one call on it.
async fn open_calc(caller: &Connection) -> Result<CalculatorClient, OpenError> {
    let calc = CalculatorClient::connect(caller, "calc").await?;
    assert_eq!(calc.add(CallContext::with_timeout(Duration::from_secs(5)), 1, 2).await.unwrap(), 3);
    Ok(calc)
}

fn over_quota(result: Result<CalculatorClient, OpenError>) -> String {
    match result {
        Err(OpenError::Refused { code: ErrorCode::RateLimited, detail }) => detail,
        Err(e) => panic!("expected a refusal as rate-limited, got {e}"),
        Ok(_) => panic!("expected a refusal as rate-limited, got a channel"),
    }
}

#[tokio::test]
async fn channels_open_per_source_are_capped_across_connections_and_transports() {
    let relay = TestRelay::start_with(|c| c.max_channels_per_ip = 3).await;
    let (_host, _) = start(&relay).await;
    let quic = relay.caller().await;
    let wss = relay.caller_on(&relay.ws_url).await;
    let mut held =
        vec![open_calc(&quic).await.unwrap(), open_calc(&wss).await.unwrap(), open_calc(&quic).await.unwrap()];
    let detail = over_quota(open_calc(&relay.caller().await).await);
    assert!(detail.contains("source"), "{detail}");
    over_quota(open_calc(&wss).await);
    held.pop();
    // The count follows the channel's close at the relay: refused until the relay has seen it.
    let closing = Instant::now();
    let _reopened = loop {
        match open_calc(&wss).await {
            Ok(calc) => break calc,
            refused => {
                over_quota(refused);
                assert!(closing.elapsed() < SLACK, "no room again {:?} after a channel closed", closing.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
}

#[tokio::test]
async fn channels_open_per_key_are_capped_wherever_they_come_from() {
    use relay_rpc::auth::SharedAccessKey;
    use relay_server::{KeyConfig, Secret};
    let relay = TestRelay::start_with(|c| {
        c.max_channels_per_key = 2;
        c.keys.push(KeyConfig {
            name: "senders".into(),
            primary_key: Secret::new("senders-key"),
            secondary_key: None,
            rights: vec![relay_rpc::auth::Right::Send],
            scope: None,
        });
    })
    .await;
    let (_host, _) = start(&relay).await;
    let options = relay.anonymous_options().with_shared_access_key(SharedAccessKey::new("senders", "senders-key"));
    let senders = Connection::connect(&relay.url, options).await.unwrap();
    let _held = [open_calc(&senders).await.unwrap(), open_calc(&senders).await.unwrap()];
    let detail = over_quota(open_calc(&senders).await);
    assert!(detail.contains("key"), "{detail}");
    // Another key's callers are not affected.
    let _root = open_calc(&relay.caller().await).await.unwrap();
}
