//! The `relay-server` binary: starts on its defaults (here with port 0 and a fresh data
//! directory), generates its certificate, tells users how to connect, and stops on SIGTERM;
//! on one thread too.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use relay_rpc::{ConnectOptions, Connection, Host, OpenError};

#[tokio::test]
async fn the_binary_serves_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("relay-binary-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut relay = Command::new(relay_tests::binary("relay-server", "relay-server", &[]))
        .args(["--quic-listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--data-dir", dir.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(relay.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.strip_prefix("relay listening on ").expect("prints its address").to_owned();
    let second = lines.next().unwrap().unwrap();
    assert!(second.starts_with("relay listening on wss://127.0.0.1:"), "prints its wss address: {second}");
    let third = lines.next().unwrap().unwrap();
    let admin = third.strip_prefix("admin endpoint on http://").expect("prints its admin address");
    let admin: std::net::SocketAddr = admin.split_whitespace().next().unwrap().parse().unwrap();
    let fourth = lines.next().unwrap().unwrap();
    assert!(fourth.contains("cert.pem"), "prints the certificate path: {fourth}");
    let cert = dir.join("cert.pem");
    assert!(cert.exists() && dir.join("key.pem").exists());

    let key = relay_proto::auth::SharedAccessKey::from_file(dir.join("root.key")).unwrap();
    assert_eq!(key.name(), "RootManageSharedAccessKey");
    let options = ConnectOptions::new().trust_pem_file(&cert).unwrap().with_shared_access_key(key);
    let host = Host::connect(&url, options.clone()).await.unwrap();
    let _listener = host.listen("calc").await.unwrap();
    let caller = Connection::connect(&url, options).await.unwrap();
    let err = caller.open_channel("elsewhere", None).await.unwrap_err();
    assert!(matches!(err, OpenError::NoListener { .. }), "{err:?}");

    assert_eq!(relay_tests::http::get(admin, "/readyz", &[]).await.status, 200);

    let sent = Instant::now();
    let status = Command::new("kill").args(["-TERM", &relay.id().to_string()]).status().unwrap();
    assert!(status.success());
    // No channel is open, so the drain has nothing to wait for; at most it waits out the default
    // grace period, then up to 3 s for its closes to reach the peers.
    drop(_listener);
    drop(host);
    let status = relay.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let grace = Duration::from_millis(relay_server::Config::default().shutdown_grace_ms);
    let bound = grace + Duration::from_secs(3) + relay_tests::SLACK;
    assert!(sent.elapsed() < bound, "stopped {:?} after SIGTERM", sent.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn with_log_format_json_every_log_line_is_one_json_object() {
    let dir = std::env::temp_dir().join(format!("relay-binary-json-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut relay = Command::new(relay_tests::binary("relay-server", "relay-server", &[]))
        .args(["--quic-listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(["--data-dir", dir.to_str().unwrap(), "--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = BufReader::new(relay.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    let url = first.strip_prefix("relay listening on ").expect("prints its address").to_owned();
    let key = relay_proto::auth::SharedAccessKey::from_file(dir.join("root.key")).unwrap();
    let options = ConnectOptions::new().trust_pem_file(dir.join("cert.pem")).unwrap().with_shared_access_key(key);
    let host = Host::connect(&url, options).await.unwrap();
    let listener = host.listen("calc").await.unwrap();
    drop((listener, host));

    let status = Command::new("kill").args(["-TERM", &relay.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = relay.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}")))
        .collect();
    assert!(lines.iter().all(|line| line["level"].is_string() && line["message"].is_string()), "{log}");
    let registered = lines.iter().find(|line| line["message"] == "listener registered");
    let registered = registered.unwrap_or_else(|| panic!("no registration logged: {log}"));
    assert_eq!(registered["address"], "calc", "the event's fields are keys of their own: {registered}");
    assert!(lines.iter().any(|line| line["message"] == "relay stopped"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_channel_has_one_id_on_the_caller_the_relay_and_the_host() {
    use relay_rpc::Connection;

    let dir = std::env::temp_dir().join(format!("relay-binary-ids-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // On one thread (`--threads 1`, tokio's current-thread runtime); the other tests run the
    // binary on its default of one worker per core.
    let mut relay = Command::new(relay_tests::binary("relay-server", "relay-server", &[]))
        .args(["--quic-listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(["--data-dir", dir.to_str().unwrap(), "--log-format", "json", "--threads", "1"])
        .env("RUST_LOG", "relay_server=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The debug log is long: read as it comes, so that the relay never waits on a full pipe.
    let mut stderr = relay.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
        log
    });
    let mut stdout = BufReader::new(relay.stdout.take().unwrap()).lines();
    let quic = stdout.next().unwrap().unwrap().strip_prefix("relay listening on ").expect("quic").to_owned();
    let wss = stdout.next().unwrap().unwrap();
    let wss = wss.strip_prefix("relay listening on ").and_then(|w| w.split(' ').next()).expect("wss").to_owned();
    let key = relay_proto::auth::SharedAccessKey::from_file(dir.join("root.key")).unwrap();
    let options = ConnectOptions::new().trust_pem_file(dir.join("cert.pem")).unwrap().with_shared_access_key(key);

    let mut seen = Vec::new();
    for (host_url, caller_url) in [(&quic, &quic), (&wss, &wss), (&quic, &wss)] {
        let host = Host::connect(host_url, options.clone()).await.unwrap();
        let mut listener = host.listen("ids").await.unwrap();
        let caller = Connection::connect(caller_url, options.clone()).await.unwrap();
        let accepted = async {
            let incoming = listener.accept().await.unwrap();
            let host_id = incoming.id();
            (host_id, incoming.accept().await.unwrap())
        };
        let (channel, (host_id, host_end)) = tokio::join!(caller.open_channel("ids", None), accepted);
        let channel = channel.unwrap();
        assert!(channel.id() > 0, "{caller_url}: the caller is told the id");
        assert_eq!((channel.id(), host_end.id()), (host_id, host_id), "{host_url} -> {caller_url}");
        assert_eq!(channel.transport(), caller_url.split(':').next().unwrap());
        seen.push((host_id, if caller_url.starts_with("quic") { "quic" } else { "websocket" }));
        drop((channel, host_end, listener, host, caller));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let status = Command::new("kill").args(["-TERM", &relay.id().to_string()]).status().unwrap();
    assert!(status.success());
    relay.wait().unwrap();
    let log = log.join().expect("the log is read");
    let lines: Vec<serde_json::Value> = log.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    for (id, transport) in seen {
        let closed = lines.iter().find(|line| line["message"] == "channel closed" && line["span"]["id"] == id);
        let closed = closed.unwrap_or_else(|| panic!("no `channel closed` of channel {id} in its span: {log}"));
        assert_eq!(closed["span"]["name"], "channel", "{closed}");
        assert_eq!(closed["span"]["address"], "ids", "{closed}");
        assert_eq!(closed["span"]["transport"], transport, "{closed}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
