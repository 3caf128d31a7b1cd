//! Hosts that keep themselves online: after a relay restart they connect and register again,
//! with backoff and jitter, over QUIC and wss; given several relays they spread over them and
//! move to another when theirs stops; the calculator host example does so as a process.

use std::time::Duration;

use calculator::{Calc, CalculatorClient, ServeCalculator};
use relay_rpc::{Backoff, CallContext, Host, HostStatus, OpenError};
use relay_tests::{SLACK, TestRelay, serve_calculator_online};
use tokio::sync::watch;
use tokio::time::Instant;

fn ctx() -> CallContext {
    CallContext::with_timeout(Duration::from_secs(10))
}

/// Waits (at most `limit`, a guard against a hang) until `wanted` holds for the host's status.
async fn wait_for(status: &mut watch::Receiver<HostStatus>, wanted: impl Fn(&HostStatus) -> bool, limit: Duration) {
    tokio::time::timeout(limit, status.wait_for(|s| wanted(s)))
        .await
        .expect("status in time")
        .expect("host task alive");
}

async fn add(relay: &TestRelay, url: &str, address: &str) -> i64 {
    let caller = relay.caller_on(url).await;
    let calc = CalculatorClient::connect(&caller, address).await.unwrap();
    calc.add(ctx(), 2, 3).await.unwrap()
}

/// Calls `address` on `relay` once a host has registered there, waiting at most `limit`: a
/// restarted relay knows no listener until a host registers again.
async fn add_once_registered(relay: &TestRelay, url: &str, address: &str, limit: Duration) -> i64 {
    let caller = relay.caller_on(url).await;
    let since = Instant::now();
    let calc = loop {
        match CalculatorClient::connect(&caller, address).await {
            Ok(calc) => break calc,
            Err(OpenError::NoListener { .. }) if since.elapsed() < limit => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{address}: not registered again after {:?}: {e:?}", since.elapsed()),
        }
    };
    calc.add(ctx(), 2, 3).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_comes_back_online_after_a_relay_restart() {
    let backoff =
        Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(1), stable: Duration::from_secs(5) };
    for transport in ["quic", "wss"] {
        let relay = TestRelay::start().await;
        let url = if transport == "quic" { relay.url.clone() } else { relay.ws_url.clone() };
        let mut status = serve_calculator_online(&relay, &url, "calc", backoff);
        wait_for(&mut status, |s| *s == HostStatus::Online, SLACK).await;
        assert_eq!(add(&relay, &url, "calc").await, 5, "{transport}");

        // Watching from before the restart, so that no change is missed.
        let mut watching = status.clone();
        let went_offline = tokio::spawn(async move {
            wait_for(&mut watching, |s| *s != HostStatus::Online, Duration::from_secs(60)).await;
        });
        let relay = relay.restart().await;
        went_offline.await.expect("the host noticed the restart");
        // Back within a backoff step of the relay's return.
        let within = backoff.cap + SLACK;
        assert_eq!(
            add_once_registered(&relay, &url, "calc", within).await,
            5,
            "{transport}: served again after the restart"
        );
        assert_eq!(*status.borrow(), HostStatus::Online, "{transport}");
    }
}

/// Which of `relays` the host on `address` is registered on, waiting at most `limit`.
async fn registered_on(relays: &[&TestRelay], address: &str, limit: Duration) -> usize {
    let since = Instant::now();
    loop {
        for (i, relay) in relays.iter().enumerate() {
            let caller = relay.caller().await;
            if let Ok(calc) = CalculatorClient::connect(&caller, address).await {
                assert_eq!(calc.add(ctx(), 2, 3).await.unwrap(), 5);
                return i;
            }
        }
        assert!(since.elapsed() < limit, "{address}: on no relay after {:?}", since.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_several_relays_rehomes_when_its_relay_dies_and_spreads_over_them() {
    let backoff =
        Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(1), stable: Duration::from_secs(5) };
    // Two relays that share their certificate and keys (copies of one data directory), as the
    // nodes of a cluster do.
    let first = TestRelay::start().await;
    let copy = relay_tests::temp_dir("same-keys");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(first.dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    let second = TestRelay::start_with(|config| config.data_dir = copy).await;
    let relays = format!("{},{}", first.url, second.url);

    // Hosts choose a relay at random each time they connect: a few of them land on both.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let (tx, rx) = watch::channel(HostStatus::Connecting);
        let (relays, options) = (relays.clone(), first.options());
        let address = format!("calc-{i}");
        tokio::spawn(async move {
            Host::serve_online(relays.as_str(), options, &address, ServeCalculator::new(Calc), backoff, tx).await
        });
        statuses.push(rx);
    }
    let mut homes = Vec::new();
    for (i, status) in statuses.iter_mut().enumerate() {
        wait_for(status, |s| *s == HostStatus::Online, SLACK).await;
        homes.push(registered_on(&[&first, &second], &format!("calc-{i}"), SLACK).await);
    }
    assert!(homes.contains(&0) && homes.contains(&1), "8 hosts, all on one relay: {homes:?}");

    // The first relay dies: its hosts re-home to the second within 10 s; the others stay.
    let moved: Vec<usize> = (0..8).filter(|&i| homes[i] == 0).collect();
    first.stop().await;
    let since = Instant::now();
    for i in moved {
        assert_eq!(registered_on(&[&second], &format!("calc-{i}"), Duration::from_secs(10)).await, 0);
    }
    assert!(since.elapsed() < Duration::from_secs(10), "re-homed in {:?}", since.elapsed());
    for i in (0..8).filter(|&i| homes[i] == 1) {
        assert_eq!(registered_on(&[&second], &format!("calc-{i}"), SLACK).await, 0);
    }
}

#[tokio::test]
async fn a_host_given_no_relay_or_a_bad_one_gives_up_at_once() {
    let relay = TestRelay::start().await;
    for relays in ["", " , ", &format!("{},nope", relay.url)] {
        let (tx, _rx) = watch::channel(HostStatus::Connecting);
        let fatal = tokio::time::timeout(
            SLACK,
            Host::serve_online(relays, relay.options(), "calc", ServeCalculator::new(Calc), Backoff::default(), tx),
        )
        .await
        .expect("gives up at once");
        assert!(
            matches!(fatal, relay_rpc::OnlineError::Connect(relay_rpc::ConnectError::Url(_))),
            "{relays:?}: {fatal}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calculator_host_example_survives_a_relay_restart_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let relay = TestRelay::start().await;
    let mut host = Command::new(relay_tests::binary("calculator", "calculator-host", &[]))
        .args(["--relay", &relay.url, "--address", "calc", "--data-dir", relay.dir().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = host.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let next_line = async |lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>| {
        tokio::time::timeout(Duration::from_secs(60), lines.recv()).await.expect("a line in time").expect("a line")
    };
    let online = next_line(&mut lines).await;
    assert_eq!(online, format!("serving Calculator on calc at {}", relay.url));
    assert_eq!(add(&relay, &relay.url, "calc").await, 5);

    let relay = relay.restart().await;
    assert!(next_line(&mut lines).await.starts_with("offline ("), "says it lost the relay");
    let mut line = next_line(&mut lines).await;
    while line.starts_with("offline (") {
        line = next_line(&mut lines).await; // Tries while the relay is still down.
    }
    assert_eq!(line, online, "and that it is back");
    assert_eq!(add_once_registered(&relay, &relay.url, "calc", SLACK).await, 5);

    assert!(Command::new("kill").args(["-TERM", &host.id().to_string()]).status().unwrap().success());
    assert_eq!(next_line(&mut lines).await, "stopping on SIGTERM");
    assert!(host.wait().unwrap().success());
}
