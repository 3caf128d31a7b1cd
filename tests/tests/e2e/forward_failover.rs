//! `relay forward` and `relay connect` given several relays (`--relay A,B`), as real `relay`
//! processes over two independent relays that share their certificate and keys (as the nodes of
//! a cluster do): the forwarder registers on the relay that answers and moves to the other when
//! its own dies; the connector opens new streams through the other when its relay dies; a bad
//! list is refused at once. The calculator client takes a list too.

use std::net::SocketAddr;
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use calculator::{Calc, ServeCalculator};
use relay_forward::{CliError, Forwarder};
use relay_rpc::{RelayUrls, UrlError};
use relay_tests::{SLACK, TestRelay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::forward::{RelayProcess, echo_server};

/// How long a client's connect to a relay that does not answer may take before it gives up: the
/// default handshake timeout of `ConnectOptions`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon a forwarder whose relay died must be forwarding through another.
const REHOMED_WITHIN: Duration = Duration::from_secs(10);

/// A second relay with a copy of `first`'s data directory: the same certificate and root key,
/// so one `--data-dir` serves both.
async fn same_keys(first: &TestRelay) -> TestRelay {
    let copy = relay_tests::temp_dir("forward-same-keys");
    std::fs::create_dir_all(&copy).unwrap();
    for file in ["cert.pem", "key.pem", "root.key"] {
        std::fs::copy(first.dir().join(file), copy.join(file)).unwrap();
    }
    TestRelay::start_with(|config| config.data_dir = copy).await
}

/// `relay forward --relay RELAYS --address ADDRESS --to TO`, once it says where it registered.
async fn forward(relays: &str, address: &str, to: SocketAddr, data_dir: &str) -> (RelayProcess, String) {
    let bin = relay_tests::binary("relay-forward", "relay", &[]);
    let to = to.to_string();
    let args = ["forward", "--relay", relays, "--address", address, "--to", &to, "--data-dir", data_dir];
    let mut process = RelayProcess::spawn(&bin, &args);
    // A relay of the list that does not answer costs a handshake timeout first.
    let line = process.line_within(HANDSHAKE_TIMEOUT + SLACK).await;
    assert!(line.starts_with("forwarding streams on"), "{line:?}");
    (process, relay_named(&line))
}

/// `relay connect --relay RELAYS --address ADDRESS --listen 127.0.0.1:0`: the process, its local
/// address and the relay it connected to.
async fn connect(relays: &str, address: &str, data_dir: &str) -> (RelayProcess, SocketAddr, String) {
    let bin = relay_tests::binary("relay-forward", "relay", &[]);
    let args = ["connect", "--relay", relays, "--address", address, "--listen", "127.0.0.1:0", "--data-dir", data_dir];
    let mut process = RelayProcess::spawn(&bin, &args);
    let line = process.line_within(HANDSHAKE_TIMEOUT + SLACK).await;
    let local = line.strip_prefix("listening on ").and_then(|rest| rest.split(": ").next());
    let local: SocketAddr = local.and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    (process, local, relay_named(&line))
}

/// The relay URL a start line names: `... at URL ...`.
fn relay_named(line: &str) -> String {
    let after = line.split(" at ").nth(1).unwrap_or_else(|| panic!("no relay in {line:?}"));
    after.split(' ').next().unwrap_or_default().to_owned()
}

/// Sends a line through the forwarded port at `local` and reads its echo, within `limit`.
async fn echo_once(local: SocketAddr, limit: Duration) -> Result<(), String> {
    let exchange = async {
        let mut client = TcpStream::connect(local).await?;
        client.write_all(b"hello\n").await?;
        client.shutdown().await?;
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).await?;
        Ok::<_, std::io::Error>(echoed)
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(Ok(echoed)) if echoed == b"hello\n" => Ok(()),
        Ok(Ok(echoed)) => Err(format!("echoed {echoed:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no echo within {limit:?}")),
    }
}

/// Echoes through `local` until it works, for at most `limit` from `since`; how long it took.
async fn echoes_within(local: SocketAddr, since: Instant, limit: Duration, what: &str) -> Duration {
    loop {
        let left = limit.saturating_sub(since.elapsed());
        match echo_once(local, left.max(Duration::from_millis(1))).await {
            Ok(()) => return since.elapsed(),
            Err(e) => assert!(since.elapsed() < limit, "{what}: not forwarding after {:?}: {e}", since.elapsed()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The two relays, as `(url, relay)`, with the one named `url` first.
fn split(url: &str, a: TestRelay, b: TestRelay) -> (TestRelay, TestRelay) {
    if a.url == url { (a, b) } else { (b, a) }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_forward_skips_a_relay_that_is_down_from_the_start() {
    let live = TestRelay::start().await;
    let dead = same_keys(&live).await;
    let dead_url = dead.url.clone();
    dead.stop().await;
    let (echo, _echoed) = echo_server().await;
    let data_dir = live.dir().to_str().unwrap().to_owned();

    let relays = format!("{dead_url},{}", live.url);
    let (_forward, registered) = forward(&relays, "down-first", echo, &data_dir).await;
    assert_eq!(registered, live.url, "registered on the relay that answers");
    let (_connect, local, _) = connect(&live.url, "down-first", &data_dir).await;
    echoes_within(local, Instant::now(), SLACK, "through the live relay").await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_forward_rehomes_on_another_relay_when_its_own_dies() {
    let first = TestRelay::start().await;
    let second = same_keys(&first).await;
    let (echo, _echoed) = echo_server().await;
    let data_dir = first.dir().to_str().unwrap().to_owned();

    let relays = format!("{},{}", first.url, second.url);
    let (_forward, registered) = forward(&relays, "rehome", echo, &data_dir).await;
    let (home, other) = split(&registered, first, second);
    let (_on_home, home_local, _) = connect(&home.url, "rehome", &data_dir).await;
    let (_on_other, other_local, _) = connect(&other.url, "rehome", &data_dir).await;
    echoes_within(home_local, Instant::now(), SLACK, "through its relay").await;
    assert!(echo_once(other_local, SLACK).await.is_err(), "the other relay knows no forwarder yet");

    // Its relay dies (draining what it carries meanwhile): the forwarder registers on the other.
    let since = Instant::now();
    let stopped = tokio::spawn(home.stop());
    let took = echoes_within(other_local, since, REHOMED_WITHIN, "through the other relay").await;
    eprintln!("re-homed in {took:?}");
    relay_tests::propagate_panic(stopped.await);
    echoes_within(other_local, Instant::now(), SLACK, "and stays there").await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_connect_opens_new_connections_through_another_relay_when_its_own_dies() {
    let first = TestRelay::start().await;
    let second = same_keys(&first).await;
    let (echo, _echoed) = echo_server().await;
    let data_dir = first.dir().to_str().unwrap().to_owned();
    // Independent relays: each has a forwarder of its own, to the same service.
    let _forward_first = forward(&first.url, "moving", echo, &data_dir).await;
    let _forward_second = forward(&second.url, "moving", echo, &data_dir).await;

    let relays = format!("{},{}", first.url, second.url);
    let (_connect, local, connected) = connect(&relays, "moving", &data_dir).await;
    let (home, _other) = split(&connected, first, second);
    echoes_within(local, Instant::now(), SLACK, "through its relay").await;

    // Its relay dies: new connections go through the other. The first to find it gone may wait
    // for a connect to the dead relay to time out.
    let since = Instant::now();
    let stopped = tokio::spawn(home.stop());
    let took = echoes_within(local, since, HANDSHAKE_TIMEOUT + SLACK, "through the other relay").await;
    eprintln!("moved in {took:?}");
    relay_tests::propagate_panic(stopped.await);
    for _ in 0..5 {
        echo_once(local, SLACK).await.expect("every new connection goes through the other relay");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_relay_list_is_refused_at_once() {
    let relay = TestRelay::start().await;
    let bin = relay_tests::binary("relay-forward", "relay", &[]);
    let data_dir = relay.dir().to_str().unwrap();
    let bad_lists = [
        ("", "no relay url given"),
        (" , ", "no relay url given"),
        (&format!("{},relay.example:7443", relay.url) as &str, "has no scheme"),
        ("http://relay.example", "unsupported relay url scheme"),
    ];
    for (relays, says) in bad_lists {
        for half in [&["forward", "--to", "127.0.0.1:1"][..], &["connect", "--listen", "127.0.0.1:0"]] {
            let mut child = Process::new(&bin)
                .args(half)
                .args(["--relay", relays, "--address", "bad", "--data-dir", data_dir])
                .env_remove("RELAY_URL")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let exited = relay_tests::eventually(SLACK, || child.try_wait().unwrap().is_some()).await;
            if !exited {
                let _ = child.kill();
                panic!("{half:?} --relay {relays:?}: still running after {SLACK:?}");
            }
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{half:?} --relay {relays:?}");
            assert!(stderr.contains("--relay") && stderr.contains(says), "{half:?} --relay {relays:?}: {stderr}");
        }
    }

    // A list built in code is checked too, before anything is tried.
    let cli = ["relay", "forward", "--address", "bad", "--to", "127.0.0.1:1", "--data-dir", data_dir];
    let relay_forward::Command::Forward(mut args) = <relay_forward::Cli as clap::Parser>::parse_from(cli).command
    else {
        unreachable!()
    };
    args.relay.relay = RelayUrls::new(Vec::<String>::new());
    let refused = tokio::time::timeout(SLACK, Forwarder::start(&args)).await.expect("refused at once");
    assert!(matches!(refused, Err(CliError::Relays(UrlError::Empty))), "{refused:?}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calculator_client_calls_through_a_relay_of_its_list_that_answers() {
    let live = TestRelay::start().await;
    let dead = same_keys(&live).await;
    let dead_url = dead.url.clone();
    dead.stop().await;
    let host = live.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));

    let bin = relay_tests::binary("calculator", "calculator-client", &[]);
    let relays = format!("{dead_url},{}", live.url);
    let data_dir = live.dir().to_str().unwrap().to_owned();
    let args = ["--relay", relays.as_str(), "--address", "calc", "--data-dir", &data_dir, "add", "2", "3"];
    let mut child = Process::new(bin).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let exited = relay_tests::eventually(HANDSHAKE_TIMEOUT + SLACK, || child.try_wait().unwrap().is_some()).await;
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{relays}: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "5");
}
