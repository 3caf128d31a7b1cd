//! The `relay-server` binary: starts on its defaults (here with port 0 and a fresh data
//! directory), generates its certificate, tells users how to connect, and stops on SIGTERM.

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
