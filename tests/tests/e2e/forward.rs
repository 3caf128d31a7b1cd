//! TCP port forwarding through a real relay, over `quic://` and `wss://`: the `relay` tool's two
//! halves in process (`relay_forward::{Forwarder, Connector}`, parsed from real arguments),
//! raw streams (`relay_rpc::stream`) against typed hosts and callers, and the real `relay`
//! binary as two child processes when it has been built.
//!
//! client ─TCP─▶ Connector (`relay connect`) ─stream─▶ relay ─stream─▶ Forwarder (`relay forward`) ─TCP─▶ server

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use calculator::{Calc, CalculatorClient, ServeCalculator};
use clap::Parser;
use relay_forward::{Cli, Command, Connector, Forwarder};
use relay_rpc::{OpenError, stream};
use relay_tests::TestRelay;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const MIB: usize = 1024 * 1024;
const CONNECTIONS: usize = 50;
const PER_CONNECTION: usize = 10 * MIB;
const CHUNK: usize = 64 * 1024;
/// Bounds every wait on a single event.
const PROMPTLY: Duration = Duration::from_secs(10);

/// Both halves of a forwarded port, stopped when dropped.
struct Tunnel {
    /// Where clients connect (`relay connect --listen`).
    local: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

fn parse(args: &[&str]) -> Command {
    Cli::try_parse_from(std::iter::once("relay").chain(args.iter().copied())).expect("arguments parse").command
}

/// `relay forward --to TO` and `relay connect --listen 127.0.0.1:0` on `address`, both started
/// beside the relay's data directory (its certificate and root key, found by default).
async fn tunnel(relay: &TestRelay, url: &str, address: &str, to: SocketAddr, extra: &[&str]) -> Tunnel {
    let data_dir = relay.dir().to_str().expect("utf-8 path").to_owned();
    let to = to.to_string();
    let mut forward = vec!["forward", "--relay", url, "--address", address, "--to", &to, "--data-dir", &data_dir];
    forward.extend_from_slice(extra);
    let Command::Forward(args) = parse(&forward) else { unreachable!() };
    let forwarder = Forwarder::start(&args).await.expect("forwarder starts");
    let connect = ["connect", "--relay", url, "--address", address, "--listen", "127.0.0.1:0", "--data-dir", &data_dir];
    let Command::Connect(args) = parse(&connect) else { unreachable!() };
    let connector = Connector::start(&args).await.expect("connector starts");
    let local = connector.local_addr();
    let tasks = vec![
        tokio::spawn(async move { forwarder.run(std::future::pending()).await.expect("forwarder runs") }),
        tokio::spawn(connector.run(std::future::pending())),
    ];
    Tunnel { local, tasks }
}

/// Seeded pseudo-random bytes; connection `i` sends the `PER_CONNECTION` bytes from `offset(i)`,
/// so that no two connections send the same stream.
fn data() -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let len = offset(CONNECTIONS) + PER_CONNECTION;
        let mut data = Vec::with_capacity(len + 8);
        while data.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        data
    })
}

fn offset(i: usize) -> usize {
    i * 4099
}

/// An echo server: each connection's bytes go back until the client's end, then it ends too.
/// Reports how many bytes each connection echoed.
pub(super) async fn echo_server() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let echoed = tokio::io::copy_buf(&mut BufReader::with_capacity(CHUNK, read), &mut write).await;
                let _ = write.shutdown().await;
                let _ = tx.send(echoed.unwrap_or(0));
            });
        }
    });
    (addr, rx)
}

/// Sends connection `i`'s bytes while reading the echo, checks every echoed byte and that the
/// echo ends right after the last one.
async fn send_and_check_echo(local: SocketAddr, i: usize) {
    let socket = TcpStream::connect(local).await.unwrap();
    let (mut read, mut write) = socket.into_split();
    let sent = &data()[offset(i)..offset(i) + PER_CONNECTION];
    let sender = tokio::spawn(async move {
        for chunk in sent.chunks(CHUNK) {
            write.write_all(chunk).await.unwrap();
        }
        write.shutdown().await.unwrap();
        write
    });
    let mut buf = vec![0; CHUNK];
    let mut got = 0;
    loop {
        let n = read.read(&mut buf).await.unwrap_or_else(|e| panic!("connection {i}: read failed after {got}: {e}"));
        if n == 0 {
            break;
        }
        assert!(got + n <= PER_CONNECTION, "connection {i}: more bytes back than sent");
        assert!(buf[..n] == sent[got..got + n], "connection {i}: echo differs within bytes {got}..{}", got + n);
        got += n;
    }
    assert_eq!(got, PER_CONNECTION, "connection {i}: the echo ended early");
    let _write = sender.await.unwrap();
}

async fn fifty_connections_move_ten_mib_each_way(url: fn(&TestRelay) -> &str) {
    let relay = TestRelay::start().await;
    let (echo, mut echoed) = echo_server().await;
    let tunnel = tunnel(&relay, url(&relay), "bulk", echo, &[]).await;
    let started = Instant::now();
    let clients: Vec<_> = (0..CONNECTIONS).map(|i| tokio::spawn(send_and_check_echo(tunnel.local, i))).collect();
    let all = async {
        for client in clients {
            client.await.unwrap();
        }
    };
    // Generous for a loaded debug build: it takes seconds.
    tokio::time::timeout(Duration::from_secs(180), all).await.expect("every connection done in time");
    let elapsed = started.elapsed();
    for _ in 0..CONNECTIONS {
        let n = tokio::time::timeout(PROMPTLY, echoed.recv()).await.expect("server side ends").unwrap();
        assert_eq!(n, PER_CONNECTION as u64, "the server saw every byte, then the client's end");
    }
    let total = 2 * CONNECTIONS * PER_CONNECTION;
    eprintln!(
        "{}: {CONNECTIONS} connections, {} MiB through the relay in {elapsed:.2?} ({:.0} MiB/s)",
        url(&relay),
        total / MIB,
        total as f64 / MIB as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_move_ten_mib_each_way_over_quic() {
    fifty_connections_move_ten_mib_each_way(|relay| &relay.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_move_ten_mib_each_way_over_wss() {
    fifty_connections_move_ten_mib_each_way(|relay| &relay.ws_url).await;
}

/// The server side of the next forwarded connection.
async fn server_side(target: &TcpListener) -> TcpStream {
    tokio::time::timeout(PROMPTLY, target.accept()).await.expect("the forwarder connects").unwrap().0
}

/// Reads until the end, which must come promptly; `what` names the wait if it does not.
async fn read_all(socket: &mut TcpStream, what: &str) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PROMPTLY, socket.read_to_end(&mut got)).await;
    read.unwrap_or_else(|_| panic!("{what}: no end within {PROMPTLY:?}, got {got:?}"))?;
    Ok(got)
}

/// Reads until the end, which must come promptly, and checks what came.
async fn assert_reads(socket: &mut TcpStream, expected: &[u8], what: &str) {
    let got = read_all(socket, what).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, expected, "{what}");
}

/// Reads until the end, which must be a reset.
async fn assert_reset_read(socket: &mut TcpStream, what: &str) {
    let err = read_all(socket, what).await.expect_err(what);
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{what}: {err}");
}

async fn either_end_closes_the_other(relay: &TestRelay, url: &str, address: &str) {
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tunnel = tunnel(relay, url, address, target.local_addr().unwrap(), &[]).await;
    let connect = || async { TcpStream::connect(tunnel.local).await.unwrap() };

    // Half-close: the client's end reaches the server, which answers well after it (longer than
    // the relay's grace for a closed WebSocket), then ends too.
    let mut client = connect().await;
    let mut server = server_side(&target).await;
    client.write_all(b"question").await.unwrap();
    client.shutdown().await.unwrap();
    assert_reads(&mut server, b"question", &format!("{url}: the client's end reaches the server")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.write_all(b"answer").await.unwrap();
    server.shutdown().await.unwrap();
    assert_reads(&mut client, b"answer", &format!("{url}: an answer after the client's end")).await;

    // The server closes first: the client reads what it said, then the end.
    let mut client = connect().await;
    let mut server = server_side(&target).await;
    server.write_all(b"bye").await.unwrap();
    drop(server);
    assert_reads(&mut client, b"bye", &format!("{url}: the server's close reaches the client")).await;

    // The client closes: the server reads the end.
    let client = connect().await;
    let mut server = server_side(&target).await;
    drop(client);
    assert_reads(&mut server, b"", &format!("{url}: the client's close reaches the server")).await;

    // A reset either way is a reset at the other end, not an end as if the data were complete.
    let client = connect().await;
    let mut server = server_side(&target).await;
    client.set_zero_linger().unwrap();
    drop(client);
    assert_reset_read(&mut server, &format!("{url}: the client's reset reaches the server")).await;
    let mut client = connect().await;
    let server = server_side(&target).await;
    server.set_zero_linger().unwrap();
    drop(server);
    assert_reset_read(&mut client, &format!("{url}: the server's reset reaches the client")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_either_end_closes_the_other() {
    let relay = TestRelay::start().await;
    tokio::join!(
        either_end_closes_the_other(&relay, &relay.url, "ends-quic"),
        either_end_closes_the_other(&relay, &relay.ws_url, "ends-wss")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_streams_half_close_across_transports() {
    let relay = TestRelay::start().await;
    for (host_url, caller_url, address) in
        [(&relay.url, &relay.ws_url, "quic-host"), (&relay.ws_url, &relay.url, "wss-host")]
    {
        let host = relay_rpc::Host::connect(host_url, relay.options()).await.unwrap();
        let mut listener = host.listen(address).await.unwrap();
        let served = tokio::spawn(async move {
            let mut stream = stream::accept(&mut listener).await.unwrap();
            let mut request = Vec::new();
            stream.read_to_end(&mut request).await.unwrap();
            request.reverse();
            stream.write_all(&request).await.unwrap();
            stream.shutdown().await.unwrap();
            assert_eq!(stream.read(&mut [0; 1]).await.unwrap(), 0, "the end stays the end");
        });
        let caller = relay_rpc::Connection::connect(caller_url, relay.options()).await.unwrap();
        let mut stream = stream::connect(&caller, address).await.unwrap();
        let request = &data()[..3 * MIB + 1];
        stream.write_all(request).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(PROMPTLY, stream.read_to_end(&mut answer)).await.unwrap().unwrap();
        answer.reverse();
        assert!(answer == request, "{address}: the answer after the caller's end");
        served.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_typed_contracts_refuse_each_other() {
    let relay = TestRelay::start().await;
    for (url, tag) in [(&relay.url, "quic"), (&relay.ws_url, "wss")] {
        let host = relay_rpc::Host::connect(url, relay.options()).await.unwrap();
        let calc_address = format!("calc-{tag}");
        tokio::spawn(host.listen(&calc_address).await.unwrap().serve(ServeCalculator::new(Calc)));
        let mut streams = host.listen(&format!("raw-{tag}")).await.unwrap();
        let caller = relay_rpc::Connection::connect(url, relay.options()).await.unwrap();

        let err = stream::connect(&caller, &calc_address).await.unwrap_err();
        assert!(matches!(&err, OpenError::ContractMismatch(d) if d.contains("relay.stream")), "{url}: {err:?}");

        let raw_address = streams.address().to_owned();
        let typed = tokio::spawn(async move { CalculatorClient::connect(&caller, &raw_address).await.map(drop) });
        // The stream host refuses the typed caller (while it waits for streams, as only it can)
        // and goes on waiting for streams: the caller hears the refusal, the host accepts nothing.
        let err = tokio::select! {
            accepted = stream::accept(&mut streams) => panic!("{url}: no stream to accept, got {:?}", accepted.map(drop)),
            typed = tokio::time::timeout(PROMPTLY, typed) => typed.expect("the typed caller is refused").unwrap().unwrap_err(),
        };
        assert!(err.to_string().contains("raw streams"), "{url}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_cannot_be_carried_is_reset_at_once() {
    let relay = TestRelay::start().await;
    for (url, tag) in [(&relay.url, "quic"), (&relay.ws_url, "wss")] {
        // The target is down: the forwarder refuses the stream, the connector resets the client.
        let down = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let down_addr = down.local_addr().unwrap();
        drop(down);
        let down_address = format!("down-{tag}");
        // A connect timeout longer than `PROMPTLY`: a reset within `PROMPTLY` did not wait for it.
        let tunnel = tunnel(&relay, url, &down_address, down_addr, &["--connect-timeout", "60s"]).await;
        let caller = relay_rpc::Connection::connect(url, relay.options()).await.unwrap();
        let err = stream::connect(&caller, &down_address).await.unwrap_err();
        let OpenError::Refused { detail, .. } = &err else { panic!("{url}: {err:?}") };
        assert!(detail.contains("unreachable") && !detail.contains(&down_addr.port().to_string()), "{detail}");
        assert_reset(tunnel.local, url).await;
        drop(tunnel);

        // Nobody forwards the address (the tunnel's forwarder is gone): reset at once as well.
        let data_dir = relay.dir().to_str().unwrap();
        let connect =
            ["connect", "--relay", url, "--address", "nobody", "--listen", "127.0.0.1:0", "--data-dir", data_dir];
        let Command::Connect(args) = parse(&connect) else { unreachable!() };
        let connector = Connector::start(&args).await.unwrap();
        let local = connector.local_addr();
        let running = tokio::spawn(connector.run(std::future::pending()));
        assert_reset(local, url).await;
        running.abort();
    }
}

/// A client connecting to `local` is reset (possibly before its connect returns).
async fn assert_reset(local: SocketAddr, url: &str) {
    let err = match TcpStream::connect(local).await {
        Ok(mut client) => read_all(&mut client, url).await.expect_err("a reset, not an end"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{url}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_halves_outlive_a_relay_restart() {
    let first = TestRelay::start().await;
    // The second relay serves on the same ports with the same certificate and root key.
    let dir = relay_tests::temp_dir("restart");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["cert.pem", "key.pem", "root.key"] {
        std::fs::copy(first.dir().join(file), dir.join(file)).unwrap();
    }
    let (quic, ws) = (first.addr, first.ws_addr);
    let (echo, _echoed) = echo_server().await;
    let quic_tunnel = tunnel(&first, &first.url, "restart-quic", echo, &[]).await;
    let wss_tunnel = tunnel(&first, &first.ws_url, "restart-wss", echo, &[]).await;
    for tunnel in [&quic_tunnel, &wss_tunnel] {
        echo_a_line(tunnel.local).await.expect("forwarded before the restart");
    }
    first.stop().await;

    let second = TestRelay::start_with(|config| {
        config.quic_listen = quic;
        config.ws_listen = Some(ws);
        config.data_dir = dir.clone();
    })
    .await;
    for (tunnel, url) in [(&quic_tunnel, &second.url), (&wss_tunnel, &second.ws_url)] {
        // The forwarder registers again after a backoff (doubling from 1 s up to 30 s while the
        // relay is away); until then connections are reset.
        let within = relay_forward::RELISTEN_BACKOFF.cap + relay_tests::SLACK;
        let started = Instant::now();
        while let Err(e) = echo_a_line(tunnel.local).await {
            assert!(started.elapsed() < within, "{url}: not forwarding again after {:?}: {e}", started.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Sends a line through a forwarded port and reads its echo.
async fn echo_a_line(local: SocketAddr) -> std::io::Result<()> {
    let mut client = TcpStream::connect(local).await?;
    client.write_all(b"hello\n").await?;
    client.shutdown().await?;
    let echoed = read_all(&mut client, "echo").await?;
    if echoed != b"hello\n" {
        return Err(std::io::Error::other(format!("echoed {echoed:?}")));
    }
    Ok(())
}

/// A `relay` child process, killed if still running when dropped.
pub(super) struct RelayProcess {
    child: Child,
    stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl RelayProcess {
    pub(super) fn spawn(bin: &PathBuf, args: &[&str]) -> Self {
        Self::spawn_logging(bin, args, "warn", Stdio::null())
    }

    /// As [`Self::spawn`], logging under `RUST_LOG=filter` to `stderr`.
    fn spawn_logging(bin: &PathBuf, args: &[&str], filter: &str, stderr: Stdio) -> Self {
        let mut child = std::process::Command::new(bin)
            .args(args)
            .env_remove("RELAY_TOKEN")
            .env_remove("RELAY_URL")
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("relay starts");
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, stdout }
    }

    /// The next line the process prints, within a timeout.
    async fn line(&mut self) -> String {
        self.line_within(PROMPTLY).await
    }

    /// The next line the process prints, within `limit`.
    pub(super) async fn line_within(&mut self, limit: Duration) -> String {
        let stdout = &mut self.stdout;
        let line = tokio::time::timeout(limit, async { tokio::task::block_in_place(|| stdout.next()) }).await;
        line.expect("a line in time").expect("the process prints").unwrap()
    }

    /// Sends Ctrl-C (SIGINT) and waits for a clean exit.
    async fn interrupt(mut self) {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(status.success());
        assert_eq!(self.line().await, "stopped");
        let child = &mut self.child;
        let exit = tokio::time::timeout(PROMPTLY, async { tokio::task::block_in_place(|| child.wait()) }).await;
        assert!(exit.expect("exits in time").unwrap().success());
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_binary_forwards_a_port() {
    let bin = relay_tests::binary("relay-forward", "relay", &[]);
    let relay = TestRelay::start().await;
    let (echo, mut echoed) = echo_server().await;
    let (data_dir, echo) = (relay.dir().to_str().unwrap().to_owned(), echo.to_string());
    // One thread (the default) over QUIC, a multi-thread runtime over wss.
    for (url, address, threads) in [(&relay.url, "bin-quic", "1"), (&relay.ws_url, "bin-wss", "2")] {
        let common = ["--relay", url.as_str(), "--address", address, "--data-dir", &data_dir, "--threads", threads];
        let mut forward = RelayProcess::spawn(&bin, &[&["forward", "--to", &echo][..], &common].concat());
        assert!(forward.line().await.starts_with("forwarding streams on"));
        let mut connect = RelayProcess::spawn(&bin, &[&["connect", "--listen", "127.0.0.1:0"][..], &common].concat());
        let listening = connect.line().await;
        let local = listening.strip_prefix("listening on ").and_then(|rest| rest.split(": ").next());
        let local: SocketAddr = local.and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("{listening:?}"));
        send_and_check_echo(local, 7).await;
        let n = tokio::time::timeout(PROMPTLY, echoed.recv()).await.unwrap().unwrap();
        assert_eq!(n, PER_CONNECTION as u64);
        connect.interrupt().await;
        forward.interrupt().await;
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_binary_with_log_format_json_writes_every_log_line_as_one_json_object() {
    use std::io::Read as _;

    let bin = relay_tests::binary("relay-forward", "relay", &[]);
    let relay = TestRelay::start().await;
    let (echo, mut echoed) = echo_server().await;
    let (data_dir, echo) = (relay.dir().to_str().unwrap().to_owned(), echo.to_string());
    let common = ["--relay", relay.url.as_str(), "--address", "json-log", "--data-dir", &data_dir];
    let spawn = |args: &[&str]| {
        let args = [args, &["--log-format", "json"]].concat();
        RelayProcess::spawn_logging(&bin, &args, "info", Stdio::piped())
    };
    let mut forward = spawn(&[&["forward", "--to", &echo][..], &common].concat());
    assert!(forward.line().await.starts_with("forwarding streams on"));
    let mut connect = spawn(&[&["connect", "--listen", "127.0.0.1:0"][..], &common].concat());
    let listening = connect.line().await;
    let local = listening.strip_prefix("listening on ").and_then(|rest| rest.split(": ").next());
    let local: SocketAddr = local.and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("{listening:?}"));
    send_and_check_echo(local, 3).await;
    assert_eq!(tokio::time::timeout(PROMPTLY, echoed.recv()).await.unwrap(), Some(PER_CONNECTION as u64));
    // The connection's end, logged as its last bytes pass, before the tool is asked to stop.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Each side's log, once it has stopped: one JSON object a line, the events' fields and their
    // span's as keys of their own.
    let mut logs = Vec::new();
    for mut process in [connect, forward] {
        let mut stderr = process.child.stderr.take().unwrap();
        process.interrupt().await;
        let mut log = String::new();
        stderr.read_to_string(&mut log).unwrap();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}")))
            .collect();
        assert!(lines.iter().all(|line| line["level"].is_string() && line["message"].is_string()), "{log}");
        logs.push((lines, log));
    }
    let [(connect, connect_log), (forward, forward_log)] = &logs[..] else { unreachable!() };
    let closed = connect.iter().find(|line| line["message"] == "closed");
    let closed = closed.unwrap_or_else(|| panic!("the connection's end is logged: {connect_log}"));
    assert_eq!(closed["bytes_sent"], PER_CONNECTION as u64, "{closed}");
    assert_eq!(closed["span"]["name"], "connection", "{closed}");
    assert_eq!(closed["span"]["address"], "json-log", "{closed}");
    let channel = closed["span"]["channel"].as_u64().unwrap_or_else(|| panic!("the channel's id: {closed}"));
    let forwarding = forward.iter().find(|line| line["message"] == "forwarding");
    let forwarding = forwarding.unwrap_or_else(|| panic!("the stream is logged: {forward_log}"));
    assert_eq!(forwarding["to"], echo, "{forwarding}");
    assert_eq!(forwarding["span"]["channel"], channel, "one id on both sides: {forwarding}");
}
