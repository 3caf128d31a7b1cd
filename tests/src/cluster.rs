//! Relay nodes of a cluster for the end-to-end tests: real `relay-server` processes (so that a
//! test can `kill -9` one) joined through a real NATS server ([`crate::nats::TestNats`]).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use relay_rpc::ConnectOptions;
use relay_rpc::auth::SharedAccessKey;

/// Cluster timers short enough for tests: a heartbeat every 200 ms, a node dropped after 3 s
/// of silence (fifteen heartbeats: a machine loaded by other tests and builds must not make a
/// healthy node look dead), an open given up after 1 s (the default).
pub const HEARTBEAT_MS: u64 = 200;
/// See [`HEARTBEAT_MS`].
pub const NODE_TIMEOUT_MS: u64 = 3000;
/// See [`HEARTBEAT_MS`].
pub const OPEN_TIMEOUT_MS: u64 = 1000;

/// One `relay-server` process in cluster mode; killed when dropped.
#[derive(Debug)]
pub struct ClusterNode {
    /// `quic://127.0.0.1:PORT`.
    pub url: String,
    /// `wss://127.0.0.1:PORT`: its Hybrid Connections endpoint.
    pub ws_url: String,
    /// Its admin endpoint (`/healthz`, `/readyz`).
    pub admin: SocketAddr,
    /// Its data directory (shared by the nodes of one cluster, for their keys).
    pub data_dir: PathBuf,
    /// Its log (stderr).
    pub log: PathBuf,
    child: Child,
}

impl ClusterNode {
    /// Starts a node of cluster `name` through the NATS server at `nats`, with `data_dir` (made
    /// by the first node started on it), and waits until it listens.
    pub fn start(nats: &str, name: &str, data_dir: &Path) -> Self {
        Self::start_with(nats, name, data_dir, "")
    }

    /// As [`start`](Self::start), with `config` (TOML tables, e.g. `[[addresses]]`) added to
    /// the node's configuration file.
    pub fn start_with(nats: &str, name: &str, data_dir: &Path, extra: &str) -> Self {
        std::fs::create_dir_all(data_dir).expect("data directory");
        let tag = crate::temp_dir("node");
        std::fs::create_dir_all(&tag).expect("node directory");
        let config = tag.join("relay.toml");
        let text = format!(
            "[cluster]\nnats = [\"{nats}\"]\nname = \"{name}\"\nheartbeat_ms = {HEARTBEAT_MS}\n\
             node_timeout_ms = {NODE_TIMEOUT_MS}\nopen_timeout_ms = {OPEN_TIMEOUT_MS}\n{extra}"
        );
        std::fs::write(&config, text).expect("config written");
        let log = tag.join("relay.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(crate::binary("relay-server", "relay-server", &[]))
            .arg("--config")
            .arg(&config)
            .args(["--quic-listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "info,relay_server=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("relay-server starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (mut url, mut ws_url, mut admin) = (None, None, None);
        let mut line = String::new();
        // It prints its addresses, then the certificate's path.
        while !line.starts_with("certificate") {
            line.clear();
            let read = stdout.read_line(&mut line).expect("relay-server prints its addresses");
            assert!(read > 0, "relay-server exited at start; its log: {}", log.display());
            if let Some(rest) = line.trim().strip_prefix("relay listening on ") {
                let first = rest.split_whitespace().next().unwrap_or_default().to_owned();
                if first.starts_with("quic://") {
                    url = Some(first);
                } else if first.starts_with("wss://") {
                    ws_url = Some(first);
                }
            } else if let Some(rest) = line.trim().strip_prefix("admin endpoint on http://") {
                admin = rest.split_whitespace().next().and_then(|addr| addr.parse().ok());
            }
        }
        let missing = |what: &str| format!("relay-server printed no {what}; its log: {}", log.display());
        let url = url.unwrap_or_else(|| panic!("{}", missing("quic URL")));
        let ws_url = ws_url.unwrap_or_else(|| panic!("{}", missing("wss URL")));
        let admin = admin.unwrap_or_else(|| panic!("{}", missing("admin address")));
        // Whatever else it prints is read and dropped, so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stdout.lines() {});
        Self { url, ws_url, admin, data_dir: data_dir.to_owned(), log, child }
    }

    /// Options that trust the cluster's certificate and sign tokens with its root key.
    pub fn options(&self) -> ConnectOptions {
        let key = SharedAccessKey::from_file(self.data_dir.join("root.key")).expect("root key readable");
        ConnectOptions::new()
            .trust_pem_file(self.data_dir.join("cert.pem"))
            .expect("cert readable")
            .with_shared_access_key(key)
    }

    /// Its `/readyz` answer now.
    pub async fn readyz(&self) -> crate::http::Answer {
        crate::http::get(self.admin, "/readyz", &[]).await
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `within` for the process to exit by itself (after a SIGTERM); whether it did.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends the process `signal` (`-STOP`, `-CONT`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {}", self.child.id());
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        // A stopped process dies of SIGKILL all the same; resumed first, it is reaped at once.
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).stderr(Stdio::null()).status();
        self.kill();
        if let Some(dir) = self.log.parent() {
            if std::thread::panicking() {
                eprintln!("relay node log kept at {}", self.log.display());
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// How long a test waits for the cluster's views to settle: a few heartbeats and a snapshot.
pub fn settle() -> Duration {
    Duration::from_millis(NODE_TIMEOUT_MS) + crate::SLACK
}
